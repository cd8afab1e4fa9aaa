//! What the accept loops of both drivers share: a listener with a known
//! backlog, the connection caps (in total and per source address), and how
//! accept failures are waited out and logged (the caps are applied by the
//! server core in `driver/server.rs`). The policies here are plain
//! values fed the time, so they are unit-tested without sockets.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::error::ConfigError;
use crate::session::RecvBudget;

/// Connections the kernel completes and queues for a listener before the
/// server accepts them (default 1024, as tokio's own default). `std` uses
/// 128, which loses clients in a burst: a client that finds the queue full
/// has its handshake dropped and retries after a second or more. The kernel
/// caps it at `net.core.somaxconn` (4096 on Linux since 5.4).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Binds a TCP listener on `addr` with `backlog` pending connections
/// (see [`DEFAULT_BACKLOG`]). Like `std`'s bind, it sets `SO_REUSEADDR` on
/// Unix, so a restarted server need not wait for old connections to clear.
/// A zero backlog is refused. Errors name the address.
///
/// ```
/// use echoxfer::driver::listen::{bind, DEFAULT_BACKLOG};
/// let listener = bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap();
/// assert!(listener.local_addr().unwrap().port() != 0);
/// ```
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let named = |e: io::Error| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => {
                " (another program listens there: pick another port, or port 0 for any free one)"
            }
            _ => "",
        };
        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}{hint}"))
    };
    if backlog == 0 {
        return Err(named(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the listen backlog must not be zero",
        )));
    }
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(named)?;
    #[cfg(unix)]
    socket.set_reuse_address(true).map_err(named)?;
    socket.bind(&addr.into()).map_err(named)?;
    // The kernel silently lowers a backlog above `somaxconn`.
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(named)?;
    Ok(socket.into())
}

/// A server's own settings: how many sessions it runs at once, in total
/// and per source, and the receive budget they share. Taken by the
/// drivers' `serve`; its sessions take
/// [`SessionLimits`](crate::config::SessionLimits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions at once; more connections wait in the backlog (default 1024).
    pub max_connections: usize,
    /// Sessions at once from one source address (an IPv4 address, or an
    /// IPv6 /64 prefix: one host usually holds a whole /64). A connection
    /// from a source at its cap is closed at once, without a byte
    /// (default 64). Far more than one honest host needs (a `send` is one
    /// connection), and small enough that one address holds at most a
    /// sixteenth of the default `max_connections`. Raise it for many
    /// clients behind one NAT; above `max_connections` it has no effect.
    pub max_per_source: usize,
    /// The shared receive budget: bytes all the server's sessions together
    /// may hold undecoded beyond their
    /// [`recv_allowance`](crate::config::SessionLimits::recv_allowance)
    /// (default 64 MiB). A session that needs more while it is spent fails
    /// as busy. Make it with [`Limits::new_recv_budget`] and hand it to each
    /// session with
    /// [`Framed::with_recv_budget`](crate::session::Framed::with_recv_budget).
    pub recv_budget: usize,
    /// How long a source is refused after its first failed guess: a
    /// session that failed after the peer's whole secure hello and before
    /// its key confirmation checked out (a wrong code, or a peer that left,
    /// reset or stalled after its hello; see
    /// [`Handshake::Unconfirmed`](crate::secure::Handshake::Unconfirmed)).
    /// A connection that sent no whole hello (a scanner, a health check)
    /// is no guess. Each further failure doubles it, up to
    /// [`max_guess_delay`](Self::max_guess_delay) (default 1 s). While
    /// refused, the source's connections get a refusal notice (saying for
    /// how long; docs/PROTOCOL.md, section 6) and are closed at once, and
    /// counted as refused; other sources are served as usual.
    pub guess_delay: Duration,
    /// The longest a source is refused after failed guesses (default 5 min).
    /// At least [`guess_delay`](Self::guess_delay).
    pub max_guess_delay: Duration,
    /// How long after its refusal ends a source's failures are remembered
    /// (default 10 min): one that fails again within it is refused twice as
    /// long as before; after it, the source starts over at `guess_delay`.
    pub forget_guesses_after: Duration,
    /// The most sources whose failed guesses are remembered at once
    /// (default 4096; about 100 bytes each). When full, the source whose
    /// refusal ends first is forgotten to make room.
    pub max_guessing_sources: usize,
    /// Whether a connection from a source at its cap gets a refusal notice
    /// (reason [`RefusalReason::SourceCap`](crate::error::RefusalReason::SourceCap);
    /// docs/PROTOCOL.md, section 6) before it is closed, so that a secure
    /// client can say why (default false: closed without a byte, as a
    /// server of a protocol without notices, RFC 862 say, must).
    pub notify_at_cap: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_per_source: 64,
            recv_budget: 64 * 1024 * 1024,
            guess_delay: Duration::from_secs(1),
            max_guess_delay: Duration::from_secs(300),
            forget_guesses_after: Duration::from_secs(600),
            max_guessing_sources: 4096,
            notify_at_cap: false,
        }
    }
}

impl Limits {
    /// Checks that no limit is zero and that the guess delays are in order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("max_connections", self.max_connections),
            ("max_per_source", self.max_per_source),
            ("recv_budget", self.recv_budget),
            ("max_guessing_sources", self.max_guessing_sources),
        ];
        if let Some((field, _)) = nonzero.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero(field));
        }
        let durations = [
            ("guess_delay", self.guess_delay),
            ("max_guess_delay", self.max_guess_delay),
            ("forget_guesses_after", self.forget_guesses_after),
        ];
        if let Some((field, _)) = durations.iter().find(|(_, value)| value.is_zero()) {
            return Err(ConfigError::Zero(field));
        }
        if self.max_guess_delay < self.guess_delay {
            return Err(ConfigError::Inconsistent {
                field: "max_guess_delay",
                rule: "must be at least guess_delay",
            });
        }
        Ok(())
    }

    /// `self` if valid, else an `InvalidInput` error naming the field: what
    /// the drivers' `serve` checks before it accepts anything.
    pub(crate) fn checked(self) -> io::Result<Limits> {
        self.validate().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("server limits: {e}"))
        })?;
        Ok(self)
    }

    /// A fresh receive budget of `recv_budget` bytes, to share among this
    /// server's sessions.
    pub fn new_recv_budget(&self) -> RecvBudget {
        RecvBudget::new(self.recv_budget)
    }
}

/// A bare number caps the total only: one source may take all of it.
impl From<usize> for Limits {
    fn from(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            max_per_source: max_connections,
            ..Limits::default()
        }
    }
}

/// Closes a connection the server refused (see `ServeCore::accepted`),
/// after sending it `notice` (empty: nothing), without a reset: what the
/// client already sent (its hello, usually) is read and dropped first, for
/// a socket closed with unread input sends a reset, which may reach the
/// client before the notice does (or make it say the network cut the
/// connection). Never blocks: the socket is made non-blocking, and only
/// what has arrived by now is read (at most 64 KiB); a hello that arrives
/// later meets a closed socket, and its reset follows the notice and the
/// end of stream, which the client reads first.
pub(crate) fn close_refused(socket: socket2::SockRef<'_>, notice: &[u8]) {
    use std::io::{Read, Write};
    fn drain(mut socket: &socket2::Socket) {
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            match socket.read(&mut buf) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
    }
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    drain(&socket);
    if !notice.is_empty() {
        // A few bytes into an empty send buffer: taken whole, or the
        // connection is gone already.
        let _ = (&*socket).write(notice);
    }
    let _ = socket.shutdown(std::net::Shutdown::Write);
    drain(&socket);
}

/// The source a connection is counted against: the IPv4 address (also when
/// mapped into IPv6), or the IPv6 /64 prefix.
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Connections refused because their source was at its cap: counted, and
/// logged at most once per [`Refusals::LOG_EVERY`] with the count since.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    pub(crate) total: u64,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    /// The least time between two log lines about refusals.
    const LOG_EVERY: Duration = Duration::from_secs(10);

    /// Counts one refusal; returns how many to report if a line is due now.
    pub(crate) fn refused(&mut self, now: Instant) -> Option<u64> {
        self.total += 1;
        self.unlogged += 1;
        let due = self
            .last_log
            .is_none_or(|last| now.saturating_duration_since(last) >= Self::LOG_EVERY);
        if !due {
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// Counts and (rate-limited) logs one refused connection.
    pub(crate) fn refuse(&mut self, now: Instant, peer: SocketAddr, cap: usize) {
        if let Some(count) = self.refused(now) {
            tracing::warn!(
                %peer,
                count,
                cap,
                "closed connections from a source already running its cap of sessions \
                 (raise --max-per-source if these are honest clients behind one address)"
            );
        }
    }
}

/// How an accept loop waits out failing accepts (`EMFILE`: out of file
/// descriptors, `ENOBUFS`, ...): a pause that doubles from
/// [`FIRST`](Self::FIRST) to [`MAX`](Self::MAX) while accepts keep failing,
/// and starts over after one succeeds. A run of failures is an episode,
/// logged when it starts and when it ends, not per failure.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    failures: u32,
    since: Option<Instant>,
}

/// A run of failed accepts that has just ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Episode {
    pub(crate) failures: u32,
    pub(crate) lasted: Duration,
}

impl AcceptBackoff {
    /// The pause after the first failure of an episode.
    pub(crate) const FIRST: Duration = Duration::from_millis(10);
    /// The longest pause: a freed descriptor is used within this.
    pub(crate) const MAX: Duration = Duration::from_secs(1);

    /// Notes one failure at `now`; returns the pause before the next accept.
    pub(crate) fn failed(&mut self, now: Instant) -> Duration {
        self.since.get_or_insert(now);
        let doublings = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        Self::FIRST.saturating_mul(1 << doublings).min(Self::MAX)
    }

    /// Notes a successful accept; returns the episode it ended, if any.
    pub(crate) fn succeeded(&mut self, now: Instant) -> Option<Episode> {
        let since = self.since.take()?;
        let failures = std::mem::take(&mut self.failures);
        Some(Episode {
            failures,
            lasted: now.saturating_duration_since(since),
        })
    }

    /// Notes a failed accept and logs it if it starts an episode; returns
    /// the pause before the next accept (none for a failure that concerns
    /// only the connection being accepted).
    pub(crate) fn after_error(&mut self, now: Instant, error: &io::Error) -> Option<Duration> {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
        ) {
            // The client gave up before we took it: nothing is wrong here.
            tracing::debug!(%error, "a connection was gone before it was accepted");
            return None;
        }
        let starts_episode = self.since.is_none();
        let pause = self.failed(now);
        if starts_episode {
            tracing::warn!(
                %error,
                "accept failed; retrying with a growing pause (up to {:?}) until it works \
                 (out of file descriptors? raise `ulimit -n` or lower --max-connections)",
                Self::MAX
            );
        }
        Some(pause)
    }

    /// Notes a successful accept, logging the end of an episode.
    pub(crate) fn after_success(&mut self, now: Instant) {
        if let Some(episode) = self.succeeded(now) {
            tracing::warn!(
                failures = episode.failures,
                "accepting again after {} failed accepts over {:.1} s",
                episode.failures,
                episode.lasted.as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn accept_backoff_doubles_from_ten_ms_to_at_most_one_second_and_resets_on_success() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::default();
        let pauses: Vec<_> = (0..12).map(|_| b.failed(t0)).collect();
        let expected = [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000, 1000, 1000];
        assert_eq!(pauses, expected.map(|ms| ms * MS));
        let episode = b.succeeded(t0 + 5 * MS * 1000).unwrap();
        assert_eq!(
            episode,
            Episode {
                failures: 12,
                lasted: Duration::from_secs(5)
            }
        );
        assert_eq!(b.succeeded(t0), None, "one episode is reported once");
        assert_eq!(
            b.failed(t0),
            AcceptBackoff::FIRST,
            "a new episode starts over"
        );
    }

    #[test]
    fn accept_backoff_never_overflows_however_long_accepts_fail() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff {
            failures: u32::MAX - 1,
            since: Some(t0),
        };
        assert_eq!(b.failed(t0), AcceptBackoff::MAX);
        assert_eq!(b.failed(t0), AcceptBackoff::MAX);
    }

    #[test]
    fn refusals_are_all_counted_but_logged_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut r = Refusals::default();
        assert_eq!(
            r.refused(t0),
            Some(1),
            "the first refusal is logged at once"
        );
        for i in 1..1000 {
            assert_eq!(r.refused(t0 + i * MS), None);
        }
        assert_eq!(r.refused(t0 + Refusals::LOG_EVERY), Some(1000));
        assert_eq!(r.total, 1001);
    }

    #[test]
    fn one_ipv6_host_is_one_source_and_mapped_ipv4_is_its_ipv4_address() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::7".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(one), source_of(same_64));
        assert_ne!(source_of(one), source_of(other_64));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_of(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bind_refuses_a_zero_backlog_and_names_the_address() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let err = bind(addr, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("127.0.0.1:0"), "{err}");
    }

    #[test]
    fn bind_names_the_address_that_is_in_use() {
        let taken = bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG).unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr, DEFAULT_BACKLOG).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn default_limits_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn a_zero_per_source_cap_is_refused() {
        let limits = Limits {
            max_per_source: 0,
            ..Limits::default()
        };
        assert_eq!(limits.validate(), Err(ConfigError::Zero("max_per_source")));
    }

    #[test]
    fn server_limits_refuse_each_zero_field_by_name() {
        let cases = vec![
            (
                "max_connections",
                Limits {
                    max_connections: 0,
                    ..Limits::default()
                },
            ),
            (
                "max_per_source",
                Limits {
                    max_per_source: 0,
                    ..Limits::default()
                },
            ),
            (
                "recv_budget",
                Limits {
                    recv_budget: 0,
                    ..Limits::default()
                },
            ),
            (
                "guess_delay",
                Limits {
                    guess_delay: Duration::ZERO,
                    ..Limits::default()
                },
            ),
            (
                "max_guess_delay",
                Limits {
                    max_guess_delay: Duration::ZERO,
                    ..Limits::default()
                },
            ),
            (
                "forget_guesses_after",
                Limits {
                    forget_guesses_after: Duration::ZERO,
                    ..Limits::default()
                },
            ),
            (
                "max_guessing_sources",
                Limits {
                    max_guessing_sources: 0,
                    ..Limits::default()
                },
            ),
        ];
        for (field, limits) in cases {
            assert_eq!(limits.validate(), Err(ConfigError::Zero(field)), "{field}");
        }
    }

    #[test]
    fn a_guess_delay_cap_below_the_first_delay_is_refused() {
        let limits = Limits {
            guess_delay: Duration::from_secs(10),
            max_guess_delay: Duration::from_secs(5),
            ..Limits::default()
        };
        assert_eq!(limits.validate().unwrap_err().field(), "max_guess_delay");
    }
}
