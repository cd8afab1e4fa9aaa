//! The secure channel's contract as its public API states it, one rule per
//! test: what an empty secret or a bad config does, what counts as a
//! guess at the code (`has_peer_hello`, `handshake`, `failed_guess`),
//! what `error` names, and how a machine that failed or ended answers
//! input, timeouts and `poll_timeout`. Echo machines inside, one fixed
//! `Instant` per test (time is a value here), the wire in memory.

use std::time::{Duration, Instant};

use echoxfer::echo::{self, ClientRole, ServerRole};
use echoxfer::error::{ConfigError, RefusalReason};
use echoxfer::secure::{Channel, Handshake, Secure, SecureConfig, Side};
use echoxfer::testing::wire::{CONFIRM_LEN, HELLO_LEN, REFUSAL_LEN, REFUSED_AT_SOURCE_CAP};
use echoxfer::{
    EchoConfig, Error, Machine, Output, SecureError, SessionLimits, StreamMachine, UsageError,
};

const CODE: &[u8] = b"5-orbit-lantern";

/// An echo client with one message and its close queued: it ends on its own
/// once the server answers.
fn echo_client(now: Instant) -> echo::Client {
    let mut client = echo::Client::new(
        ClientRole::new(EchoConfig::default()),
        SessionLimits::default(),
        now,
    );
    client.send(&b"under the channel"[..]).unwrap();
    client.close().unwrap();
    client
}

fn echo_server(now: Instant) -> echo::Server {
    echo::Server::new(
        ServerRole::new("hi", EchoConfig::default()),
        SessionLimits::default(),
        now,
    )
}

fn client(code: &[u8], now: Instant) -> Secure<echo::Client> {
    Secure::client(
        echo_client(now),
        code,
        SecureConfig::default(),
        now,
        [1; 32],
    )
}

fn server(code: &[u8], now: Instant) -> Secure<echo::Server> {
    Secure::server(
        echo_server(now),
        code,
        SecureConfig::default(),
        now,
        [2; 32],
    )
}

/// How a machine ended: its `Done`.
type Ended = Result<(), Error>;

/// Drains `m`: the bytes it sent, and its result if it ended.
fn drain<M: StreamMachine>(m: &mut M) -> (Vec<u8>, Option<Ended>) {
    let mut sent = Vec::new();
    for _ in 0..10_000 {
        match m.poll_output() {
            Output::Transmit(bytes) => sent.extend_from_slice(&bytes),
            Output::Event(_) => {}
            Output::Wait(_) => return (sent, None),
            Output::Done(result) => return (sent, Some(result)),
        }
    }
    panic!("the machine did not settle");
}

/// Hands `m` all of `bytes` (it has room: everything here is small).
fn feed<M: StreamMachine>(m: &mut M, now: Instant, bytes: &[u8]) -> Result<(), Error> {
    let taken = m.handle_input(now, bytes)?;
    assert_eq!(taken, bytes.len(), "a secure side holds two whole records");
    Ok(())
}

/// Exchanges what both sides send until both ended (or nothing moves);
/// returns their results.
fn run<A: StreamMachine, B: StreamMachine>(
    a: &mut A,
    b: &mut B,
    now: Instant,
) -> (Option<Ended>, Option<Ended>) {
    let (mut a_done, mut b_done) = (None, None);
    for _ in 0..100 {
        let (to_b, a_end) = drain(a);
        a_done = a_done.or(a_end);
        if b_done.is_none() && !to_b.is_empty() {
            let _ = feed(b, now, &to_b);
        }
        let (to_a, b_end) = drain(b);
        b_done = b_done.or(b_end);
        if a_done.is_none() && !to_a.is_empty() {
            let _ = feed(a, now, &to_a);
        }
        if (a_done.is_some() && b_done.is_some()) || (to_a.is_empty() && to_b.is_empty()) {
            let (_, a_end) = drain(a);
            let (_, b_end) = drain(b);
            return (a_done.or(a_end), b_done.or(b_end));
        }
    }
    panic!("the session did not settle");
}

fn empty_secret() -> Error {
    UsageError::BadConfig(ConfigError::Inconsistent {
        field: "secret",
        rule: "(the code) must not be empty",
    })
    .into()
}

#[test]
fn an_empty_secret_fails_the_machine_at_once_with_bad_config() {
    let now = Instant::now();
    let mut c = Secure::client(echo_client(now), b"", SecureConfig::default(), now, [1; 32]);
    let mut s = Secure::server(echo_server(now), b"", SecureConfig::default(), now, [2; 32]);
    assert_eq!(c.error(), Some(&empty_secret()));
    assert_eq!(s.error(), Some(&empty_secret()));
    // Not even a hello goes out: nothing to authenticate with.
    assert_eq!(c.poll_output(), Output::Done(Err(empty_secret())));
    assert_eq!(s.poll_output(), Output::Done(Err(empty_secret())));
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.handshake(), Handshake::NoHello);
    assert!(!c.failed_guess());
}

#[test]
fn a_one_byte_secret_is_enough_to_start_the_handshake() {
    let now = Instant::now();
    let mut c = client(b"x", now);
    assert_eq!(c.error(), None);
    assert!(
        matches!(c.poll_output(), Output::Transmit(h) if h.len() == HELLO_LEN && h.starts_with(b"EXFS"))
    );
    assert_eq!(
        c.poll_output(),
        Output::Wait(Some(now + SecureConfig::default().handshake_timeout))
    );
}

#[test]
fn an_invalid_config_fails_the_machine_at_once_naming_the_field() {
    let now = Instant::now();
    let cases = [
        (
            SecureConfig {
                max_record: 0,
                ..SecureConfig::default()
            },
            ConfigError::Zero("max_record"),
        ),
        (
            SecureConfig {
                close_timeout: Duration::ZERO,
                ..SecureConfig::default()
            },
            ConfigError::Zero("close_timeout"),
        ),
    ];
    for (cfg, why) in cases {
        let mut s = Secure::server(echo_server(now), CODE, cfg, now, [2; 32]);
        let expected = Error::from(UsageError::BadConfig(why));
        assert_eq!(s.poll_output(), Output::Done(Err(expected.clone())));
        assert_eq!(s.error(), Some(&expected));
    }
}

#[test]
fn a_peer_that_only_read_our_hello_spent_no_guess() {
    let now = Instant::now();
    let mut s = server(CODE, now);
    let (hello, end) = drain(&mut s);
    assert_eq!((hello.len(), end), (HELLO_LEN, None), "our hello went out");
    assert!(!s.has_peer_hello());
    assert_eq!(s.handshake(), Handshake::NoHello);
    assert!(!s.failed_guess());
    // A health check: it reads our hello and leaves.
    s.handle_eof(now);
    let (sent, end) = drain(&mut s);
    assert!(sent.is_empty());
    assert!(
        matches!(&end, Some(Err(e)) if *e != SecureError::WrongCode.into()),
        "a connection cut in the handshake, not a wrong code: {end:?}"
    );
    assert!(!s.has_peer_hello(), "no hello came");
    assert_eq!(s.handshake(), Handshake::NoHello);
    assert!(!s.handshake().spent_guess());
    assert!(!s.failed_guess(), "a health check is not a guess");
}

#[test]
fn a_peer_that_sent_part_of_a_hello_or_something_else_spent_no_guess() {
    let now = Instant::now();
    let (client_hello, _) = drain(&mut client(CODE, now));
    let mut s = server(CODE, now);
    drain(&mut s);
    feed(&mut s, now, &client_hello[..HELLO_LEN - 1]).unwrap();
    assert_eq!(drain(&mut s), (Vec::new(), None), "no confirmation yet");
    assert!(!s.has_peer_hello(), "one byte short of a hello");
    s.handle_eof(now);
    assert!(matches!(drain(&mut s).1, Some(Err(_))));
    assert!(!s.has_peer_hello());
    assert_eq!(s.handshake(), Handshake::NoHello);
    assert!(!s.failed_guess());

    let mut s = server(CODE, now);
    drain(&mut s);
    let scanner = feed(&mut s, now, b"GET / HTTP/1.1\r\n\r\n");
    assert!(
        matches!(scanner, Err(Error::Secure(SecureError::BadHello(_)))),
        "{scanner:?}"
    );
    assert!(!s.has_peer_hello());
    assert_eq!(s.handshake(), Handshake::NoHello);
    assert!(!s.failed_guess());
}

#[test]
fn a_peer_whose_whole_hello_arrived_holds_a_guess_until_its_confirmation_checks_out() {
    let now = Instant::now();
    let mut c = client(CODE, now);
    let mut s = server(CODE, now);
    let (client_hello, _) = drain(&mut c);
    let (server_hello, _) = drain(&mut s);
    feed(&mut s, now, &client_hello).unwrap();
    let (confirm, _) = drain(&mut s);
    assert_eq!(confirm.len(), CONFIRM_LEN, "our confirmation went out");
    assert!(s.has_peer_hello());
    assert!(!s.is_confirmed());
    assert_eq!(s.handshake(), Handshake::Unconfirmed);
    assert!(s.handshake().spent_guess());
    assert!(s.failed_guess(), "were it to end now, a guess was spent");

    feed(&mut c, now, &server_hello).unwrap();
    feed(&mut c, now, &confirm).unwrap();
    assert!(c.is_confirmed() && c.has_peer_hello());
    let (client_confirm, _) = drain(&mut c);
    feed(&mut s, now, &client_confirm).unwrap();
    assert!(s.is_confirmed());
    assert!(s.has_peer_hello(), "stays true");
    assert_eq!(s.handshake(), Handshake::Confirmed);
    assert!(!s.handshake().spent_guess());
    assert!(!s.failed_guess(), "the peer knows the code");
}

#[test]
fn error_names_the_channels_own_failure() {
    let now = Instant::now();
    let mut c = client(b"5-orbit-lanterm", now);
    let mut s = server(CODE, now);
    assert_eq!((c.error(), s.error()), (None, None));
    let wrong = Error::from(SecureError::WrongCode);
    let (c_end, s_end) = run(&mut c, &mut s, now);
    assert_eq!(c_end, Some(Err(wrong.clone())));
    assert_eq!(s_end, Some(Err(wrong.clone())));
    assert_eq!(c.error(), Some(&wrong));
    assert_eq!(s.error(), Some(&wrong));
    // Each side got the other's hello: each spent a guess.
    assert_eq!(c.handshake(), Handshake::Unconfirmed);
    assert_eq!(s.handshake(), Handshake::Unconfirmed);

    // A silent peer: the handshake's timeout is the channel's failure.
    let cfg = SecureConfig {
        handshake_timeout: Duration::from_secs(4),
        ..SecureConfig::default()
    };
    let mut s = Secure::server(echo_server(now), CODE, cfg, now, [2; 32]);
    drain(&mut s);
    assert_eq!(s.error(), None);
    s.handle_timeout(now + Duration::from_secs(4));
    let timeout = Error::from(SecureError::HandshakeTimeout(Duration::from_secs(4)));
    assert_eq!(s.error(), Some(&timeout));
    assert_eq!(drain(&mut s), (Vec::new(), Some(Err(timeout))));
}

#[test]
fn the_wrapped_machines_own_failure_is_its_result_not_the_channels_error() {
    let now = Instant::now();
    let mut c = client(CODE, now);
    let mut s = server(CODE, now);
    // The handshake only: the hellos, then the confirmations.
    for _ in 0..2 {
        let (to_s, _) = drain(&mut c);
        let (to_c, _) = drain(&mut s);
        feed(&mut s, now, &to_s).unwrap();
        feed(&mut c, now, &to_c).unwrap();
    }
    assert!(c.is_confirmed() && s.is_confirmed());
    s.abort("the operator stopped it".into());
    s.handle_eof(now);
    let (_, end) = drain(&mut s);
    assert_eq!(
        end,
        Some(Err(Error::Aborted("the operator stopped it".into())))
    );
    assert_eq!(s.error(), None, "the channel itself did not fail");
    assert_eq!(s.handshake(), Handshake::Confirmed);
}

#[test]
fn a_machine_that_failed_has_no_deadline_and_answers_every_input_with_its_error() {
    let now = Instant::now();
    let mut c = client(b"5-orbit-lanterm", now);
    let mut s = server(CODE, now);
    let (_, s_end) = run(&mut c, &mut s, now);
    let wrong = Error::from(SecureError::WrongCode);
    assert_eq!(s_end, Some(Err(wrong.clone())));
    assert_eq!(s.poll_timeout(), None, "Done: no deadline");
    s.handle_timeout(now + Duration::from_secs(3600));
    assert_eq!(s.poll_timeout(), None);
    assert!(
        s.input_room() > 0,
        "it keeps reading, so the peer is never blocked"
    );
    for _ in 0..3 {
        assert_eq!(s.handle_input(now, &[0x17; 1000]), Err(wrong.clone()));
    }
    assert_eq!(drain(&mut s), (Vec::new(), Some(Err(wrong))));

    // Failed before the peer's whole hello, with the handshake's deadline
    // still ahead: no deadline either.
    let mut s = server(CODE, now);
    drain(&mut s);
    assert!(feed(&mut s, now, b"EXFQ").is_err());
    assert_eq!(s.poll_timeout(), None);
    assert!(matches!(
        drain(&mut s).1,
        Some(Err(Error::Secure(SecureError::BadHello(_))))
    ));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_machine_that_ended_takes_input_and_discards_it() {
    let now = Instant::now();
    let mut c = client(CODE, now);
    let mut s = server(CODE, now);
    let (c_end, s_end) = run(&mut c, &mut s, now);
    assert_eq!((c_end, s_end), (Some(Ok(())), Some(Ok(()))));
    for (name, end) in [
        ("client", ended(&mut c, now)),
        ("server", ended(&mut s, now)),
    ] {
        assert!(end, "the {name} kept its clean end");
    }
}

/// Hands an ended `m` far more than two records' worth of bytes; whether
/// it took every piece whole, stayed `Done(Ok)` and without a deadline.
fn ended<M: StreamMachine>(m: &mut M, now: Instant) -> bool {
    assert_eq!(m.poll_timeout(), None, "Done: no deadline");
    let piece = [0x17u8; 4096];
    for _ in 0..100 {
        assert!(m.input_room() >= piece.len(), "room: {}", m.input_room());
        assert_eq!(m.handle_input(now, &piece), Ok(piece.len()));
        m.handle_timeout(now + Duration::from_secs(60));
        assert_eq!(m.poll_timeout(), None);
    }
    matches!(m.poll_output(), Output::Done(Ok(())))
}

#[test]
fn during_the_handshake_the_deadline_is_the_handshakes_and_once_open_the_wrapped_machines() {
    let now = Instant::now();
    let limits = SessionLimits {
        idle_timeout: Duration::from_secs(30),
        ..SessionLimits::default()
    };
    let cfg = SecureConfig {
        handshake_timeout: Duration::from_secs(7),
        ..SecureConfig::default()
    };
    let inner = echo::Server::new(ServerRole::new("hi", EchoConfig::default()), limits, now);
    let mut s = Secure::server(inner, CODE, cfg, now, [2; 32]);
    let mut c = client(CODE, now);
    let (server_hello, _) = drain(&mut s);
    feed(&mut c, now, &server_hello).unwrap();
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(7)));
    assert_eq!(
        s.write_timeout(),
        Some(Duration::from_secs(30)),
        "the wrapped machine's, from the start"
    );
    assert_eq!(s.write_timeout(), s.inner().write_timeout());
    // The client's hello and confirmation, then the server's confirmation.
    let (to_s, _) = drain(&mut c);
    feed(&mut s, now, &to_s).unwrap();
    let (to_c, _) = drain(&mut s);
    feed(&mut c, now, &to_c).unwrap();
    assert!(s.is_confirmed() && c.is_confirmed());
    let (_, end) = drain(&mut s);
    assert_eq!(end, None);
    let inner_deadline = s.inner().poll_timeout();
    assert!(inner_deadline.is_some_and(|t| t > now + Duration::from_secs(7)));
    assert_eq!(s.poll_timeout(), inner_deadline, "the handshake's is over");
    // The handshake's deadline passing changes nothing now.
    s.handle_timeout(now + Duration::from_secs(7));
    assert_eq!(drain(&mut s).1, None);
    assert_eq!(s.error(), None);
    // The wrapped machine's own does: its failure, not the channel's.
    // The wrapped machine's own does: it fails (and lingers, then the
    // channel waits for the peer's close record), its failure, not the
    // channel's.
    let mut end = None;
    for _ in 0..10 {
        let at = s.poll_timeout().expect("a live session has a deadline");
        s.handle_timeout(at);
        end = drain(&mut s).1;
        if end.is_some() {
            break;
        }
    }
    assert!(
        matches!(end, Some(Err(ref e)) if !matches!(e, Error::Secure(_))),
        "{end:?}"
    );
    assert_eq!(s.error(), None);
}

// ------------------------------------------------ Channel: secure or plain

fn channel_client(secret: Option<&[u8]>, now: Instant) -> Channel<echo::Client> {
    let cfg = SecureConfig::default();
    Channel::new(Side::Client, echo_client(now), secret, cfg, now, [1; 32])
}

fn channel_server(secret: Option<&[u8]>, now: Instant) -> Channel<echo::Server> {
    let cfg = SecureConfig::default();
    Channel::new(Side::Server, echo_server(now), secret, cfg, now, [2; 32])
}

#[test]
fn a_channel_with_a_secret_runs_secure_and_one_without_runs_plain() {
    let now = Instant::now();
    let (mut c, mut s) = (
        channel_client(Some(CODE), now),
        channel_server(Some(CODE), now),
    );
    assert!(c.is_secure() && s.is_secure());
    assert_eq!(c.handshake(), Some(Handshake::NoHello));
    assert_eq!(run(&mut c, &mut s, now), (Some(Ok(())), Some(Ok(()))));
    assert_eq!(s.handshake(), Some(Handshake::Confirmed));
    assert!(!s.failed_guess());

    let (mut c, mut s) = (channel_client(None, now), channel_server(None, now));
    assert!(!c.is_secure() && !s.is_secure());
    assert_eq!(c.handshake(), None, "no secret, no handshake");
    let (first, _) = drain(&mut c);
    assert!(!first.starts_with(b"EXFS"), "plain bytes: {first:?}");
    feed(&mut s, now, &first).unwrap();
    assert_eq!(run(&mut c, &mut s, now), (Some(Ok(())), Some(Ok(()))));
    assert!(!s.failed_guess(), "a plain session spends no guess");

    let secure = Secure::client(
        echo_client(now),
        CODE,
        SecureConfig::default(),
        now,
        [1; 32],
    );
    assert!(Channel::from(secure).is_secure());
}

#[test]
fn a_secure_channel_answers_as_its_secure_machine_and_a_plain_one_as_its_machine() {
    let now = Instant::now();
    let cfg = SecureConfig::default();
    let (mut ch, mut bare) = (
        channel_server(Some(CODE), now),
        Secure::server(echo_server(now), CODE, cfg, now, [2; 32]),
    );
    assert_eq!(drain(&mut ch), drain(&mut bare), "the same hello");
    assert_eq!(ch.poll_timeout(), bare.poll_timeout());
    assert_eq!(
        ch.poll_timeout(),
        Some(now + SecureConfig::default().handshake_timeout)
    );
    assert_eq!(ch.input_room(), bare.input_room());
    assert_eq!(ch.write_timeout(), bare.write_timeout());
    assert_eq!(
        ch.write_timeout(),
        Some(SessionLimits::default().idle_timeout)
    );
    assert!(!ch.failed_guess());
    // A guesser's hello: the channel holds a failed guess, as the machine does.
    let (hello, _) = drain(&mut client(b"1-wrong-guess", now));
    feed(&mut ch, now, &hello).unwrap();
    assert_eq!(drain(&mut ch).0.len(), CONFIRM_LEN);
    assert!(ch.failed_guess());
    assert_eq!(ch.handshake(), Some(Handshake::Unconfirmed));
    // Its timers are the machine's.
    ch.handle_timeout(now + SecureConfig::default().handshake_timeout);
    assert_eq!(
        drain(&mut ch).1,
        Some(Err(SecureError::HandshakeTimeout(cfg_timeout()).into()))
    );
    // Its input too: a failed channel answers its error.
    assert_eq!(
        ch.handle_input(now, b"more"),
        Err(SecureError::HandshakeTimeout(cfg_timeout()).into())
    );

    // The end of input and an abort reach the machine.
    let mut ch = channel_server(Some(CODE), now);
    drain(&mut ch);
    ch.handle_eof(now);
    assert!(matches!(drain(&mut ch).1, Some(Err(Error::Secure(_)))));
    let mut ch = channel_server(Some(CODE), now);
    drain(&mut ch);
    ch.abort("shutting down".into());
    assert_eq!(
        drain(&mut ch).1,
        Some(Err(Error::Aborted("shutting down".into())))
    );

    // Plain: the machine itself.
    let mut plain = channel_client(None, now);
    let mut bare = echo_client(now);
    assert_eq!(drain(&mut plain), drain(&mut bare));
    assert_eq!(plain.poll_timeout(), bare.poll_timeout());
    assert!(plain.poll_timeout().is_some());
    assert_eq!(plain.input_room(), bare.input_room());
    assert!(plain.input_room() > 1);
    assert_eq!(plain.write_timeout(), bare.write_timeout());
    assert_eq!(plain.inner().role().in_flight(), 1, "the message queued");
    plain.abort("shutting down".into());
    let (why, _) = drain(&mut plain);
    assert!(contains(&why, b"shutting down"), "it tells the peer why");
    plain.handle_eof(now);
    assert_eq!(
        drain(&mut plain).1,
        Some(Err(Error::Aborted("shutting down".into())))
    );
    let mut plain = channel_client(None, now);
    drain(&mut plain);
    plain.handle_timeout(plain.poll_timeout().unwrap());
    let (why, _) = drain(&mut plain);
    assert!(!why.is_empty(), "it tells the peer it timed out");
    plain.handle_eof(now);
    assert!(
        matches!(drain(&mut plain).1, Some(Err(Error::TooSlow { .. }))),
        "timed out"
    );
    let mut plain = channel_client(None, now);
    drain(&mut plain);
    plain.handle_eof(now);
    assert!(matches!(drain(&mut plain).1, Some(Err(_))), "cut");
}

fn cfg_timeout() -> Duration {
    SecureConfig::default().handshake_timeout
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_side_that_ended_waits_for_the_peers_close_record_until_close_timeout_and_no_less() {
    let now = Instant::now();
    let cfg = SecureConfig {
        close_timeout: Duration::from_secs(5),
        ..SecureConfig::default()
    };
    let mut c = client(CODE, now);
    let mut s = Secure::server(echo_server(now), CODE, cfg, now, [2; 32]);
    let until = now + Duration::from_secs(5);
    // The client's message and exit reach the server, whose session ends;
    // the client's close record never comes.
    let mut closing = false;
    for _ in 0..10 {
        let (to_s, _) = drain(&mut c);
        feed(&mut s, now, &to_s).unwrap();
        let (to_c, end) = drain(&mut s);
        assert_eq!(end, None, "the server waits for the client's close record");
        if s.poll_timeout() == Some(until) {
            closing = true;
            break;
        }
        feed(&mut c, now, &to_c).unwrap();
    }
    assert!(closing, "the server's session ended");
    s.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(drain(&mut s), (Vec::new(), None), "early: still waiting");
    assert_eq!(s.poll_timeout(), Some(until));
    s.handle_timeout(until);
    assert_eq!(drain(&mut s), (Vec::new(), Some(Ok(()))));
}

/// Net bytes this thread holds on the heap: a failed or ended machine's
/// memory, measured while it is fed (deterministic: no timing involved).
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    fn add(n: isize) {
        let _ = LIVE.try_with(|live| live.set(live.get() + n));
    }

    /// Bytes allocated by this thread and not freed (by it) since it began.
    pub fn live() -> isize {
        LIVE.with(Cell::get)
    }

    // SAFETY: every call is passed to the system allocator unchanged; the
    // count beside it allocates nothing.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size() as isize);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(layout.size() as isize);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            add(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                add(new_size as isize - layout.size() as isize);
            }
            p
        }
    }
}

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

/// Reads `total` bytes into `m` as a driver does (`input_buffer`, then
/// `commit_input`); returns the most heap this thread held beyond what it
/// held before, and every commit's result.
fn read_into<M: StreamMachine>(m: &mut M, now: Instant, total: usize) -> (isize, Vec<Ended>) {
    let before = heap::live();
    let (mut most, mut results, mut read) = (0, Vec::new(), 0);
    while read < total {
        let n = m.input_buffer(64 * 1024).len();
        assert!(n > 0, "it keeps reading");
        results.push(m.commit_input(now, n));
        read += n;
        most = most.max(heap::live() - before);
    }
    (most, results)
}

#[test]
fn a_machine_that_ended_or_failed_holds_none_of_what_it_reads() {
    const TOTAL: usize = 16 << 20;
    const BOUND: isize = 1 << 20;
    let now = Instant::now();
    let mut c = client(CODE, now);
    let mut s = server(CODE, now);
    assert_eq!(run(&mut c, &mut s, now), (Some(Ok(())), Some(Ok(()))));
    let (most, results) = read_into(&mut s, now, TOTAL);
    assert!(results.iter().all(Result::is_ok), "ended: taken");
    assert!(
        most < BOUND,
        "an ended machine kept {most} bytes of 16 MiB read"
    );
    assert_eq!(drain(&mut s).1, Some(Ok(())));

    let mut c = client(b"5-orbit-lanterm", now);
    let mut s = server(CODE, now);
    let (_, s_end) = run(&mut c, &mut s, now);
    let wrong = Error::from(SecureError::WrongCode);
    assert_eq!(s_end, Some(Err(wrong.clone())));
    let (most, results) = read_into(&mut s, now, TOTAL);
    assert!(
        results.iter().all(|r| *r == Err(wrong.clone())),
        "failed: its error"
    );
    assert!(
        most < BOUND,
        "a failed machine kept {most} bytes of 16 MiB read"
    );
}

#[test]
fn every_os_seed_is_fresh_and_so_is_every_os_seeded_channels_hello() {
    use echoxfer::secure::{os_seed, SEED_LEN};
    let (a, b) = (os_seed().unwrap(), os_seed().unwrap());
    assert_eq!(a.len(), SEED_LEN);
    // Equal by chance once in 2^256.
    assert_ne!(a, b, "a seed is never reused");
    assert_ne!(a, [0; SEED_LEN]);

    let now = Instant::now();
    let cfg = SecureConfig::default();
    let hello = |m: Channel<echo::Client>| drain(&mut { m }).0;
    let one = Channel::client(echo_client(now), Some(CODE), cfg.clone(), now).unwrap();
    let two = Channel::client(echo_client(now), Some(CODE), cfg.clone(), now).unwrap();
    assert!(one.is_secure() && two.is_secure());
    let (one, two) = (hello(one), hello(two));
    assert_eq!((one.len(), two.len()), (HELLO_LEN, HELLO_LEN));
    assert_ne!(one, two, "each session draws its own SPAKE2 scalar");
    let server = Channel::server(echo_server(now), Some(CODE), cfg.clone(), now).unwrap();
    assert!(server.is_secure());
    let plain = Channel::client(echo_client(now), None, cfg, now).unwrap();
    assert!(!plain.is_secure(), "no secret: plain, and no seed needed");
}

/// A server's refusal notice (docs/PROTOCOL.md, section 6), byte by byte:
/// `EXFW`, the reason, the seconds (u32, big-endian).
fn refusal_notice(reason: u8, secs: u32) -> Vec<u8> {
    let mut notice = b"EXFW".to_vec();
    notice.push(reason);
    notice.extend_from_slice(&secs.to_be_bytes());
    assert_eq!(notice.len(), REFUSAL_LEN);
    notice
}

#[test]
fn a_client_that_reads_a_whole_refusal_notice_instead_of_a_hello_fails_with_its_reason() {
    let now = Instant::now();
    let notice = refusal_notice(REFUSED_AT_SOURCE_CAP, 3);
    let mut c = client(CODE, now);
    drain(&mut c);
    feed(&mut c, now, &notice[..REFUSAL_LEN - 1]).unwrap();
    assert_eq!(drain(&mut c), (Vec::new(), None), "not whole yet");
    let refused = SecureError::Refused {
        reason: RefusalReason::SourceCap,
        retry_after: Duration::from_secs(3),
    };
    assert_eq!(
        feed(&mut c, now, &notice[REFUSAL_LEN - 1..]),
        Err(refused.clone().into())
    );
    assert_eq!(drain(&mut c), (Vec::new(), Some(Err(refused.into()))));
    assert_eq!(c.handshake(), Handshake::NoHello, "no guess either way");
    // A server is never refused: to it, a notice is no hello.
    let mut s = server(CODE, now);
    drain(&mut s);
    assert!(matches!(
        feed(&mut s, now, &notice),
        Err(Error::Secure(SecureError::BadHello(_)))
    ));
}

/// A client and a server whose handshake is done (both confirmed), with
/// nothing sent under the keys yet.
fn open_pair(now: Instant) -> (Secure<echo::Client>, Secure<echo::Server>) {
    let (mut c, mut s) = (client(CODE, now), server(CODE, now));
    let ((c_hello, _), (s_hello, _)) = (drain(&mut c), drain(&mut s));
    feed(&mut c, now, &s_hello).unwrap();
    feed(&mut s, now, &c_hello).unwrap();
    let ((c_confirm, _), (s_confirm, _)) = (drain(&mut c), drain(&mut s));
    assert_eq!(
        (c_confirm.len(), s_confirm.len()),
        (CONFIRM_LEN, CONFIRM_LEN)
    );
    feed(&mut c, now, &s_confirm).unwrap();
    feed(&mut s, now, &c_confirm).unwrap();
    assert!(c.is_confirmed() && s.is_confirmed());
    (c, s)
}

#[test]
fn a_record_header_of_unknown_kind_fails_the_channel_once_its_four_bytes_are_in() {
    let now = Instant::now();
    let (_, mut s) = open_pair(now);
    feed(&mut s, now, &[9, 0, 0]).unwrap();
    assert_eq!(s.error(), None, "three bytes are no header yet");
    let unknown = Error::Secure(SecureError::Integrity("a record of unknown kind"));
    assert_eq!(feed(&mut s, now, &[0]), Err(unknown.clone()));
    assert_eq!(s.error(), Some(&unknown));
}

#[test]
fn no_byte_may_follow_the_peers_close_record() {
    let now = Instant::now();
    let (mut c, mut s) = open_pair(now);
    let (to_server, _) = drain(&mut c);
    feed(&mut s, now, &to_server).unwrap();
    // The server answers, ends, and says so: a close record (kind 2, no data).
    let (mut to_client, _) = drain(&mut s);
    let close = &to_client[to_client.len() - (4 + 16)..];
    assert_eq!(close[..4], [2, 0, 0, 0], "the server's close record");
    to_client.extend_from_slice(&[1, 0, 0, 0]);
    assert_eq!(
        feed(&mut c, now, &to_client),
        Err(Error::Secure(SecureError::Integrity(
            "bytes after the peer's close record"
        )))
    );
}

#[test]
fn a_record_larger_than_the_wrapped_machines_room_is_handed_over_as_it_makes_room() {
    let now = Instant::now();
    // The server's echo session holds one small frame at a time, and stops
    // taking input while two replies wait to be sent...
    let small = SessionLimits {
        max_frame: 1024,
        recv_buffer: 1024 + 5,
        send_buffer: 1000,
        ..SessionLimits::default()
    };
    let cfg = EchoConfig {
        max_message: 1000,
        ..EchoConfig::default()
    };
    let inner = echo::Server::new(ServerRole::new("hi", cfg), small, now);
    let mut s = Secure::server(inner, CODE, SecureConfig::default(), now, [2; 32]);
    // ...and the client's four messages come in one record of 3.6 KB: the
    // rest of it waits in the channel until the server's replies went out.
    let mut inner = echo::Client::new(
        ClientRole::new(EchoConfig::default()),
        SessionLimits::default(),
        now,
    );
    for byte in 0..4u8 {
        inner.send(vec![byte; 900]).unwrap();
    }
    inner.close().unwrap();
    let mut c = Secure::client(inner, CODE, SecureConfig::default(), now, [1; 32]);
    let (c_end, s_end) = run(&mut c, &mut s, now);
    assert_eq!(c_end, Some(Ok(())), "every message echoed");
    assert_eq!(s_end, Some(Ok(())));
}
