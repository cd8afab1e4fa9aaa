//! Embedding the drivers in a transport of your own: a child process that
//! receives files over its stdin and stdout, fed by the parent through the
//! child's pipes. The blocking driver takes any `Read + Write` pair as a
//! [`Duplex`]; the file layer does the rest (verified, resumable, never a
//! half-written file under its final name).
//!
//! `cargo run --example pipes -- FILE... [--dir DIR]` (default: a file of
//! its own into a temporary directory).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use echoxfer::driver::blocking::{self, Duplex};
use echoxfer::files::{Outcome, ReceiverApp, SenderApp, Store};
use echoxfer::xfer::{Receiver, ReceiverRole, Sender};
use echoxfer::{SessionLimits, TransferConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child-receiver") {
        return child(PathBuf::from(&args[1]));
    }
    parent(args)
}

/// The child: one receiving session on stdin/stdout, into `dir`.
fn child(dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let mut transport = Duplex {
        reader: std::io::stdin().lock(),
        writer: std::io::stdout().lock(),
    };
    let mut app = ReceiverApp::new(Store::new(&dir, false)?);
    let mut machine = Receiver::new(
        ReceiverRole::new(TransferConfig::default()),
        SessionLimits::default(),
        Instant::now(),
    );
    blocking::run_stream(&mut machine, &mut transport, &mut app)?;
    Ok(())
}

/// The parent: starts the child and sends it the files over its pipes.
fn parent(mut args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let dir = match args.iter().position(|a| a == "--dir") {
        Some(i) => PathBuf::from(
            args.drain(i..i + 2)
                .nth(1)
                .ok_or("--dir needs a directory")?,
        ),
        None => scratch.path().join("received"),
    };
    std::fs::create_dir_all(&dir)?;
    if args.is_empty() {
        let own = scratch.path().join("example.bin");
        std::fs::write(&own, vec![42u8; 3 << 20])?;
        args.push(own.display().to_string());
    }
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child-receiver")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut transport = Duplex {
        reader: child.stdout.take().ok_or("no child stdout")?,
        writer: child.stdin.take().ok_or("no child stdin")?,
    };
    let mut app = SenderApp::open(&args, &TransferConfig::default().path_limits())?;
    let mut machine = Sender::new(
        app.role(TransferConfig::default()),
        SessionLimits::default(),
        Instant::now(),
    );
    blocking::run_stream(&mut machine, &mut transport, &mut app)?;
    drop(transport);
    if !child.wait()?.success() {
        return Err("the receiving child failed".into());
    }
    for f in app.report() {
        match f.outcome {
            Outcome::Saved { .. } => println!("{} -> {}: {} bytes", f.name, dir.display(), f.size),
            _ => return Err(format!("{} not delivered: {:?}", f.name, f.outcome).into()),
        }
    }
    Ok(())
}
