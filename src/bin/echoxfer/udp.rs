//! `echoxfer udp serve|ping`: wires the datagram machines to the blocking driver.

use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use echoxfer::driver::{blocking, Ignore};
use echoxfer::echo::{PingEvent, PingStats, UdpEchoServer, UdpPing};
use echoxfer::Config;

use crate::args::{UdpPingArgs, UdpServeArgs};
use crate::CmdResult;

pub fn serve(a: UdpServeArgs) -> CmdResult {
    if a.legacy {
        return crate::legacy::udp_serve(a);
    }
    let socket = UdpSocket::bind(a.addr)?;
    crate::echo::announce(socket.local_addr()?);
    let shutdown = blocking::Shutdown::new();
    let trigger = shutdown.clone();
    ctrlc::set_handler(move || trigger.trigger())?;
    let mut server = UdpEchoServer::new(Config::default());
    blocking::run_datagram(&mut server, &socket, &mut Ignore, &shutdown)?;
    Ok(())
}

pub fn ping(a: UdpPingArgs) -> CmdResult {
    let config = Config {
        probe_timeout: a.timeout,
        probe_retries: a.retries,
        ..Config::default()
    };
    config.validate()?;
    let local: SocketAddr = if a.addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(local)?;
    let mut ping = UdpPing::new(config, Instant::now(), a.addr, a.count, a.size);
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
    blocking::run_datagram(&mut ping, &socket, &mut report, &blocking::Shutdown::new())?;
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
