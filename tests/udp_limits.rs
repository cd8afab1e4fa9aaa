//! The UDP echo server's defences, machines only, in virtual time: no reply
//! to service ports, a token bucket per source address (so a forged
//! datagram between two servers dies out and a flood is capped), bounded
//! state and events; and `udp ping` still answered in full.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::echo::{
    PingEvent, ReplyRefusal, UdpEchoServer, UdpEvent, UdpPing, REFUSED_SOURCE_PORTS,
};
use echoxfer::{Datagram, DatagramMachine, Machine, Output, UdpConfig};
use proptest::prelude::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Everything the server output since the last drain.
fn drain(server: &mut UdpEchoServer) -> (Vec<Datagram>, Vec<UdpEvent>) {
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    loop {
        match server.poll_output() {
            Output::Transmit(d) => sent.push(d),
            Output::Event(e) => events.push(e),
            Output::Wait(_) => return (sent, events),
            Output::Done(r) => panic!("the UDP server never ends: {r:?}"),
        }
    }
}

/// Whether the server answers one datagram from `from` at `now`.
fn answers(server: &mut UdpEchoServer, now: Instant, from: SocketAddr) -> bool {
    server.handle_datagram(now, from, b"x");
    let (sent, _) = drain(server);
    assert!(sent.len() <= 1);
    sent.len() == 1
}

fn limits(rate: u32, burst: u32) -> UdpConfig {
    UdpConfig {
        udp_reply_rate: rate,
        udp_reply_burst: burst,
        ..UdpConfig::default()
    }
}

/// The most replies a token bucket allows one source over `elapsed`.
fn bucket_bound(config: &UdpConfig, elapsed: Duration) -> u64 {
    let refilled = elapsed.as_nanos() * u128::from(config.udp_reply_rate) / 1_000_000_000;
    u64::from(config.udp_reply_burst) + refilled as u64
}

/// Two servers wired to each other, and one datagram sent to the first
/// that claims to come from the second; each hop takes `hop`. Returns the
/// replies both sent and the virtual time it took, or `None` if the
/// datagram was still bouncing after `cap` replies.
fn bounce(config: &UdpConfig, hop: Duration, cap: u64) -> Option<(u64, Duration)> {
    let addrs = [addr("192.0.2.1:8888"), addr("192.0.2.2:8888")];
    let mut servers = [
        UdpEchoServer::new(config.clone()),
        UdpEchoServer::new(config.clone()),
    ];
    let start = Instant::now();
    let mut now = start;
    let forged = (0, addrs[1], Bytes::from_static(b"forged"));
    let mut in_flight = VecDeque::from([forged]);
    let mut replies = 0;
    while let Some((to, from, payload)) = in_flight.pop_front() {
        if replies >= cap {
            return None;
        }
        now += hop;
        servers[to].handle_datagram(now, from, &payload);
        for d in drain(&mut servers[to]).0 {
            replies += 1;
            let next = addrs.iter().position(|a| *a == d.peer).unwrap();
            in_flight.push_back((next, addrs[to], d.payload));
        }
    }
    Some((replies, now - start))
}

#[test]
fn a_forged_datagram_between_two_servers_bounces_at_most_twice_the_burst() {
    let config = limits(100, 20);
    let (replies, elapsed) =
        bounce(&config, Duration::from_micros(10), 1_000_000).expect("the loop must die out");
    assert!(replies >= 20, "the burst is served first: {replies}");
    assert!(
        replies <= 2 * bucket_bound(&config, elapsed),
        "{replies} bounces in {elapsed:?}"
    );
}

#[test]
fn a_loop_between_default_servers_dies_out_at_lan_speed() {
    // One millisecond a hop: each server gets 500 datagrams a second from
    // the other, above the default rate, so the loop ends.
    let config = UdpConfig::default();
    let (replies, elapsed) =
        bounce(&config, Duration::from_millis(1), 1_000_000).expect("the loop must die out");
    assert!(
        replies <= 2 * bucket_bound(&config, elapsed),
        "{replies} bounces in {elapsed:?}"
    );
}

#[test]
fn service_ports_are_never_answered() {
    let classic = [
        7, 13, 17, 19, 37, 53, 123, 161, 1900, 3702, 5353, 5683, 11211,
    ];
    let ports = (0..1024).chain(REFUSED_SOURCE_PORTS).chain(classic);
    let mut server = UdpEchoServer::new(UdpConfig::default());
    let now = Instant::now();
    for port in ports {
        for ip in ["198.51.100.7", "[2001:db8::7]"] {
            let from = addr(&format!("{ip}:{port}"));
            server.handle_datagram(now, from, b"forged");
            let (sent, events) = drain(&mut server);
            assert!(sent.is_empty(), "answered {from}");
            assert!(
                matches!(events[..], [UdpEvent::Refused { reason: ReplyRefusal::ServicePort, peer, len: 6 }] if peer == from),
                "{from}: {events:?}"
            );
        }
    }
    for port in [1024, 8888, 32768, 60999, 65535] {
        let from = addr(&format!("198.51.100.8:{port}"));
        assert!(answers(&mut server, now, from), "{from} must be answered");
    }
}

#[test]
fn sources_that_cannot_send_are_never_answered() {
    let mut server = UdpEchoServer::new(UdpConfig::default());
    let now = Instant::now();
    for from in [
        "0.0.0.0:5000",
        "255.255.255.255:5000",
        "224.0.0.251:5000",
        "[::]:5000",
        "[ff02::1]:5000",
        "[::ffff:255.255.255.255]:5000",
    ] {
        server.handle_datagram(now, addr(from), b"x");
        let (sent, events) = drain(&mut server);
        assert!(sent.is_empty(), "answered {from}");
        assert!(
            matches!(
                events[..],
                [UdpEvent::Refused {
                    reason: ReplyRefusal::BadAddress,
                    ..
                }]
            ),
            "{from}: {events:?}"
        );
    }
    assert_eq!(server.stats().refused_address, 6);
}

#[test]
fn a_flood_from_one_source_is_capped_at_burst_plus_rate_times_time() {
    // A datagram every millisecond for ten seconds, far above the rate.
    let config = limits(100, 50);
    let mut server = UdpEchoServer::new(config.clone());
    let start = Instant::now();
    let victim = addr("203.0.113.9:40000");
    let mut replies = 0;
    let mut limited = 0;
    for ms in 0..10_000 {
        let now = start + Duration::from_millis(ms);
        server.handle_datagram(now, victim, b"flood");
        let (sent, events) = drain(&mut server);
        replies += sent.len() as u64;
        limited += events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    UdpEvent::Refused {
                        reason: ReplyRefusal::RateLimited,
                        ..
                    }
                )
            })
            .count() as u64;
        let bound = bucket_bound(&config, now - start);
        assert!(
            replies <= bound,
            "{replies} replies by {ms} ms, bound {bound}"
        );
    }
    // The rate is served, not just capped: 50 + 100/s × 9.999 s.
    assert!((1049..=1050).contains(&replies), "{replies}");
    assert_eq!(replies + limited, 10_000);
    let stats = server.stats();
    assert_eq!((stats.echoed, stats.rate_limited), (replies, limited));
}

#[test]
fn a_second_source_is_answered_while_the_first_is_limited() {
    let mut server = UdpEchoServer::new(limits(10, 5));
    let now = Instant::now();
    let first = addr("203.0.113.1:40000");
    let other_port_same_host = addr("203.0.113.1:40001");
    for _ in 0..5 {
        assert!(answers(&mut server, now, first));
    }
    assert!(!answers(&mut server, now, first), "the burst is used");
    assert!(
        !answers(&mut server, now, other_port_same_host),
        "the bucket is per address, not per port"
    );
    let second = addr("203.0.113.2:40000");
    for _ in 0..5 {
        assert!(answers(&mut server, now, second), "another source");
    }
    // One interval (100 ms) later the first has one reply again.
    let later = now + Duration::from_millis(100);
    assert!(answers(&mut server, later, first));
    assert!(!answers(&mut server, later, first));
}

#[test]
fn tracked_sources_stay_within_the_cap_and_a_spray_does_not_free_a_limited_source() {
    let config = UdpConfig {
        udp_max_sources: 64,
        ..limits(10, 5)
    };
    let mut server = UdpEchoServer::new(config);
    let now = Instant::now();
    let limited = addr("203.0.113.1:40000");
    let used = (0..10).take_while(|_| answers(&mut server, now, limited));
    assert_eq!(used.count(), 5, "the burst, then nothing");
    for i in 0..100_000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        let sprayed = SocketAddr::from(([10, a, b, c], 40000));
        assert!(
            answers(&mut server, now, sprayed),
            "a new source is answered"
        );
        assert!(server.tracked_sources() <= 64);
    }
    assert!(
        !answers(&mut server, now, limited),
        "evicting the fullest bucket keeps a limited source limited"
    );
    // Once every bucket is full again, none is kept.
    assert!(answers(&mut server, now + Duration::from_secs(10), limited));
    assert_eq!(server.tracked_sources(), 1);
}

#[test]
fn events_waiting_are_bounded_and_the_counts_stay_exact() {
    let config = UdpConfig {
        datagram_queue: 16,
        ..UdpConfig::default()
    };
    let mut server = UdpEchoServer::new(config);
    let now = Instant::now();
    for _ in 0..1000 {
        server.handle_datagram(now, addr("198.51.100.7:53"), b"forged");
    }
    let (sent, events) = drain(&mut server);
    assert!(sent.is_empty());
    assert_eq!(events.len(), 16);
    let stats = server.stats();
    assert_eq!((stats.refused_port, stats.events_dropped), (1000, 984));
}

#[test]
fn a_default_ping_is_answered_in_full_by_a_default_server() {
    let server_addr = addr("192.0.2.1:8888");
    let client_addr = addr("192.0.2.2:45000");
    let mut server = UdpEchoServer::new(UdpConfig::default());
    let mut now = Instant::now();
    let mut ping = UdpPing::new(UdpConfig::default(), now, server_addr, 10, 64);
    for _ in 0..10_000 {
        match ping.poll_output() {
            Output::Transmit(d) => {
                now += Duration::from_micros(100);
                server.handle_datagram(now, client_addr, &d.payload);
                for reply in drain(&mut server).0 {
                    assert_eq!(reply.peer, client_addr);
                    ping.handle_datagram(now, server_addr, &reply.payload);
                }
            }
            Output::Event(PingEvent::Finished(stats)) => {
                assert_eq!(
                    (stats.probes, stats.received, stats.transmitted),
                    (10, 10, 10)
                );
                return;
            }
            Output::Event(_) => {}
            Output::Wait(Some(deadline)) => {
                now = now.max(deadline);
                ping.handle_timeout(now);
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("the ping did not finish");
}

proptest! {
    /// Invariant: whatever the arrival times, one source never gets more
    /// than burst + rate × elapsed replies.
    #[test]
    fn replies_to_one_source_never_exceed_burst_plus_rate_times_elapsed(
        rate in 1u32..2000,
        burst in 1u32..64,
        gaps_us in proptest::collection::vec(0u64..20_000, 1..400),
    ) {
        let config = limits(rate, burst);
        let mut server = UdpEchoServer::new(config.clone());
        let start = Instant::now();
        let mut now = start;
        let mut replies = 0;
        for gap in gaps_us {
            now += Duration::from_micros(gap);
            if answers(&mut server, now, addr("203.0.113.5:50000")) {
                replies += 1;
            }
            prop_assert!(replies <= bucket_bound(&config, now - start));
        }
        prop_assert!(replies >= 1, "the first datagram is always answered");
    }
}
