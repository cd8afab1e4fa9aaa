//! `echoxfer send`: offers files to a receiver over TCP or stdin/stdout,
//! with a progress meter and one summary line per file; fails unless every
//! file was saved. `--legacy` is the seed protocol, in [`legacy`].

mod legacy;

use std::time::Instant;

use echoxfer::files::{Outcome, SenderApp};
use echoxfer::xfer::Sender;
use echoxfer::{SessionLimits, TransferConfig};

use crate::args::SendArgs;
use crate::auth::{self, Channel};
use crate::net::{self, CmdResult, Peer};
use crate::term::{Out, Tracked, Ui};

/// `echoxfer send`.
pub fn send(a: SendArgs) -> CmdResult {
    if a.legacy {
        return legacy::send(a);
    }
    let auth = auth::for_client(&a.auth, "send")?;
    let ui = Ui::new(a.quiet);
    let out = Out::for_summary(a.stdio);
    let transfer = TransferConfig::default();
    let app = SenderApp::open(&a.files, transfer.max_name_len)?;
    let now = Instant::now();
    let sender = Sender::new(app.role(transfer), SessionLimits::default(), now);
    let mut machine = Channel::client(sender, &auth, now);
    let mut session = Tracked::new(app, "sent", ui, out, "send".into());
    let peer = Peer::chosen(a.stdio, &a.to, "`echoxfer receive`");
    let result = net::run_client(&mut machine, &mut session, peer, a.runtime)
        .map_err(|e| auth::explain(e, &peer.name(), "run receive again"));
    session.finish();
    result?;
    let report = session.app.report();
    let missing = report
        .iter()
        .filter(|f| !matches!(f.outcome, Outcome::Saved { .. }))
        .count();
    if missing > 0 {
        return Err(format!("{missing} of {} files not delivered", report.len()).into());
    }
    Ok(())
}
