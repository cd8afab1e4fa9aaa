//! `echoxfer send --legacy`: one file over the seed scripts' file protocol
//! (no name, no integrity check), for old receivers. Prints the legacy
//! warning first, a progress meter while sending, and the file's BLAKE3 for
//! comparing by hand.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use echoxfer::driver::{App, Work};
use echoxfer::error::sanitize;
use echoxfer::files::legacy::SendFromFile;
use echoxfer::legacy::{LegacyFileSender, LegacySenderEvent};
use echoxfer::UnframedConfig;

use crate::args::SendArgs;
use crate::net::{self, CmdResult, Peer};
use crate::term::{self, Meter, Out, Ui};

/// The legacy file sender's app, plus counters for the progress meter.
struct Sending {
    inner: SendFromFile,
    bytes: Arc<term::Bytes>,
}

impl App<LegacyFileSender> for Sending {
    fn on_event(
        &mut self,
        m: &mut LegacyFileSender,
        now: Instant,
        e: LegacySenderEvent,
    ) -> io::Result<()> {
        if let LegacySenderEvent::Progress { acked, size } = &e {
            self.bytes.done.store(*acked, Ordering::Relaxed);
            self.bytes.total.store(*size, Ordering::Relaxed);
        }
        self.inner.on_event(m, now, e)
    }

    fn poll_work(&mut self) -> Option<Work<Self, LegacyFileSender>> {
        let work = self.inner.poll_work()?;
        Some(work.within(|s: &mut Sending| &mut s.inner))
    }
}

/// `send --legacy`: exactly one file.
pub fn send(a: SendArgs) -> CmdResult {
    let [path] = a.files.as_slice() else {
        return Err("--legacy sends exactly one file (the seed protocol carries no names)".into());
    };
    term::legacy_warning();
    let ui = Ui::new(a.quiet);
    let out = Out::for_summary(a.stdio);
    let hash = hash_file(path).map_err(|e| super::cannot_open(path, &e))?;
    let (inner, size) = SendFromFile::open(path)?;
    let bytes = Arc::new(term::Bytes::default());
    bytes.total.store(size, Ordering::Relaxed);
    let mut app = Sending {
        inner,
        bytes: bytes.clone(),
    };
    let mut machine = LegacyFileSender::new(size, UnframedConfig::default(), Instant::now());
    let meter = Meter::start(ui, "send".into(), bytes.counter());
    let started = Instant::now();
    let to = match &a.to {
        Some(to) => to.clone(),
        None => crate::addr::HostPort::parse(crate::args::DEFAULT_TO)?,
    };
    let peer = Peer::chosen(a.stdio, &to, "`echoxfer receive --legacy`");
    let result = net::run_client(&mut machine, &mut app, peer, a.runtime);
    let secs = started.elapsed().as_secs_f64();
    meter.finish();
    result?;
    let name = sanitize(path.as_os_str().as_encoded_bytes());
    term::line(
        out,
        &format!(
            "sent {name}: {size} bytes in {secs:.2} s ({}) blake3 {} (legacy: not verified by the receiver)",
            term::rate(size, secs),
            term::hex(&hash)
        ),
    );
    Ok(())
}

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(*hasher.finalize().as_bytes())
}
