//! `echoxfer udp serve --legacy` and `udp send`: the seed scripts'
//! datagram sink and sender (one line per datagram, no reply), for old
//! peers. Both print the legacy warning first.

use std::io::{self, BufRead};
use std::time::Instant;

use echoxfer::driver::App;
use echoxfer::legacy::{LegacyUdpSender, LegacyUdpSink, SenderDatagramEvent, SinkEvent};
use echoxfer::UdpConfig;

use crate::args::{UdpSendArgs, UdpServeArgs};
use crate::net::{self, CmdResult};
use crate::term;

/// `udp serve --legacy`: prints each datagram until Ctrl-C.
pub fn serve(a: UdpServeArgs) -> CmdResult {
    term::legacy_warning();
    let mut sink = LegacyUdpSink::new();
    let mut print = |_: &mut LegacyUdpSink, _: Instant, e: SinkEvent| -> io::Result<()> {
        let SinkEvent::Datagram { payload, .. } = e;
        term::peer_line(&payload)
    };
    net::serve_datagrams(&a.addr, &mut sink, &mut print)
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

/// `udp send`: one datagram per stdin line.
pub fn send(a: UdpSendArgs) -> CmdResult {
    term::legacy_warning();
    let mut sender = LegacyUdpSender::new(UdpConfig::default(), a.addr.first());
    let mut app = UdpLines {
        lines: io::stdin().lock(),
        number: 0,
    };
    app.feed(&mut sender)?;
    net::run_datagram_client(&mut sender, a.addr.first(), &mut app)
}
