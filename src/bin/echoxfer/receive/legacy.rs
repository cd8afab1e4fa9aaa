//! `echoxfer receive --legacy`: one sender over the seed scripts' file
//! protocol, written to `--dir/--name` (no integrity check), for old
//! senders. Prints the legacy warning first, and the file's BLAKE3 for
//! comparing by hand.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use echoxfer::driver::{App, Work};
use echoxfer::files::legacy::ReceiveToDir;
use echoxfer::legacy::{LegacyFileReceiver, LegacyReceiverEvent};
use echoxfer::UnframedConfig;

use crate::args::ReceiveArgs;
use crate::net::{self, CmdResult, Peer};
use crate::term::{self, Meter, Out, Ui};

/// The legacy file receiver's app, plus a counter for the progress meter.
struct Receiving {
    inner: ReceiveToDir,
    bytes: Arc<term::Bytes>,
}

impl App<LegacyFileReceiver> for Receiving {
    fn on_event(
        &mut self,
        m: &mut LegacyFileReceiver,
        now: Instant,
        e: LegacyReceiverEvent,
    ) -> io::Result<()> {
        if let LegacyReceiverEvent::Write { data, .. } = &e {
            self.bytes
                .done
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        self.inner.on_event(m, now, e)
    }

    fn poll_work(&mut self) -> Option<Work<Self, LegacyFileReceiver>> {
        let work = self.inner.poll_work()?;
        Some(work.within(|r: &mut Receiving| &mut r.inner))
    }
}

/// `receive --legacy`: one sender, then exit.
pub fn receive(a: ReceiveArgs) -> CmdResult {
    term::legacy_warning();
    let ui = Ui::new(a.quiet);
    let out = Out::for_summary(a.stdio);
    let inner = ReceiveToDir::create(&a.dir, &a.name, a.overwrite)
        .map_err(|e| cannot_create(&a.dir.join(&a.name), &e))?;
    let bytes = Arc::new(term::Bytes::default());
    let mut app = Receiving {
        inner,
        bytes: bytes.clone(),
    };
    let mut machine = LegacyFileReceiver::new(UnframedConfig::default(), Instant::now());
    let meter = Meter::start(ui, "receive".into(), bytes.counter());
    let started = Instant::now();
    // The seed receiver takes one sender, then exits.
    let result = if a.stdio {
        net::run_client(&mut machine, &mut app, Peer::Stdio, a.runtime)
    } else {
        net::accept_one(&mut machine, &mut app, &a.listen, a.runtime)
    };
    let secs = started.elapsed().as_secs_f64();
    meter.finish();
    result?;
    let done = app
        .inner
        .completed()
        .ok_or("the transfer ended without a complete file")?;
    term::line(
        out,
        &format!(
            "received {}: {} bytes in {secs:.2} s ({}) blake3 {} (legacy: compare it with the sender's by hand)",
            done.path.display(),
            done.size,
            term::rate(done.size, secs),
            done.blake3_hex()
        ),
    );
    Ok(())
}

/// `cannot create PATH: REASON (WHAT TO DO)`.
fn cannot_create(path: &std::path::Path, e: &io::Error) -> String {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => "check that the --dir directory exists",
        io::ErrorKind::AlreadyExists => "pick another --name, or run with --overwrite",
        io::ErrorKind::PermissionDenied => "check the permissions of the --dir directory",
        _ => "check the --dir directory and --name",
    };
    format!("cannot create {}: {e} ({hint})", path.display())
}
