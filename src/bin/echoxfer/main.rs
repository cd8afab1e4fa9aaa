//! The `echoxfer` command line, top-down: parse the arguments, set up
//! logging, hand the command to its module, print the error chain. No
//! protocol logic and no I/O of its own here.
//!
//! The layers, each using only those below it:
//! - one module per command ([`demo`], [`echo`], [`udp`], [`send`],
//!   [`receive`]), each with its `--legacy` variant in a `legacy`
//!   submodule, and [`wormhole`] for what goes through a mailbox
//!   (`send --text`, `receive CODE`); no command module uses another;
//! - [`auth`]: codes, secret files, the secure channel a session runs
//!   in, and what a wrong code or a plaintext peer means to the user;
//! - [`net`]: network plumbing (binding, connecting, stdio, the runtime,
//!   serving until Ctrl-C);
//! - [`term`]: terminal output (progress, summaries, notes, `stopped:`);
//! - [`args`]: the grammar, with [`addr`]: `HOST:PORT`, resolved.

mod addr;
mod args;
mod auth;
mod demo;
mod echo;
mod net;
mod receive;
mod send;
mod term;
mod udp;
mod wormhole;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command, EchoCommand, UdpCommand};
use net::CmdResult;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    raise_open_files_limit();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error_chain(&*e);
            if e.downcast_ref::<term::PartialTransfer>().is_some() {
                return ExitCode::from(term::PARTIAL_EXIT);
            }
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard one (at most 65536): a
/// receiver holds a file open for each entry in flight (up to the window,
/// 256 by default, per session), and the usual soft limit of 1024 would
/// cap a server at a few folder sessions. Best effort: a limit that cannot
/// be raised stays as it was.
fn raise_open_files_limit() {
    // SAFETY: an all-zero rlimit is a valid value for getrlimit to fill.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let want = lim.rlim_max.min(65_536);
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: a valid pointer to an rlimit; failure changes nothing.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// Logs go to stderr, at `warn` unless `RUST_LOG` says otherwise.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn dispatch(command: Command) -> CmdResult {
    match command {
        Command::Demo(a) => demo::run(a),
        Command::Echo(EchoCommand::Serve(a)) => echo::serve(a),
        Command::Echo(EchoCommand::Connect(a)) => echo::connect(a),
        Command::Udp(UdpCommand::Serve(a)) => udp::serve(a),
        Command::Udp(UdpCommand::Ping(a)) => udp::ping(a),
        Command::Udp(UdpCommand::Send(a)) => udp::send(a),
        Command::Send(a) if a.text.is_some() => wormhole::send_text(a),
        Command::Send(a) if a.to.is_none() && !(a.stdio || a.legacy || a.dry_run) => {
            wormhole::send_file(a)
        }
        Command::Send(a) => send::send(a),
        Command::Receive(a) if a.wormhole_code.is_some() => wormhole::receive(a),
        Command::Receive(a) => receive::receive(a),
        Command::Secret(a) => auth::secret_command(a.file),
        Command::Completions(a) => {
            let mut cli = Cli::command();
            clap_complete::generate(a.shell, &mut cli, "echoxfer", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// `error: ...`, then one `caused by: ...` line per underlying cause that
/// says something new: a cause whose text the line above already holds
/// is not repeated.
fn print_error_chain(e: &(dyn std::error::Error + 'static)) {
    for line in error_lines(e) {
        eprintln!("{line}");
    }
}

/// The lines [`print_error_chain`] prints, each free of line breaks (a
/// message's embedded newline would split it: shown as a space).
fn error_lines(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let one_line = |text: String| text.replace(['\n', '\r'], " ");
    let mut said = one_line(e.to_string());
    let mut lines = vec![format!("error: {said}")];
    let mut source = e.source();
    while let Some(cause) = source {
        let text = one_line(cause.to_string());
        if !said.contains(&text) {
            lines.push(format!("  caused by: {text}"));
            said = text;
        }
        source = cause.source();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_error_prints_once_without_the_driver_prefix() {
        let e = echoxfer::driver::DriverError::App(std::io::Error::other(
            "cannot write out.bin: disk full",
        ));
        assert_eq!(error_lines(&e), ["error: cannot write out.bin: disk full"]);
        let e = echoxfer::driver::DriverError::Io {
            context: "reading from the peer",
            source: std::io::Error::other("two\nlines"),
        };
        assert_eq!(error_lines(&e), ["error: reading from the peer: two lines"]);
    }
}
