//! The `echoxfer` command line: parses arguments, sets up logging and
//! Ctrl-C, and hands each subcommand to its module. No protocol logic here.

mod args;
mod demo;
mod echo;
mod legacy;
mod net;
mod term;
mod udp;
mod xfer;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, EchoCommand, UdpCommand};

/// What every subcommand returns: a human-readable error ends the process
/// with a non-zero exit code.
type CmdResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Echo(EchoCommand::Serve(a)) => echo::serve(a),
        Command::Echo(EchoCommand::Connect(a)) => echo::connect(a),
        Command::Udp(UdpCommand::Serve(a)) => udp::serve(a),
        Command::Udp(UdpCommand::Ping(a)) => udp::ping(a),
        Command::Udp(UdpCommand::Send(a)) => legacy::udp_send(a),
        Command::Send(a) => xfer::send(a),
        Command::Receive(a) => xfer::receive(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
