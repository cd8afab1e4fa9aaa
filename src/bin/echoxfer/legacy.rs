//! `--legacy`: the seed scripts' wire protocols (echo, UDP, file), for
//! talking to old peers. Wires the legacy machines and their apps to the
//! same drivers as the native commands. Every entry prints
//! [`NO_INTEGRITY_WARNING`] once to stderr.

use std::io::{self, BufRead};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use echoxfer::driver::App;
use echoxfer::error::sanitize;
use echoxfer::legacy::files::{ReceiveToDir, SendFromFile};
use echoxfer::legacy::{
    LegacyClientEvent, LegacyEchoClient, LegacyEchoServer, LegacyFileReceiver, LegacyFileSender,
    LegacyServerEvent, LegacyUdpSender, LegacyUdpSink, ReceiverEvent, SenderDatagramEvent,
    SenderEvent, SinkEvent, GREETING_BLOCKING, GREETING_THREADED,
};
use echoxfer::Config;

use crate::args::{
    EchoConnectArgs, EchoServeArgs, Preset, ReceiveArgs, Runtime, SendArgs, UdpSendArgs,
    UdpServeArgs,
};
use crate::term::{self, Meter, Out, Ui};
use crate::{net, CmdResult};

// ------------------------------------------------------------------ files

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
        e: SenderEvent,
    ) -> io::Result<()> {
        if let SenderEvent::Progress { acked, size } = &e {
            self.bytes.done.store(*acked, Ordering::Relaxed);
            self.bytes.total.store(*size, Ordering::Relaxed);
        }
        self.inner.on_event(m, now, e)
    }
}

pub fn send_file(a: SendArgs) -> CmdResult {
    let [path] = a.files.as_slice() else {
        return Err("--legacy sends exactly one file (the seed protocol carries no names)".into());
    };
    term::legacy_warning();
    let ui = Ui::new(a.quiet);
    let out = Out::for_summary(a.stdio);
    let hash = hash_file(path)?;
    let (inner, size) = SendFromFile::open(path)?;
    let bytes = Arc::new(term::Bytes::default());
    bytes.total.store(size, Ordering::Relaxed);
    let mut app = Sending {
        inner,
        bytes: bytes.clone(),
    };
    let mut machine = LegacyFileSender::new(size, Config::default(), Instant::now());
    let meter = Meter::start(ui, "send".into(), bytes.counter());
    let started = Instant::now();
    let to = (!a.stdio).then_some(a.to.as_str());
    let result = net::run_client(
        &mut machine,
        &mut app,
        to,
        "`echoxfer receive --legacy`",
        a.runtime,
    );
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
        e: ReceiverEvent,
    ) -> io::Result<()> {
        if let ReceiverEvent::Write { data, .. } = &e {
            self.bytes
                .done
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        self.inner.on_event(m, now, e)
    }
}

pub fn receive_file(a: ReceiveArgs) -> CmdResult {
    term::legacy_warning();
    let ui = Ui::new(a.quiet);
    let out = Out::for_summary(a.stdio);
    let inner = ReceiveToDir::create(&a.dir, &a.name, a.overwrite)?;
    let bytes = Arc::new(term::Bytes::default());
    let mut app = Receiving {
        inner,
        bytes: bytes.clone(),
    };
    let mut machine = LegacyFileReceiver::new(Config::default(), Instant::now());
    let meter = Meter::start(ui, "receive".into(), bytes.counter());
    let started = Instant::now();
    // The seed receiver takes one sender, then exits.
    let result = if a.stdio {
        net::run_client(&mut machine, &mut app, None, "", a.runtime)
    } else {
        net::accept_one(&mut machine, &mut app, a.listen, a.runtime)
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

// ------------------------------------------------------------------- echo

/// Prints each read of a legacy echo client, as the seed server does.
struct PrintReads;

impl App<LegacyEchoServer> for PrintReads {
    fn on_event(
        &mut self,
        _: &mut LegacyEchoServer,
        _: Instant,
        e: LegacyServerEvent,
    ) -> io::Result<()> {
        // The `exit` read itself comes as `Received` first, as the seed prints it.
        if let LegacyServerEvent::Received(data) = e {
            term::peer_line_lossy(&data);
        }
        Ok(())
    }
}

pub fn echo_serve(a: EchoServeArgs, config: Config) -> CmdResult {
    term::legacy_warning();
    let greeting = match (a.greeting, a.preset) {
        (Some(g), _) => g,
        (None, Some(Preset::Blocking)) => GREETING_BLOCKING.to_string(),
        (None, Some(Preset::Threaded) | None) => GREETING_THREADED.to_string(),
    };
    let greeting = Bytes::from(greeting.into_bytes());
    let limits = echoxfer::driver::Limits::from(&config);
    net::serve_sessions(a.addr, a.runtime, limits, move |now| {
        (
            LegacyEchoServer::new(greeting.clone(), config.clone(), now),
            PrintReads,
        )
    })
}

/// Sends one stdin line after the greeting and after each reply; `exit`
/// (sent, and the session ends) or the end of stdin closes.
struct LegacyLines<R> {
    lines: R,
}

impl<R: BufRead> LegacyLines<R> {
    fn send_next_line(&mut self, client: &mut LegacyEchoClient) -> io::Result<()> {
        loop {
            let mut line = Vec::new();
            if self.lines.read_until(b'\n', &mut line)? == 0 {
                client.close();
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            // The machine skips empty lines (no reply would come): read on.
            if line.is_empty() {
                continue;
            }
            return client.send_line(line).map_err(io::Error::other);
        }
    }
}

impl<R: BufRead> App<LegacyEchoClient> for LegacyLines<R> {
    fn on_event(
        &mut self,
        c: &mut LegacyEchoClient,
        _: Instant,
        e: LegacyClientEvent,
    ) -> io::Result<()> {
        let (LegacyClientEvent::Greeting(text) | LegacyClientEvent::Reply(text)) = e;
        term::peer_line(&text)?;
        self.send_next_line(c)
    }
}

pub fn echo_connect(a: EchoConnectArgs) -> CmdResult {
    term::legacy_warning();
    let mut client = LegacyEchoClient::new(Config::default(), Instant::now());
    let mut app = LegacyLines {
        lines: io::stdin().lock(),
    };
    let to = a.addr.to_string();
    net::run_client(
        &mut client,
        &mut app,
        Some(&to),
        "`echoxfer echo serve --legacy`",
        Runtime::Blocking,
    )
}

// -------------------------------------------------------------------- UDP

pub fn udp_serve(a: UdpServeArgs) -> CmdResult {
    term::legacy_warning();
    let mut sink = LegacyUdpSink::new();
    let mut print = |_: &mut LegacyUdpSink, _: Instant, e: SinkEvent| -> io::Result<()> {
        let SinkEvent::Datagram { payload, .. } = e;
        term::peer_line(&payload)
    };
    net::serve_datagrams(a.addr, &mut sink, &mut print)
}

/// Feeds stdin lines to the legacy UDP sender, one per datagram sent.
struct UdpLines<R> {
    lines: R,
    number: u64,
}

impl<R: BufRead> UdpLines<R> {
    fn feed(&mut self, m: &mut LegacyUdpSender) -> io::Result<()> {
        let mut line = Vec::new();
        if self.lines.read_until(b'\n', &mut line)? == 0 {
            m.close();
            return Ok(());
        }
        self.number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        m.send_line(line)
            .map_err(|e| io::Error::other(format!("line {}: {e}", self.number)))
    }
}

impl<R: BufRead> App<LegacyUdpSender> for UdpLines<R> {
    fn on_event(
        &mut self,
        m: &mut LegacyUdpSender,
        _: Instant,
        e: SenderDatagramEvent,
    ) -> io::Result<()> {
        let SenderDatagramEvent::Sent(_) = e;
        self.feed(m)
    }
}

pub fn udp_send(a: UdpSendArgs) -> CmdResult {
    term::legacy_warning();
    let mut sender = LegacyUdpSender::new(Config::default(), a.addr);
    let mut app = UdpLines {
        lines: io::stdin().lock(),
        number: 0,
    };
    app.feed(&mut sender)?;
    net::run_datagram_client(&mut sender, a.addr, &mut app)
}
