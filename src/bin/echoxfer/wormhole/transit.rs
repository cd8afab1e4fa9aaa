//! Transit for the CLI: this side's listening socket and hints, and the
//! threads of the race between candidate connections (the peer's direct
//! hints, the connections it makes to us, and the relays a moment later),
//! which the library's `Racer` decides. Each candidate is a `Transit`
//! machine with its own copy of the data app, on the blocking driver in a
//! thread of its own; the app's shared `Race` picks the first to check
//! out, and the others are stopped. A race that hands over (native
//! protocol next) returns the winner's connection.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echoxfer::driver::blocking::{run_stream_until, Transport};
use echoxfer::driver::{Abort, App, DriverError};
use echoxfer::files::wormhole::Race;
use echoxfer::wormhole::transit::hints::{DirectHint, Hint, RelayEndpoint, RelayHint};
use echoxfer::wormhole::transit::racer::{
    CandidateId, RaceAction, RaceConfig, RaceVerdict, Racer, Way,
};
use echoxfer::wormhole::transit::{Role, Transit, TransitConfig, TransitHints};

use crate::args::WormholeArgs;
use crate::net::CmdResult;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the race looks whether a candidate claimed it (so nothing
/// more is tried).
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// This side's transit: where the peer may connect, and our relay.
#[derive(Debug)]
pub struct Local {
    listener: Option<TcpListener>,
    /// What to send the peer in the `transit` message.
    pub hints: TransitHints,
}

/// Listens (unless `--no-listen`) and makes this side's hints: one direct
/// hint per address given with `--hint-addr` (else per local address),
/// and the relay of `--transit-helper`.
pub fn local(args: &WormholeArgs) -> CmdResult<Local> {
    let mut hints = TransitHints::new();
    let listener = match args.no_listen {
        true => None,
        false => Some(TcpListener::bind(("0.0.0.0", 0))?),
    };
    if let Some(listener) = &listener {
        let port = listener.local_addr()?.port();
        for hostname in advertised_addresses(args) {
            hints.hints.push(Hint::Direct(DirectHint {
                hostname,
                port,
                priority: Some(0.0),
            }));
        }
    }
    let (host, port) = parse_tcp_hint(&args.transit_helper)?;
    let relay = DirectHint {
        hostname: host,
        port,
        priority: Some(0.0),
    };
    hints.hints.push(Hint::Relay(RelayHint {
        name: None,
        hints: vec![RelayEndpoint::Tcp(relay)],
    }));
    Ok(Local { listener, hints })
}

/// The addresses this side tells the peer to connect to.
fn advertised_addresses(args: &WormholeArgs) -> Vec<String> {
    if !args.hint_addr.is_empty() {
        return args.hint_addr.iter().map(|ip| ip.to_string()).collect();
    }
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    interfaces
        .into_iter()
        .filter(|i| !i.is_loopback() && i.ip().is_ipv4())
        .map(|i| i.ip().to_string())
        .collect()
}

/// `tcp:HOST:PORT` (Python's endpoint syntax for `--transit-helper`).
fn parse_tcp_hint(text: &str) -> CmdResult<(String, u16)> {
    let bad = || format!("--transit-helper {text:?} is not tcp:HOST:PORT");
    let rest = text.strip_prefix("tcp:").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// What the race's threads tell it.
enum Heard<A> {
    /// The peer connected to our listening port.
    Accepted(TcpStream),
    /// A candidate's connection could not be made.
    Unreachable(CandidateId, String),
    /// A candidate's session ended; `won`: it carried the transfer.
    Finished {
        id: CandidateId,
        won: bool,
        result: Result<(), DriverError>,
        app: A,
        stream: TcpStream,
    },
}

/// How the race's connections are used once `go` is said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Transit records, carried by the app.
    Records,
    /// Handed over (to the native protocol): the winner's connection is
    /// returned, open.
    HandOver,
}

/// Runs the race for `role` with `transit_key`, as a [`Racer`] decides
/// it: candidates to the peer's hints, those it makes to us, and every
/// relay (ours and the peer's). Returns the winner's app once its session
/// ended well, and its connection.
#[allow(clippy::too_many_arguments)]
pub fn race<A, F>(
    local: Local,
    peer: &TransitHints,
    (role, after): (Role, After),
    key: [u8; 32],
    race: Race,
    make_app: F,
    won: fn(&A) -> bool,
) -> CmdResult<(A, TcpStream)>
where
    A: App<Transit> + Send + 'static,
    F: Fn() -> A + Send + Sync + 'static,
{
    let now = Instant::now();
    let listening = local.listener.is_some();
    let mut racer = Racer::new(&local.hints, peer, listening, RaceConfig::default(), now);
    let (tx, rx) = mpsc::channel::<Heard<A>>();
    let accepting = Arc::new(AtomicBool::new(listening));
    if let Some(listener) = local.listener {
        let (tx, accepting) = (tx.clone(), accepting.clone());
        thread::spawn(move || accept_loop(listener, &tx, &accepting));
    }
    let runner = Runner {
        role,
        after,
        key,
        relay_side: relay_side()?,
        make_app: Arc::new(make_app),
        won,
        tx,
    };
    let mut aborts: HashMap<CandidateId, Abort> = HashMap::new();
    let mut winner = None;
    let verdict = loop {
        while let Some(action) = racer.poll_action() {
            match action {
                RaceAction::Connect(id, way) => {
                    runner.connect(id, way, aborts.entry(id).or_default().clone())
                }
                RaceAction::Stop(id) => {
                    if let Some(abort) = aborts.get(&id) {
                        abort.request("another transit connection won");
                    }
                }
            }
        }
        if let Some(verdict) = racer.verdict() {
            break verdict.clone();
        }
        let heard = match racer.poll_timeout() {
            // Claimed: only the claimant's end (or another report) is
            // awaited, however long the transfer takes.
            None if race.is_won() => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            until => rx.recv_timeout(
                until
                    .map_or(CHECK_EVERY, |t| t.saturating_duration_since(Instant::now()))
                    .min(CHECK_EVERY),
            ),
        };
        match heard {
            Ok(Heard::Accepted(stream)) => {
                if let Some(id) = racer.accepted() {
                    let abort = aborts.entry(id).or_default().clone();
                    runner.run_in_thread(id, stream, false, abort);
                }
            }
            Ok(Heard::Unreachable(id, why)) => racer.finished(id, false, Err(why)),
            Ok(Heard::Finished {
                id,
                won,
                result,
                app,
                stream,
            }) => {
                racer.finished(id, won, result.as_ref().map_err(|e| e.to_string()).copied());
                if won {
                    winner = Some((result, app, stream));
                }
            }
            Err(_) => {}
        }
        if race.is_won() {
            racer.claimed();
            accepting.store(false, Ordering::Relaxed);
        }
        racer.handle_timeout(Instant::now());
    };
    accepting.store(false, Ordering::Relaxed);
    match (verdict, winner) {
        (RaceVerdict::Won(_), Some((Ok(()), app, stream))) => Ok((app, stream)),
        (_, Some((Err(e), _, _))) => Err(e.into()),
        (RaceVerdict::Failed(why), _) => Err(format!(
            "no transit connection to the other side: {why}; check that one side can reach the other, \
             or that both reach the transit relay (--transit-helper)"
        )
        .into()),
        (RaceVerdict::Won(_), _) => Err("internal error: a winner without its session".into()),
    }
}

/// Takes the peer's connections to our port while `accepting`, for the
/// race to run (or drop).
fn accept_loop<A>(listener: TcpListener, tx: &mpsc::Sender<Heard<A>>, accepting: &AtomicBool) {
    let deadline = Instant::now() + RaceConfig::default().timeout;
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while accepting.load(Ordering::Relaxed) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) if stream.set_nonblocking(false).is_ok() => {
                if tx.send(Heard::Accepted(stream)).is_err() {
                    return;
                }
            }
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// This side's name at the relay: 8 random bytes in hex, as Python
/// makes it (the relay pairs connections of different sides only).
fn relay_side() -> CmdResult<String> {
    let seed = echoxfer::secure::os_seed()?;
    Ok(seed[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// What runs one candidate: connects (or takes an accepted connection)
/// and runs its transit machine and app, in a thread of its own.
struct Runner<A> {
    role: Role,
    after: After,
    key: [u8; 32],
    relay_side: String,
    make_app: Arc<dyn Fn() -> A + Send + Sync>,
    won: fn(&A) -> bool,
    tx: mpsc::Sender<Heard<A>>,
}

impl<A: App<Transit> + Send + 'static> Runner<A> {
    fn connect(&self, id: CandidateId, way: Way, abort: Abort) {
        let me = self.clone();
        thread::spawn(move || {
            let (host, port, relay) = match &way {
                Way::Direct { host, port } => (host, *port, false),
                Way::Relay { host, port } => (host, *port, true),
            };
            match connect(host, port) {
                Ok(stream) => me.run(id, stream, relay, &abort),
                Err(why) => {
                    let _ = me.tx.send(Heard::Unreachable(id, why));
                }
            }
        });
    }

    fn run_in_thread(&self, id: CandidateId, stream: TcpStream, relay: bool, abort: Abort) {
        let me = self.clone();
        thread::spawn(move || me.run(id, stream, relay, &abort));
    }

    fn run(&self, id: CandidateId, mut stream: TcpStream, relay: bool, abort: &Abort) {
        let _ = stream.set_nodelay(true);
        let mut config = TransitConfig::new(self.role, &self.key);
        if relay {
            config = config.via_relay(self.relay_side.clone());
        }
        if self.after == After::HandOver {
            config = config.handing_over();
        }
        let mut transit = Transit::new(config, Instant::now());
        let mut app = (self.make_app)();
        let result = match self.after {
            After::Records => run_stream_until(&mut transit, &mut stream, &mut app, abort),
            After::HandOver => {
                run_stream_until(&mut transit, &mut KeepOpen(&mut stream), &mut app, abort)
            }
        };
        let won = (self.won)(&app);
        let _ = self.tx.send(Heard::Finished {
            id,
            won,
            result,
            app,
            stream,
        });
    }
}

impl<A> Clone for Runner<A> {
    fn clone(&self) -> Self {
        Runner {
            role: self.role,
            after: self.after,
            key: self.key,
            relay_side: self.relay_side.clone(),
            make_app: self.make_app.clone(),
            won: self.won,
            tx: self.tx.clone(),
        }
    }
}

/// A connection the transit session must leave open at its end: the
/// next protocol goes on over it.
struct KeepOpen<'a>(&'a mut TcpStream);

impl Read for KeepOpen<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for KeepOpen<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Transport for KeepOpen<'_> {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_read_timeout(timeout)
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_write_timeout(timeout)
    }

    // `shutdown_write` keeps the default (a flush): no FIN here.
}

/// A connection to `host:port` (its first address that answers within
/// [`CONNECT_TIMEOUT`]), or why not.
fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .collect();
    let mut why = format!("{host}:{port} has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => why = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(why)
}
