//! The command-line grammar (clap derive). Defaults bind or connect to
//! 127.0.0.1 on the classic ports: 8888 for echo and UDP, 9999 for files.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::addr::HostPort;

/// Where `send --legacy` (and `--stdio`, which ignores it) connects
/// without `--to`.
pub const DEFAULT_TO: &str = "127.0.0.1:9999";

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
    /// Echo over UDP (RFC 862), or legacy datagrams.
    #[command(subcommand)]
    Udp(UdpCommand),
    /// Send files to a receiver (verified, resumable; `--legacy`: the seed protocol).
    Send(SendArgs),
    /// Receive files into a directory (verified, resumable; `--legacy`: the seed protocol).
    Receive(ReceiveArgs),
    /// Make a high-entropy secret for `--secret-file` (32 random bytes as hex).
    Secret(SecretArgs),
    /// Print a shell completion script to stdout (e.g.
    /// `echoxfer completions bash > ~/.local/share/bash-completion/completions/echoxfer`).
    Completions(CompletionsArgs),
}

/// `echoxfer completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// How a native session is authenticated (see SECURITY.md): a short code,
/// a secret file, or nothing (`--insecure`).
#[derive(Debug, Clone, Args)]
pub struct SecureArgs {
    /// The code that authenticates both sides (`receive --once` prints a
    /// fresh one when none is given): every byte is encrypted, and a wrong
    /// code is refused by both sides. Other users can see a code given
    /// here (ps, /proc) and it stays in shell history: prefer the
    /// ECHOXFER_CODE environment variable, or type it when asked (a client
    /// on a terminal asks). A server that runs until stopped needs a code
    /// at least as strong as a printed one, or --secret-file.
    #[arg(long, conflicts_with_all = ["secret_file", "insecure"])]
    pub code: Option<String>,
    /// Authenticate with the secret in FILE instead of a code (readable by
    /// its owner only, at least 16 bytes; make one with `echoxfer secret FILE`).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub secret_file: Option<PathBuf>,
    /// Plaintext: no code, no encryption; anyone on the path can read and
    /// alter the session, and anyone who reaches a server can use it.
    #[arg(long)]
    pub insecure: bool,
}

/// `echoxfer secret`
#[derive(Debug, Args)]
pub struct SecretArgs {
    /// File to create, readable by its owner only (never replaced); without
    /// it, the secret is printed.
    pub file: Option<PathBuf>,
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
    /// Address to listen on, HOST:PORT (a name listens on the first address it
    /// resolves to that binds; port 0 picks a free port; the real one is printed).
    #[arg(long = "listen", alias = "addr", default_value = "127.0.0.1:8888", value_parser = HostPort::parse)]
    pub addr: HostPort,
    /// Protocol to speak.
    #[arg(long, value_enum, default_value_t = EchoMode::Native)]
    pub mode: EchoMode,
    /// Driver to run sessions on.
    #[arg(long, value_enum, default_value_t = Runtime::Blocking)]
    pub runtime: Runtime,
    /// Greeting sent to each client (default: the native greeting, or the
    /// `--preset` one with `--legacy`).
    #[arg(long)]
    pub greeting: Option<String>,
    /// Most sessions served at once; more wait in the backlog.
    #[arg(long, default_value_t = echoxfer::driver::Limits::default().max_connections)]
    pub max_connections: usize,
    /// Most sessions served at once from one address (an IPv6 /64 counts as
    /// one); more from it are closed at once.
    #[arg(long, default_value_t = echoxfer::driver::Limits::default().max_per_source)]
    pub max_per_source: usize,
    /// Speak the legacy seed echo protocol (no framing; a read that is
    /// exactly `exit` ends the session). Each read is printed.
    #[arg(long, conflicts_with_all = ["mode", "code", "secret_file", "insecure"])]
    pub legacy: bool,
    /// A secret file, a code at least as strong as a printed one (it runs
    /// until stopped), or `--insecure` (native mode only).
    #[command(flatten)]
    pub auth: SecureArgs,
    /// Legacy greeting preset: that of the blocking seed server or of the threaded one.
    #[arg(long, value_enum, requires = "legacy", conflicts_with = "greeting")]
    pub preset: Option<Preset>,
    /// One client at a time, like the blocking seed server (`--max-connections 1`).
    #[arg(long, conflicts_with = "max_connections")]
    pub single: bool,
}

/// The greetings of the two seed echo servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The blocking, one-client-at-a-time seed server's greeting.
    Blocking,
    /// The threaded seed server's greeting (the default with `--legacy`).
    Threaded,
}

/// `echoxfer echo connect`
#[derive(Debug, Args)]
pub struct EchoConnectArgs {
    /// Server address, HOST:PORT (each address a name resolves to is tried in turn).
    #[arg(long = "to", alias = "addr", default_value = "127.0.0.1:8888", value_parser = HostPort::parse)]
    pub addr: HostPort,
    /// Speak the legacy seed echo protocol (no framing, no integrity check).
    #[arg(long, conflicts_with_all = ["code", "secret_file", "insecure"])]
    pub legacy: bool,
    /// The server's code, its secret file, or `--insecure`.
    #[command(flatten)]
    pub auth: SecureArgs,
}

/// `echoxfer udp ...`
#[derive(Debug, Subcommand)]
pub enum UdpCommand {
    /// Echo every datagram back to its sender (never to a service port; at
    /// most 50 replies at once, then 100 a second, per source address).
    Serve(UdpServeArgs),
    /// Send probes to a UDP echo server and report loss and round-trip times.
    Ping(UdpPingArgs),
    /// Send each stdin line as one datagram (legacy wire: no reply expected).
    Send(UdpSendArgs),
}

/// `echoxfer udp serve`
#[derive(Debug, Args)]
pub struct UdpServeArgs {
    /// Address to listen on, HOST:PORT (a name listens on the first address it
    /// resolves to that binds; port 0 picks a free port; the real one is printed).
    #[arg(long = "listen", alias = "addr", default_value = "127.0.0.1:8888", value_parser = HostPort::parse)]
    pub addr: HostPort,
    /// Be the legacy seed sink: print each datagram, one per line, never reply.
    #[arg(long)]
    pub legacy: bool,
}

/// `echoxfer udp send`
#[derive(Debug, Args)]
pub struct UdpSendArgs {
    /// Server address, HOST:PORT (a name: the first address it resolves to).
    #[arg(long = "to", alias = "addr", default_value = "127.0.0.1:8888", value_parser = HostPort::parse)]
    pub addr: HostPort,
}

/// `echoxfer send`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Files and directories to send, in order: each under its own name,
    /// a directory with everything under it (symbolic links and special
    /// files are skipped, never followed).
    #[arg(required_unless_present = "text")]
    pub files: Vec<PathBuf>,
    /// Send this text through a magic-wormhole mailbox instead of files:
    /// a code is printed, and `echoxfer receive CODE` or any wormhole
    /// client (`wormhole receive CODE`) prints the text.
    #[arg(long, conflicts_with_all = ["files", "to", "stdio", "legacy", "dry_run", "code", "secret_file", "insecure"])]
    pub text: Option<String>,
    /// Where the wormhole meets (`--text`).
    #[command(flatten)]
    pub wormhole: WormholeArgs,
    /// Receiver address, HOST:PORT (each address a name resolves to is
    /// tried in turn). Without it (and without --stdio), the file goes
    /// through a magic-wormhole mailbox: a code is printed for
    /// `echoxfer receive CODE` or any wormhole client; --legacy defaults
    /// to 127.0.0.1:9999.
    #[arg(long, value_parser = HostPort::parse)]
    pub to: Option<HostPort>,
    /// Driver to run the session on.
    #[arg(long, value_enum, default_value_t = Runtime::Blocking)]
    pub runtime: Runtime,
    /// Speak the protocol over stdin/stdout instead of TCP (e.g. through
    /// ssh); the summary then goes to stderr.
    #[arg(long, conflicts_with = "to")]
    pub stdio: bool,
    /// No progress output, and one total line instead of a line per file.
    #[arg(long, short)]
    pub quiet: bool,
    /// The summary as JSON: one object per entry, then `{"total": ...}`
    /// (see docs/CLI.md); no progress output.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,
    /// List what would be sent (each file's name as offered, its size and
    /// path, then a total) and exit, without connecting.
    #[arg(long)]
    pub dry_run: bool,
    /// The legacy seed protocol: one file, no name, no integrity check.
    #[arg(long, conflicts_with_all = ["code", "secret_file", "insecure"])]
    pub legacy: bool,
    /// The receiver's code, its secret file, or `--insecure`.
    #[command(flatten)]
    pub auth: SecureArgs,
}

/// The magic-wormhole servers a code goes through.
#[derive(Debug, Clone, Args)]
pub struct WormholeArgs {
    /// The mailbox server where the two sides meet (a ws:// URL; the same
    /// variable as Python's wormhole sets it).
    #[arg(long, env = "WORMHOLE_RELAY_URL", default_value = echoxfer::wormhole::PUBLIC_MAILBOX)]
    pub relay_url: String,
    /// The transit relay that carries the bytes when neither side can
    /// reach the other (tcp:HOST:PORT; the same variable as Python's
    /// wormhole sets it).
    #[arg(long, env = "WORMHOLE_TRANSIT_HELPER", default_value = echoxfer::wormhole::PUBLIC_TRANSIT_RELAY)]
    pub transit_helper: String,
    /// Offer no direct connection (no listening port): the bytes go
    /// through the transit relay unless this side reaches the other's.
    #[arg(long)]
    pub no_listen: bool,
    /// The addresses to offer the other side for a direct connection
    /// (repeatable; default: every non-loopback IPv4 address here).
    #[arg(long, value_name = "IP")]
    pub hint_addr: Vec<std::net::IpAddr>,
    /// Speak only the classic file-transfer protocol (one file or folder,
    /// SecretBox records), even when the other side is echoxfer too;
    /// by default two echoxfer sides run the native protocol over the
    /// transit connection (many paths, modes and times, resume).
    #[arg(long)]
    pub classic: bool,
}

/// `echoxfer receive`
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// A wormhole code (`7-guitarist-revenge`, from `echoxfer send --text`
    /// or any wormhole client's `send`): receive through the mailbox
    /// instead of listening.
    #[arg(value_name = "CODE", conflicts_with_all = ["listen", "once", "stdio", "legacy", "code", "secret_file", "insecure"])]
    pub wormhole_code: Option<String>,
    /// Where the wormhole meets (with CODE).
    #[command(flatten)]
    pub wormhole: WormholeArgs,
    /// Address to listen on, HOST:PORT (a name listens on the first address it
    /// resolves to that binds; port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:9999", value_parser = HostPort::parse)]
    pub listen: HostPort,
    /// Directory to store files in (must exist).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Serve one session, then exit with its status (0 only if every offered
    /// entry was saved or already there, identical).
    #[arg(long)]
    pub once: bool,
    /// Replace existing files that differ (default: refuse them; an
    /// identical one is always left as it is, "up to date").
    #[arg(long)]
    pub overwrite: bool,
    /// Driver to run sessions on.
    #[arg(long, value_enum, default_value_t = Runtime::Blocking)]
    pub runtime: Runtime,
    /// Speak the protocol over stdin/stdout instead of TCP (one session;
    /// e.g. `ssh host echoxfer receive --stdio`); messages go to stderr.
    #[arg(long, conflicts_with_all = ["listen", "once"])]
    pub stdio: bool,
    /// No progress output, and one total line per session instead of a
    /// line per file.
    #[arg(long, short)]
    pub quiet: bool,
    /// Each session's summary as JSON: one object per entry, then
    /// `{"total": ...}` (see docs/CLI.md); no progress output.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,
    /// The legacy seed protocol: one sender, written to `--dir/--name`, no
    /// integrity check.
    #[arg(long, conflicts_with_all = ["code", "secret_file", "insecure"])]
    pub legacy: bool,
    /// The code (with `--once`, a fresh one is printed if none is given),
    /// a secret file (for a receiver that serves many senders), or
    /// `--insecure`.
    #[command(flatten)]
    pub auth: SecureArgs,
    /// File name for `--legacy` (the seed protocol carries none).
    #[arg(long, requires = "legacy", default_value = echoxfer::files::legacy::DEFAULT_NAME)]
    pub name: String,
    /// Most sessions served at once; more wait in the backlog.
    #[arg(long, default_value_t = echoxfer::driver::Limits::default().max_connections,
          conflicts_with_all = ["once", "stdio", "legacy"])]
    pub max_connections: usize,
    /// Most sessions served at once from one address (an IPv6 /64 counts as
    /// one); more from it are closed at once.
    #[arg(long, default_value_t = echoxfer::driver::Limits::default().max_per_source,
          conflicts_with_all = ["once", "stdio", "legacy"])]
    pub max_per_source: usize,
}

/// `echoxfer udp ping`
#[derive(Debug, Args)]
pub struct UdpPingArgs {
    /// Server address, HOST:PORT (a name: the first address it resolves to).
    #[arg(long = "to", alias = "addr", default_value = "127.0.0.1:8888", value_parser = HostPort::parse)]
    pub addr: HostPort,
    /// Probes to send.
    #[arg(long, default_value_t = 10)]
    pub count: u32,
    /// How long each attempt waits for its reply (e.g. `500ms`, `2s`).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Retries of a probe before it counts as lost.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Bytes per probe, 12 (the probe header) to 65507 (the largest UDP
    /// payload over IPv4); anything else is refused, never adjusted
    /// (`--size` is an older spelling).
    #[arg(long = "size-bytes", alias = "size", value_name = "BYTES", default_value_t = 64,
          value_parser = parse_probe_size)]
    pub size: usize,
}

/// `echoxfer demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Echo messages to exchange.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Size of the file to transfer, in MiB (0 skips the file transfer;
    /// `--size` is an older spelling).
    #[arg(
        long = "size-mib",
        alias = "size",
        value_name = "MIB",
        default_value_t = 64
    )]
    pub size: u64,
}

/// Parses a probe size, refusing one the ping would have to change.
pub fn parse_probe_size(s: &str) -> Result<usize, String> {
    use echoxfer::echo::MIN_PROBE_SIZE;
    let max = echoxfer::UdpConfig::default().max_datagram;
    let range = format!("the probe size must be {MIN_PROBE_SIZE} to {max} bytes (a {MIN_PROBE_SIZE}-byte probe header; {max} is the largest UDP payload over IPv4)");
    let size: usize = s
        .parse()
        .map_err(|_| format!("not a whole number: {s:?}; {range}"))?;
    if (MIN_PROBE_SIZE..=max).contains(&size) {
        Ok(size)
    } else {
        Err(format!("{size} is out of range: {range}"))
    }
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
