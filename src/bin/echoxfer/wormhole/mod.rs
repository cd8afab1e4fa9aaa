//! The commands that go through a magic-wormhole mailbox instead of a
//! direct address: `send --text` (allocates a code and prints it) and
//! `receive CODE`. The roles are the library's (`wormhole::text`); here
//! are the mailbox's address, the code on the terminal and the outcome.

mod transit;

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use echoxfer::driver::App;
use echoxfer::files::wormhole::{Progress, ReceiveBytes, SendBytes, SharedTarget, Target};
use echoxfer::files::zip::{self, UnpackLimits};
use echoxfer::files::{walk, Store};
use echoxfer::secure::os_seed;
use echoxfer::wormhole::code::Code;
use echoxfer::wormhole::offer::{Policy, ReceiveOffer, Received, SendOffer};
use echoxfer::wormhole::transfer::{native_app_versions, Offer};
use echoxfer::wormhole::transit::{HandOver, Race, Role, TransitHints};
use echoxfer::wormhole::{
    Wormhole, WormholeConfig, WormholeEvent, NATIVE_SECRET_PURPOSE, TRANSIT_KEY_PURPOSE,
};
use echoxfer::xfer::{Meta, Mtime, Resume, SafeName, SafePath};
use echoxfer::TransferConfig;

use crate::addr::HostPort;
use crate::args::{ReceiveArgs, SendArgs, WormholeArgs};
use crate::auth::Auth;
use crate::net::{run_client, stopped_by_user, CmdResult, Peer};
use crate::term::{Meter, Ui};
use transit::After;

/// How many times a session that lost the mailbox server connects again
/// (after 2, 4, 8, 16, 32 and 32 s) before it gives up.
const RECONNECTS: u32 = 6;

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

/// `send PATH...` without `--to`: to another echoxfer, the native
/// protocol over transit (any number of paths); to any other wormhole
/// client (or with `--classic`), one file, or one folder as a zip.
pub fn send_file(a: SendArgs) -> CmdResult {
    let local = transit::local(&a.wormhole)?;
    let classic: Arc<Mutex<Option<Classic>>> = Arc::default();
    let made = classic.clone();
    let paths = a.files.clone();
    let make = move || -> Result<Offer, String> {
        let (source, offer, size) = what_to_send(&paths).map_err(|e| e.to_string())?;
        let shown = shown_offer(&offer);
        *made.lock().map_err(|_| "internal error: a poisoned lock")? = Some(Classic {
            source,
            size,
            shown,
        });
        Ok(offer)
    };
    let mut role = Shown(match a.wormhole.classic {
        true => SendOffer::with_transit(make()?, local.hints.clone()),
        false => SendOffer::files(local.hints.clone(), Box::new(make)),
    });
    let wormhole = meet(&a.wormhole, None, a.runtime, &mut role)?;
    let peer = role.0.peer_hints().cloned().unwrap_or_default();
    if role.0.native() {
        let stream = hand_over(&wormhole, local, &peer, Role::Sender)?;
        return crate::send::through(&a, native_auth(&wormhole)?, &stream);
    }
    let classic = classic.lock().ok().and_then(|mut c| c.take());
    let Classic {
        source,
        size,
        shown,
    } = classic.ok_or("the wormhole closed before the offer was made")?;
    let key = transit_key(&wormhole)?;
    let race = Race::new();
    let source = Arc::new(Mutex::new(Some(source)));
    let (progress, meter) = meter(a.quiet || a.json, format!("sending {shown}"), size);
    let send = {
        let race = race.clone();
        move || SendBytes::new(source.clone(), size, race.clone()).with_progress(progress.clone())
    };
    let sent = transit::race(
        local,
        &peer,
        (Role::Sender, After::Records),
        key,
        race,
        send,
        SendBytes::won,
    );
    meter.finish();
    sent?;
    eprintln!("sent {shown}: {size} bytes, confirmed by the receiver's SHA-256");
    Ok(())
}

/// What a classic offer sends: the file (or the folder's zip), its size,
/// and how it is named on the terminal.
struct Classic {
    source: File,
    size: u64,
    shown: String,
}

fn shown_offer(offer: &Offer) -> String {
    match offer {
        Offer::File { filename, .. } => filename.clone(),
        Offer::Directory {
            dirname, numfiles, ..
        } => format!("{dirname}/ ({numfiles} entries, zipped)"),
        Offer::Message(_) => String::new(),
    }
}

/// The native protocol agreed: races transit as `role` and returns the
/// winning connection, handed over after `go`.
fn hand_over(
    wormhole: &Wormhole,
    local: transit::Local,
    peer: &TransitHints,
    role: Role,
) -> CmdResult<TcpStream> {
    let race = Race::new();
    let candidates = race.clone();
    let (_, stream) = transit::race(
        local,
        peer,
        (role, After::HandOver),
        transit_key(wormhole)?,
        race,
        move || HandOver::new(candidates.clone()),
        HandOver::won,
    )?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    Ok(stream)
}

/// The native protocol's secret: derived from the wormhole's key, so the
/// code typed once keys it too (docs/PROTOCOL.md, "Through the wormhole").
fn native_auth(wormhole: &Wormhole) -> CmdResult<Auth> {
    let secret = wormhole
        .derive_key(NATIVE_SECRET_PURPOSE)
        .ok_or("the wormhole closed before a key was agreed")?;
    Ok(Auth::Secret(hex::encode(secret).into_bytes()))
}

/// `receive CODE`: a text, or a file or folder into `--dir`.
pub fn receive(a: ReceiveArgs) -> CmdResult {
    let code = Code::parse(a.wormhole_code.as_deref().unwrap_or_default())?;
    let store = Store::new(&a.dir, a.overwrite)
        .map_err(|e| format!("cannot use {} as the destination: {e}", a.dir.display()))?;
    let local = transit::local(&a.wormhole)?;
    let slot: SharedTarget = Arc::default();
    let offer = ReceiveOffer::new(local.hints.clone(), policy(store.clone(), slot.clone()));
    let mut role = Shown(match a.wormhole.classic {
        true => offer,
        false => offer.with_native(),
    });
    let wormhole = meet(&a.wormhole, Some(code), a.runtime, &mut role)?;
    let peer = role.0.peer_hints().cloned().unwrap_or_default();
    let size = match role.0.received() {
        Some(Received::Text(text)) => {
            println!("{text}");
            return Ok(());
        }
        Some(Received::Declined(_, reason)) => {
            return Err(format!("declined the offer: {reason}").into())
        }
        Some(Received::Native) => {
            let stream = hand_over(&wormhole, local, &peer, Role::Receiver)?;
            return crate::receive::through(&a, &store, native_auth(&wormhole)?, &stream);
        }
        Some(Received::Accepted(Offer::File { filesize, .. })) => *filesize,
        Some(Received::Accepted(Offer::Directory { zipsize, .. })) => *zipsize,
        _ => return Err("the sender closed the wormhole without an offer".into()),
    };
    let key = transit_key(&wormhole)?;
    let race = Race::new();
    let (progress, meter) = meter(a.quiet || a.json, "receiving".into(), size);
    let receive = {
        let race = race.clone();
        move || ReceiveBytes::new(slot.clone(), size, race.clone()).with_progress(progress.clone())
    };
    let done = transit::race(
        local,
        &peer,
        (Role::Receiver, After::Records),
        key,
        race,
        receive,
        ReceiveBytes::won,
    );
    meter.finish();
    let (done, _) = done?;
    let saved = done
        .saved()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    eprintln!("received {saved} ({size} bytes through transit)");
    Ok(())
}

/// A progress meter (a bar on a terminal, a sparse line otherwise,
/// nothing when `quiet`) over `size` bytes, and the counter the winning
/// candidate keeps for it.
fn meter(quiet: bool, label: String, size: u64) -> (Progress, Meter) {
    let progress = Progress::default();
    let read = progress.clone();
    let counter = Arc::new(move || {
        let done = read.load(std::sync::atomic::Ordering::Relaxed);
        (done, size, done)
    });
    (progress, Meter::start(Ui::new(quiet), label, counter))
}

/// Meets the other side through the mailbox and runs `role` there:
/// allocates a code (and shows it) without `code`, joins with it. A
/// connection to the server lost mid-session is made again, up to
/// [`RECONNECTS`] times, and the session goes on where it was.
fn meet<A>(
    args: &WormholeArgs,
    code: Option<Code>,
    runtime: crate::args::Runtime,
    role: &mut A,
) -> CmdResult<Wormhole>
where
    A: App<Wormhole> + 'static,
{
    let (mut config, to) = mailbox(args)?;
    if !args.classic {
        config.app_versions = native_app_versions();
    }
    let now = Instant::now();
    let mut wormhole = match code {
        Some(code) => Wormhole::join(config, code, now, os_seed()?)?,
        None => Wormhole::allocate(config, now, os_seed()?)?,
    };
    let mut attempt = 0;
    loop {
        let server = Peer::Tcp {
            to: &to,
            server: MAILBOX,
        };
        let lost = match run_client(&mut wormhole, role, server, runtime) {
            Ok(()) => return Ok(wormhole),
            Err(e) if wormhole.can_resume() && attempt < RECONNECTS && !stopped_by_user() => e,
            Err(e) => return Err(e),
        };
        attempt += 1;
        let wait = Duration::from_secs(1 << attempt.min(5));
        eprintln!(
            "lost the mailbox server at {to} ({lost}); reconnecting in {} s (attempt {attempt} of {RECONNECTS}; Ctrl-C gives up)",
            wait.as_secs()
        );
        std::thread::sleep(wait);
        wormhole = wormhole.resume(Instant::now())?;
    }
}

fn transit_key(wormhole: &Wormhole) -> CmdResult<[u8; 32]> {
    Ok(wormhole
        .derive_key(TRANSIT_KEY_PURPOSE)
        .ok_or("the wormhole closed before a key was agreed")?)
}

/// What a classic wormhole send offers for `paths`: one regular file as
/// it is, or one folder packed into a deflated zip (an unnamed temporary
/// file).
fn what_to_send(paths: &[PathBuf]) -> CmdResult<(File, Offer, u64)> {
    let [path] = paths else {
        return Err(
            "the receiver speaks the classic wormhole file transfer (it is another \
             wormhole client, or --classic was given), which carries one file or one folder at \
             a time: put them in one folder and send that, or run `echoxfer receive CODE` there"
                .into(),
        );
    };
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no UTF-8 file name", path.display()))?
        .to_owned();
    if meta.is_file() {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let filesize = meta.len();
        return Ok((
            file,
            Offer::File {
                filename: name,
                filesize,
            },
            filesize,
        ));
    }
    if !meta.is_dir() {
        return Err(format!(
            "{} is neither a file nor a folder (links are not followed)",
            path.display()
        )
        .into());
    }
    let found = walk(
        std::slice::from_ref(path),
        &TransferConfig::default().path_limits(),
    )?;
    for skipped in &found.skipped {
        eprintln!("skipped {}: {}", skipped.path.display(), skipped.why);
    }
    let spool = tempfile::tempfile()
        .map_err(|e| format!("cannot make a temporary file for the zip: {e}"))?;
    let (spool, packed) =
        zip::pack(&found, spool).map_err(|e| format!("cannot zip {}: {e}", path.display()))?;
    let offer = Offer::Directory {
        mode: "zipfile/deflated".into(),
        dirname: name,
        zipsize: packed.zipsize,
        numbytes: packed.numbytes,
        numfiles: packed.numfiles,
    };
    Ok((spool, offer, packed.zipsize))
}

/// How a receiver decides on an offer: a name that is one safe name, and
/// the store's word (no overwrite unless asked, room on the disk). A file
/// goes into its partial file; a folder's zip into an unnamed spool in
/// the destination, unpacked through the store once whole. What is
/// claimed waits in `slot` for transit.
fn policy(store: Store, slot: SharedTarget) -> Policy {
    Box::new(move |offer| {
        let target = match offer {
            Offer::File { filename, filesize } => file_target(&store, filename, *filesize)?,
            Offer::Directory {
                mode,
                dirname,
                zipsize,
                numbytes,
                ..
            } => {
                if !mode.starts_with("zipfile") {
                    return Err(format!(
                        "a folder in mode {mode:?}, which this receiver does not know"
                    ));
                }
                folder_target(&store, dirname, *zipsize, *numbytes)?
            }
            Offer::Message(_) => return Err("a text where a file was expected".into()),
        };
        *slot
            .lock()
            .map_err(|_| "internal error: a poisoned lock".to_string())? = Some(target);
        Ok(())
    })
}

fn safe_name(name: &str) -> Result<SafeName, String> {
    let limits = TransferConfig::default().path_limits();
    SafeName::new(name.as_bytes(), limits.max_name_len)
        .map_err(|e| format!("the name {name:?} is refused here: {e}"))
}

fn file_target(store: &Store, filename: &str, filesize: u64) -> Result<Target, String> {
    let path = SafePath::single(safe_name(filename)?);
    let (incoming, resume) = store
        .prepare(&path, filesize, arrival_meta(0o644))
        .map_err(|r| r.message)?;
    if matches!(resume, Resume::Complete { .. }) && !store.overwrite() {
        return Err(format!("a file named {filename} exists on the receiver, which keeps it unless told to overwrite"));
    }
    Ok(Target::File(incoming))
}

fn folder_target(
    store: &Store,
    dirname: &str,
    zipsize: u64,
    numbytes: u64,
) -> Result<Target, String> {
    let name = safe_name(dirname)?;
    if store.dir().join(name.as_str()).symlink_metadata().is_ok() && !store.overwrite() {
        return Err(format!(
            "{dirname} exists on the receiver, which keeps it unless told to overwrite"
        ));
    }
    let free = store
        .free_space()
        .map_err(|e| format!("cannot tell the free space here: {e}"))?;
    let needs = zipsize.saturating_add(numbytes);
    if needs > free {
        return Err(format!("the folder needs {needs} bytes (its zip, then its content) and the receiver has {free} free"));
    }
    let spool = tempfile::tempfile_in(store.dir())
        .map_err(|e| format!("cannot make a spool for the zip: {e}"))?;
    let store = store.clone();
    let unpack = move |zipped: File| -> io::Result<PathBuf> {
        let limits = UnpackLimits {
            max_entries: 1_000_000,
            max_bytes: numbytes.min(free.saturating_sub(zipsize)),
        };
        let paths = TransferConfig::default().path_limits();
        let done = zip::unpack(zipped, &store, &name, limits, &paths, arrival_meta(0).mtime)?;
        for skipped in &done.skipped {
            eprintln!("left out {skipped}: a link or a special file");
        }
        Ok(store.dir().join(name.as_str()))
    };
    Ok(Target::Spool(spool, Box::new(unpack)))
}

/// What an entry received through the wormhole gets: the protocol
/// carries no time (a zip only a local one, to two seconds), so the time
/// it arrived, and `mode` (narrowed by the umask).
fn arrival_meta(mode: u32) -> Meta {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Meta {
        mode,
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
