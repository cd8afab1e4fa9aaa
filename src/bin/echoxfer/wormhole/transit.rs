//! Transit for the CLI: this side's listening socket and hints, and the
//! race between candidate connections (the peer's direct hints, the
//! connections it makes to us, and the relays a moment later). Each
//! candidate is a `Transit` machine with its own copy of the data app, on
//! the blocking driver in a thread of its own; the app's shared `Race`
//! picks the first to connect, and the others are stopped. A race that
//! hands over (native protocol next) returns the winner's connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echoxfer::driver::blocking::{run_stream_until, Transport};
use echoxfer::driver::{Abort, App, DriverError};
use echoxfer::files::wormhole::Race;
use echoxfer::wormhole::transit::hints::{DirectHint, Hint, RelayEndpoint, RelayHint};
use echoxfer::wormhole::transit::{Role, Transit, TransitConfig, TransitHints};

use crate::args::WormholeArgs;
use crate::net::CmdResult;

/// How long relays wait when direct hints exist, as Python's client does.
const RELAY_DELAY: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long candidates may take to produce a winner.
const RACE_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Where one candidate connects (or that it was accepted).
#[derive(Debug, Clone)]
enum Way {
    Direct(String, u16),
    Relay(String, u16),
}

/// What a candidate's thread reports when its session ends.
struct Report<A> {
    won: bool,
    result: Result<(), DriverError>,
    app: A,
    stream: TcpStream,
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

/// Runs the race for `role` with `transit_key`: candidates to the peer's
/// hints, those it makes to us, and every relay (ours and the peer's).
/// Returns the winner's app once its session ended well, and its
/// connection.
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
    let make_app = Arc::new(make_app);
    let aborts: Arc<Mutex<Vec<Abort>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<Report<A>>();
    let relay_side = relay_side()?;
    let mut ways: Vec<Way> = peer
        .direct()
        .map(|d| Way::Direct(d.hostname.clone(), d.port))
        .collect();
    let delay = if ways.is_empty() {
        Duration::ZERO
    } else {
        RELAY_DELAY
    };
    for relay in local.hints.relays().chain(peer.relays()) {
        for endpoint in &relay.hints {
            if let RelayEndpoint::Tcp(d) = endpoint {
                ways.push(Way::Relay(d.hostname.clone(), d.port));
            }
        }
    }
    ways.dedup_by(|a, b| format!("{a:?}") == format!("{b:?}"));
    let candidate = Candidate {
        role,
        after,
        key,
        relay_side,
        race: race.clone(),
        aborts: aborts.clone(),
        won,
    };
    for way in ways {
        let (c, tx, make_app) = (candidate.clone(), tx.clone(), make_app.clone());
        let wait = if matches!(way, Way::Relay(..)) {
            delay
        } else {
            Duration::ZERO
        };
        thread::spawn(move || c.connect_and_run(way, wait, &*make_app, &tx));
    }
    if let Some(listener) = local.listener {
        let (c, tx, make_app) = (candidate.clone(), tx.clone(), make_app.clone());
        thread::spawn(move || c.accept_and_run(listener, &*make_app, &tx));
    }
    drop(tx);
    let outcome = wait_for_winner(&rx, &race);
    for abort in aborts.lock().map(|a| a.clone()).unwrap_or_default() {
        abort.request("another transit connection won");
    }
    outcome
}

fn wait_for_winner<A>(rx: &mpsc::Receiver<Report<A>>, race: &Race) -> CmdResult<(A, TcpStream)> {
    let deadline = Instant::now() + RACE_TIMEOUT;
    let mut last_error = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = match race.is_won() {
            true => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            false => rx.recv_timeout(left),
        };
        match report {
            Ok(Report {
                won: true,
                result,
                app,
                stream,
            }) => return result.map(|()| (app, stream)).map_err(Into::into),
            Ok(Report { result: Err(e), .. }) => last_error = Some(e.to_string()),
            Ok(_) => {}
            Err(_) => {
                let why = last_error.unwrap_or_else(|| "no connection got through".into());
                return Err(format!(
                    "no transit connection to the other side: {why}; check that one side can reach the other, \
                     or that both reach the transit relay (--transit-helper)"
                )
                .into());
            }
        }
    }
}

/// This side's name at the relay: 8 random bytes in hex, as Python
/// makes it (the relay pairs connections of different sides only).
fn relay_side() -> CmdResult<String> {
    let seed = echoxfer::secure::os_seed()?;
    Ok(seed[..8].iter().map(|b| format!("{b:02x}")).collect())
}

struct Candidate<A> {
    role: Role,
    after: After,
    key: [u8; 32],
    relay_side: String,
    race: Race,
    aborts: Arc<Mutex<Vec<Abort>>>,
    won: fn(&A) -> bool,
}

impl<A> Clone for Candidate<A> {
    fn clone(&self) -> Self {
        Candidate {
            role: self.role,
            after: self.after,
            key: self.key,
            relay_side: self.relay_side.clone(),
            race: self.race.clone(),
            aborts: self.aborts.clone(),
            won: self.won,
        }
    }
}

impl<A: App<Transit> + Send + 'static> Candidate<A> {
    fn connect_and_run(
        self,
        way: Way,
        wait: Duration,
        make_app: &dyn Fn() -> A,
        tx: &mpsc::Sender<Report<A>>,
    ) {
        thread::sleep(wait);
        if self.race.is_won() {
            return;
        }
        let (host, port, relay) = match &way {
            Way::Direct(h, p) => (h, *p, false),
            Way::Relay(h, p) => (h, *p, true),
        };
        let Some(stream) = connect(host, port) else {
            return;
        };
        self.run(stream, relay, make_app, tx);
    }

    fn accept_and_run(
        self,
        listener: TcpListener,
        make_app: &(dyn Fn() -> A + Send + Sync),
        tx: &mpsc::Sender<Report<A>>,
    ) {
        let deadline = Instant::now() + RACE_TIMEOUT;
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        thread::scope(|scope| {
            while !self.race.is_won() && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) if stream.set_nonblocking(false).is_ok() => {
                        let c = self.clone();
                        scope.spawn(move || c.run(stream, false, make_app, tx));
                    }
                    _ => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }

    fn run(
        self,
        mut stream: TcpStream,
        relay: bool,
        make_app: &dyn Fn() -> A,
        tx: &mpsc::Sender<Report<A>>,
    ) {
        let _ = stream.set_nodelay(true);
        let mut config = TransitConfig::new(self.role, &self.key);
        if relay {
            config = config.via_relay(self.relay_side.clone());
        }
        if self.after == After::HandOver {
            config = config.handing_over();
        }
        let mut transit = Transit::new(config, Instant::now());
        let mut app = make_app();
        let abort = Abort::new();
        if let Ok(mut aborts) = self.aborts.lock() {
            aborts.push(abort.clone());
        }
        let result = match self.after {
            After::Records => run_stream_until(&mut transit, &mut stream, &mut app, &abort),
            After::HandOver => {
                run_stream_until(&mut transit, &mut KeepOpen(&mut stream), &mut app, &abort)
            }
        };
        let won = (self.won)(&app);
        let _ = tx.send(Report {
            won,
            result,
            app,
            stream,
        });
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

fn connect(host: &str, port: u16) -> Option<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find_map(|addr| TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).ok())
}
