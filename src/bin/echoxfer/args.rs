//! The command-line grammar (clap derive). Defaults bind or connect to
//! 127.0.0.1 on the classic ports: 8888 for echo and UDP, 9999 for files.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Sans-IO echo and file transfer, over TCP, UDP or any pipe.
#[derive(Debug, Parser)]
#[command(name = "echoxfer", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a self-checking session over loopback on built-in defaults.
    Demo(DemoArgs),
    /// Echo over TCP.
    #[command(subcommand)]
    Echo(EchoCommand),
    /// Echo over UDP (RFC 862).
    #[command(subcommand)]
    Udp(UdpCommand),
}

/// Which driver runs the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// `std::net`, a thread per connection.
    Blocking,
    /// tokio, a task per connection.
    Tokio,
}

/// Which echo protocol a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EchoMode {
    /// Framed messages with a greeting and an exit command.
    Native,
    /// RFC 862: raw bytes back, no greeting, no framing (for nc, socat).
    Rfc862,
}

/// `echoxfer echo ...`
#[derive(Debug, Subcommand)]
pub enum EchoCommand {
    /// Serve echo sessions, many clients at once.
    Serve(EchoServeArgs),
    /// Send stdin lines to an echo server and print the replies (a line
    /// `exit`, or the end of stdin, ends the session).
    Connect(EchoConnectArgs),
}

/// `echoxfer echo serve`
#[derive(Debug, Args)]
pub struct EchoServeArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub addr: SocketAddr,
    /// Protocol to speak.
    #[arg(long, value_enum, default_value_t = EchoMode::Native)]
    pub mode: EchoMode,
    /// Driver to run sessions on.
    #[arg(long, value_enum, default_value_t = Runtime::Blocking)]
    pub runtime: Runtime,
    /// Greeting sent to each native client.
    #[arg(long, default_value = echoxfer::echo::DEFAULT_GREETING)]
    pub greeting: String,
    /// Most sessions served at once; more wait in the backlog.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
}

/// `echoxfer echo connect`
#[derive(Debug, Args)]
pub struct EchoConnectArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub addr: SocketAddr,
}

/// `echoxfer udp ...`
#[derive(Debug, Subcommand)]
pub enum UdpCommand {
    /// Echo every datagram back to its sender.
    Serve(UdpServeArgs),
    /// Send probes to a UDP echo server and report loss and round-trip times.
    Ping(UdpPingArgs),
}

/// `echoxfer udp serve`
#[derive(Debug, Args)]
pub struct UdpServeArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub addr: SocketAddr,
}

/// `echoxfer udp ping`
#[derive(Debug, Args)]
pub struct UdpPingArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub addr: SocketAddr,
    /// Probes to send.
    #[arg(long, default_value_t = 10)]
    pub count: u32,
    /// How long each attempt waits for its reply (e.g. `500ms`, `2s`).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Retries of a probe before it counts as lost.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Bytes per probe (at least 12).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

/// `echoxfer demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Echo messages to exchange.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
}

/// Parses `250ms`, `2s`, `1m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = num.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?} (use ms, s or m)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}
