//! `echoxfer udp serve|ping|send`: the UDP echo server (refusals logged as
//! a summary at most every few seconds), and a ping that reports loss and
//! round-trip times. `--legacy` and `send` are the seed protocol, in
//! [`legacy`]. Sockets and Ctrl-C come from [`crate::net`].

mod legacy;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use echoxfer::driver::App;
use echoxfer::echo::{PingEvent, PingStats, UdpEchoServer, UdpEvent, UdpPing, UdpServerStats};
use echoxfer::UdpConfig;

use crate::args::{UdpPingArgs, UdpSendArgs, UdpServeArgs};
use crate::net::{self, CmdResult};
use crate::term;

/// `udp send` speaks only the seed protocol.
pub fn send(a: UdpSendArgs) -> CmdResult {
    legacy::send(a)
}

/// `echoxfer udp serve`: echoes datagrams until Ctrl-C, then prints the counts.
pub fn serve(a: UdpServeArgs) -> CmdResult {
    if a.legacy {
        return legacy::serve(a);
    }
    let mut server = UdpEchoServer::new(UdpConfig::default());
    let mut log = RefusalLog::default();
    net::serve_datagrams(&a.addr, &mut server, &mut log)?;
    println!("{}", term::udp_stopped(&server.stats()));
    Ok(())
}

/// How often at most refused datagrams are summarised in the log.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Logs refused datagrams as one warning per `SUMMARY_EVERY` at most, never
/// a line per datagram: a forged flood must not flood the log as well.
#[derive(Default)]
struct RefusalLog {
    last_line: Option<Instant>,
    /// The server's counts when the last line was written.
    counted: UdpServerStats,
}

impl App<UdpEchoServer> for RefusalLog {
    fn on_event(
        &mut self,
        server: &mut UdpEchoServer,
        now: Instant,
        e: UdpEvent,
    ) -> io::Result<()> {
        let UdpEvent::Refused { peer, reason, .. } = e else {
            return Ok(());
        };
        if self
            .last_line
            .is_some_and(|last| now.saturating_duration_since(last) < SUMMARY_EVERY)
        {
            return Ok(());
        }
        let s = server.stats();
        let c = self.counted;
        tracing::warn!(
            "refused {} datagrams from service ports, {} from bad addresses, {} over the reply rate \
             (the latest from {peer}: {reason}); refusals are summarised every {} s at most",
            s.refused_port - c.refused_port,
            s.refused_address - c.refused_address,
            s.rate_limited - c.rate_limited,
            SUMMARY_EVERY.as_secs()
        );
        self.last_line = Some(now);
        self.counted = s;
        Ok(())
    }
}

/// `echoxfer udp ping`: fails if no probe got a reply.
pub fn ping(a: UdpPingArgs) -> CmdResult {
    let config = UdpConfig {
        probe_timeout: a.timeout,
        probe_retries: a.retries,
        ..UdpConfig::default()
    };
    config.validate()?;
    let mut ping = UdpPing::new(config, Instant::now(), a.addr.first(), a.count, a.size);
    let mut stats = None;
    let mut report = |_: &mut UdpPing, _: Instant, e: PingEvent| -> io::Result<()> {
        let mut out = io::stdout();
        match e {
            PingEvent::Reply { seq, rtt } => writeln!(out, "reply seq={seq} rtt={:.3} ms", ms(rtt)),
            PingEvent::Lost { seq } => writeln!(out, "lost seq={seq}"),
            PingEvent::Finished(s) => {
                stats = Some(s);
                Ok(())
            }
        }
    };
    net::run_datagram_client(&mut ping, a.addr.first(), &mut report)?;
    let stats = stats.ok_or("ping ended without a result")?;
    println!("{}", summary(&stats));
    if stats.probes > 0 && stats.received == 0 {
        return Err("no replies".into());
    }
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(s: &PingStats) -> String {
    let loss = if s.probes == 0 {
        0.0
    } else {
        100.0 * f64::from(s.lost()) / f64::from(s.probes)
    };
    let rtt = match (s.rtt_min, s.rtt_avg(), s.rtt_max) {
        (Some(min), Some(avg), Some(max)) => {
            format!(
                "rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
                ms(min),
                ms(avg),
                ms(max)
            )
        }
        _ => "rtt n/a".to_string(),
    };
    format!(
        "{} probes, {} received, {} lost ({loss:.1}% loss), {} datagrams sent, {rtt}",
        s.probes,
        s.received,
        s.lost(),
        s.transmitted
    )
}
