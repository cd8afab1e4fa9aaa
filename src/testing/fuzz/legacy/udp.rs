//! The legacy UDP sink and sender.

use super::*;

/// The legacy UDP sink and sender. The sender takes lines from the input
/// (some too long, some beyond its queue, some after `close`), stray
/// datagrams and drains; the sink gets what the sender sent plus strangers'
/// datagrams. Invariants: the sender refuses exactly what it must
/// (`MessageTooLarge` over 1024 bytes or `max_datagram`, `WouldBlock` at
/// `datagram_queue`, `Closed` after close), sends each accepted line as one
/// datagram to its target, in order, with a `Sent` event each, ends `Done`
/// after close; the sink reports every datagram whole, in order, never
/// sends and never ends.
pub fn legacy_udp(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let config = UdpConfig {
        datagram_queue: usize::from(mode % 8) + 1,
        max_datagram: [65_507, 100, 1024, 1025][usize::from(mode >> 3) % 4],
        ..UdpConfig::default()
    };
    let target: SocketAddr = "127.0.0.1:7".parse().expect("address");
    let stranger: SocketAddr = "[::1]:9".parse().expect("address");
    let now = start();
    let mut sender = LegacyUdpSender::new(config.clone(), target);
    let mut sink = LegacyUdpSink::new();
    let mut queued: VecDeque<Bytes> = VecDeque::new();
    let mut closed = false;
    let mut sink_expected = Vec::new();
    let max = PIECE_MAX.min(config.max_datagram);
    let drain_sender = |sender: &mut LegacyUdpSender,
                        queued: &mut VecDeque<Bytes>,
                        sink: &mut LegacyUdpSink,
                        sink_expected: &mut Vec<SinkEvent>,
                        closed: bool| {
        let d = drain(sender);
        let lens: Vec<SenderDatagramEvent> = d
            .transmits
            .iter()
            .map(|t| SenderDatagramEvent::Sent(t.payload.len()))
            .collect();
        assert_eq!(d.events, lens, "one Sent per datagram");
        for Datagram { peer, payload } in d.transmits {
            assert_eq!(peer, target);
            assert!(payload.len() <= max);
            assert_eq!(
                Some(payload.clone()),
                queued.pop_front(),
                "datagram differs"
            );
            sink.handle_datagram(now, peer, &payload);
            sink_expected.push(SinkEvent::Datagram { peer, payload });
        }
        assert!(queued.is_empty(), "a line not sent");
        assert_eq!(d.done, closed.then_some(Ok(())), "sender end");
    };
    while !input.is_empty() {
        let op = input.byte();
        match op % 8 {
            0..=3 => {
                let n = usize::from(input.u16() % 1200);
                let line = Bytes::copy_from_slice(input.take(n));
                let r = sender.send_line(line.clone());
                let want = if closed {
                    Err(UsageError::Closed)
                } else if line.len() > max {
                    Err(UsageError::MessageTooLarge {
                        len: line.len(),
                        max,
                    })
                } else if queued.len() >= config.datagram_queue {
                    Err(UsageError::WouldBlock)
                } else {
                    queued.push_back(line);
                    Ok(())
                };
                assert_eq!(r, want, "send_line");
            }
            4 => drain_sender(
                &mut sender,
                &mut queued,
                &mut sink,
                &mut sink_expected,
                closed,
            ),
            5 => {
                let payload = input.take(usize::from(op)).to_vec();
                sender.handle_datagram(now, stranger, &payload);
                sink.handle_datagram(now, stranger, &payload);
                sink_expected.push(SinkEvent::Datagram {
                    peer: stranger,
                    payload: Bytes::from(payload),
                });
            }
            6 => {
                sender.handle_timeout(now + Duration::from_secs(u64::from(op)));
                sink.handle_timeout(now + Duration::from_secs(3600));
            }
            _ => {
                sender.close();
                closed = true;
            }
        }
    }
    sender.close();
    drain_sender(
        &mut sender,
        &mut queued,
        &mut sink,
        &mut sink_expected,
        true,
    );
    let d = drain(&mut sink);
    assert!(d.transmits.is_empty(), "the sink replied");
    assert_eq!(d.events, sink_expected, "sink events");
    assert!(d.done.is_none(), "the sink ended by itself");
    assert_eq!(sink.poll_output(), Output::Wait(None));
}
