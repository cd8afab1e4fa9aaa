//! `echoxfer demo`: runs real sessions over loopback on built-in defaults
//! and checks every byte, so a fresh clone proves itself in one command.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echoxfer::driver::{blocking, Ignore};
use echoxfer::echo::{Client, ClientEvent, EchoClient, EchoServer, Server};
use echoxfer::Config;

use crate::args::DemoArgs;
use crate::CmdResult;

pub fn run(a: DemoArgs) -> CmdResult {
    echo_demo(a.messages)?;
    Ok(())
}

/// A demo message: numbered, and every tenth is a word the seed protocols
/// would have taken as a command.
fn message(i: usize) -> Bytes {
    match i % 10 {
        3 => Bytes::from_static(b"exit"),
        6 => Bytes::from_static(b"quit"),
        9 => Bytes::from_static(b"success"),
        _ => Bytes::from(format!("message {i}")),
    }
}

fn echo_demo(messages: usize) -> CmdResult {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let shutdown = blocking::Shutdown::new();
    let server = {
        let shutdown = shutdown.clone();
        thread::spawn(move || {
            blocking::serve(listener, 4, Duration::from_secs(1), &shutdown, |now| {
                (
                    EchoServer::new(Server::new("echoxfer demo"), Config::default(), now),
                    Ignore,
                )
            })
        })
    };
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut client = EchoClient::new(Client::new(), Config::default(), Instant::now());
    client.send(message(0))?;
    let mut next = 1;
    let mut replies = 0;
    let started = Instant::now();
    let mut app = |c: &mut EchoClient, _: Instant, e: ClientEvent| -> std::io::Result<()> {
        if let ClientEvent::Reply(r) = e {
            if r != message(replies) {
                return Err(std::io::Error::other(format!("reply {replies} differs")));
            }
            replies += 1;
            let r = if next < messages {
                next += 1;
                c.send(message(next - 1))
            } else {
                c.close()
            };
            r.map_err(std::io::Error::other)?;
        }
        Ok(())
    };
    blocking::run_stream(&mut client, &mut stream, &mut app)?;
    let elapsed = started.elapsed();
    shutdown.trigger();
    server.join().map_err(|_| "server thread panicked")??;
    if replies != messages {
        return Err(format!("echo: {replies} of {messages} replies").into());
    }
    println!(
        "echo: {messages} messages echoed intact over {addr} in {:.3} s ({:.0} round trips/s)",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
