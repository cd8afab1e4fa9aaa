//! The commands that go through a magic-wormhole mailbox instead of a
//! direct address: `send --text` (allocates a code and prints it) and
//! `receive CODE`. The roles are the library's (`wormhole::text`); here
//! are the mailbox's address, the code on the terminal and the outcome.

mod transit;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use echoxfer::driver::App;
use echoxfer::files::wormhole::{Race, ReceiveBytes, SendBytes};
use echoxfer::files::{Incoming, Store};
use echoxfer::secure::os_seed;
use echoxfer::wormhole::code::Code;
use echoxfer::wormhole::offer::{Policy, ReceiveOffer, Received, SendOffer};
use echoxfer::wormhole::transfer::Offer;
use echoxfer::wormhole::transit::Role;
use echoxfer::wormhole::{Wormhole, WormholeConfig, WormholeEvent, TRANSIT_KEY_PURPOSE};
use echoxfer::xfer::{Meta, Mtime, Resume, SafeName, SafePath};
use echoxfer::TransferConfig;

use crate::addr::HostPort;
use crate::args::{ReceiveArgs, SendArgs, WormholeArgs};
use crate::net::{run_client, CmdResult, Peer};

/// What the mailbox is, for messages that name it.
const MAILBOX: &str = "the magic-wormhole mailbox server --relay-url names";

/// `send --text TEXT`.
pub fn send_text(a: SendArgs) -> CmdResult {
    let text = a.text.unwrap_or_default();
    let mut role = Shown(SendOffer::text(text));
    meet(&a.wormhole, None, a.runtime, &mut role)?;
    eprintln!("text sent");
    Ok(())
}

/// `send FILE` without `--to`: one file, through the wormhole.
pub fn send_file(a: SendArgs) -> CmdResult {
    let (path, filename, filesize) = one_file(&a.files)?;
    let local = transit::local(&a.wormhole)?;
    let offer = Offer::File {
        filename: filename.clone(),
        filesize,
    };
    let mut role = Shown(SendOffer::with_transit(offer, local.hints.clone()));
    let wormhole = meet(&a.wormhole, None, a.runtime, &mut role)?;
    let key = transit_key(&wormhole)?;
    let peer = role.0.peer_hints().cloned().unwrap_or_default();
    let race = Race::new();
    let send = {
        let race = race.clone();
        move || SendBytes::new(path.clone(), filesize, race.clone())
    };
    transit::race(local, &peer, Role::Sender, key, race, send, SendBytes::won)?;
    eprintln!("sent {filename}: {filesize} bytes, confirmed by the receiver's SHA-256");
    Ok(())
}

/// `receive CODE`: a text, or a file into `--dir`.
pub fn receive(a: ReceiveArgs) -> CmdResult {
    let code = Code::parse(a.wormhole_code.as_deref().unwrap_or_default())?;
    let store = Store::new(&a.dir, a.overwrite)
        .map_err(|e| format!("cannot use {} as the destination: {e}", a.dir.display()))?;
    let local = transit::local(&a.wormhole)?;
    let slot: Arc<Mutex<Option<Incoming>>> = Arc::default();
    let mut role = Shown(ReceiveOffer::new(
        local.hints.clone(),
        policy(store, slot.clone()),
    ));
    let wormhole = meet(&a.wormhole, Some(code), a.runtime, &mut role)?;
    let filesize = match role.0.received() {
        Some(Received::Text(text)) => {
            println!("{text}");
            return Ok(());
        }
        Some(Received::Declined(_, reason)) => {
            return Err(format!("declined the offer: {reason}").into())
        }
        Some(Received::Accepted(Offer::File { filesize, .. })) => *filesize,
        _ => return Err("the sender closed the wormhole without an offer".into()),
    };
    let key = transit_key(&wormhole)?;
    let peer = role.0.peer_hints().cloned().unwrap_or_default();
    let race = Race::new();
    let receive = {
        let race = race.clone();
        move || ReceiveBytes::new(slot.clone(), filesize, race.clone())
    };
    let done = transit::race(
        local,
        &peer,
        Role::Receiver,
        key,
        race,
        receive,
        ReceiveBytes::won,
    )?;
    let saved = done
        .saved()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    eprintln!("received {saved}: {filesize} bytes");
    Ok(())
}

/// Meets the other side through the mailbox and runs `role` there:
/// allocates a code (and shows it) without `code`, joins with it.
fn meet<A>(
    args: &WormholeArgs,
    code: Option<Code>,
    runtime: crate::args::Runtime,
    role: &mut A,
) -> CmdResult<Wormhole>
where
    A: App<Wormhole> + 'static,
{
    let (config, to) = mailbox(args)?;
    let now = Instant::now();
    let mut wormhole = match code {
        Some(code) => Wormhole::join(config, code, now, os_seed()?)?,
        None => Wormhole::allocate(config, now, os_seed()?)?,
    };
    run_client(
        &mut wormhole,
        role,
        Peer::Tcp {
            to: &to,
            server: MAILBOX,
        },
        runtime,
    )?;
    Ok(wormhole)
}

fn transit_key(wormhole: &Wormhole) -> CmdResult<[u8; 32]> {
    Ok(wormhole
        .derive_key(TRANSIT_KEY_PURPOSE)
        .ok_or("the wormhole closed before a key was agreed")?)
}

/// The one regular file a wormhole send takes: its path, name and size.
fn one_file(paths: &[PathBuf]) -> CmdResult<(PathBuf, String, u64)> {
    let direct = "send it directly instead (echoxfer receive --once there, echoxfer send --to HOST:PORT here)";
    let [path] = paths else {
        return Err(format!(
            "through the wormhole, echoxfer sends one file at a time so far; {direct}"
        )
        .into());
    };
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file: folders through the wormhole come later; {direct}",
            path.display()
        )
        .into());
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no UTF-8 file name", path.display()))?;
    Ok((path.clone(), name.to_owned(), meta.len()))
}

/// How a receiver decides on a file offer: its name must be a safe single
/// name, the store must take it (no overwrite unless asked, room on the
/// disk), and the claimed partial file waits in `slot` for transit.
fn policy(store: Store, slot: Arc<Mutex<Option<Incoming>>>) -> Policy {
    Box::new(move |offer| {
        let Offer::File { filename, filesize } = offer else {
            return Err("echoxfer cannot unpack a folder from the wormhole yet; send it as a file (a zip or tar), or directly with echoxfer".into());
        };
        let limits = TransferConfig::default().path_limits();
        let name = SafeName::new(filename.as_bytes(), limits.max_name_len)
            .map_err(|e| format!("the file name {filename:?} is refused here: {e}"))?;
        let path = SafePath::single(name);
        let (incoming, resume) = store
            .prepare(&path, *filesize, file_meta())
            .map_err(|r| r.message)?;
        if matches!(resume, Resume::Complete { .. }) && !store.overwrite() {
            return Err(format!("a file named {filename} exists on the receiver, which keeps it unless told to overwrite"));
        }
        *slot
            .lock()
            .map_err(|_| "internal error: a poisoned lock".to_string())? = Some(incoming);
        Ok(())
    })
}

/// What a file received through the wormhole gets: the protocol carries
/// no mode or time, so read-write for its owner and readable by others
/// (narrowed by the umask), and the time it arrived.
fn file_meta() -> Meta {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Meta {
        mode: 0o644,
        mtime: Mtime {
            secs: since.as_secs() as i64,
            nanos: since.subsec_nanos(),
        },
    }
}

/// The mailbox's config and address from `--relay-url`.
fn mailbox(args: &WormholeArgs) -> CmdResult<(WormholeConfig, HostPort)> {
    let url = args.relay_url.trim();
    let Some(rest) = url.strip_prefix("ws://") else {
        let hint = if url.starts_with("wss://") {
            " (TLS mailboxes are not supported yet)"
        } else {
            ""
        };
        return Err(format!("--relay-url {url:?} is not a ws://HOST:PORT/PATH URL{hint}").into());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let with_port = match authority.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => authority.to_owned(),
        _ => format!("{authority}:80"),
    };
    let to = HostPort::parse(&with_port).map_err(|e| format!("--relay-url {url}: {e}"))?;
    let config = WormholeConfig {
        mailbox_url: url.to_owned(),
        ..WormholeConfig::default()
    };
    Ok((config, to))
}

/// A role, with what the user must see on the way: the server's message
/// of the day and the code to pass on.
struct Shown<A>(A);

impl<A: App<Wormhole>> App<Wormhole> for Shown<A> {
    fn on_event(
        &mut self,
        wormhole: &mut Wormhole,
        now: Instant,
        event: WormholeEvent,
    ) -> io::Result<()> {
        match &event {
            WormholeEvent::Motd(motd) => eprintln!("message from the mailbox server: {motd}"),
            WormholeEvent::Code(code) => {
                eprintln!("Wormhole code is: {code}");
                eprintln!("On the other computer, run: echoxfer receive {code}   (or: wormhole receive {code})");
            }
            _ => {}
        }
        self.0.on_event(wormhole, now, event)
    }
}
