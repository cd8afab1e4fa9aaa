//! A file's bytes through magic-wormhole transit (file-transfer protocol
//! v1), as [`App`]s of the [`Transit`] machine: [`SendBytes`] streams a
//! file (or a folder's zip) as records and checks the receiver's SHA-256
//! acknowledgement; [`ReceiveBytes`] writes the records into a [`Target`]
//! (the store's partial file, saved under its final name only once all of
//! it is there and durable; or a spool, a folder's zip unpacked once
//! whole), then acknowledges with its SHA-256.
//!
//! Several candidate connections race for each transfer (direct hints,
//! relays); each runs its own copy of the app, and the first to connect
//! wins the shared [`Race`]: only the winner touches the file. Touches
//! `std::fs` and the store; no sockets, no clocks, no threads.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::Incoming;
use crate::driver::{App, Work};
use crate::error::WormholeError;
use crate::wormhole::app_error;
use crate::wormhole::transit::{Role, Transit, TransitEvent};

/// Bytes of file in one record. Python sends 16 KiB records and takes any
/// size; larger records cost fewer system calls and seals.
pub const RECORD_BYTES: usize = 256 * 1024;

pub use crate::wormhole::transit::Race;

/// The receiver's last record: `{"ack": "ok", "sha256": HEX}`.
#[derive(Debug, Serialize, Deserialize)]
struct Ack {
    ack: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

/// Bytes moved so far, for a progress meter to read (the winner counts).
pub type Progress = Arc<AtomicU64>;

/// What a sender reads, shared by the candidates: the winner takes it.
pub type SharedSource = Arc<Mutex<Option<File>>>;

/// The sending side of one candidate connection.
#[derive(Debug)]
pub struct SendBytes {
    source: SharedSource,
    size: u64,
    race: Race,
    file: Option<File>,
    sent: u64,
    hasher: Sha256,
    reading: bool,
    won: bool,
    confirmed: bool,
    progress: Option<Progress>,
}

impl SendBytes {
    /// Sends the `size` bytes of `source` (read from where it stands) if
    /// this candidate wins `race`.
    pub fn new(source: SharedSource, size: u64, race: Race) -> SendBytes {
        SendBytes {
            source,
            size,
            race,
            file: None,
            sent: 0,
            hasher: Sha256::new(),
            reading: false,
            won: false,
            confirmed: false,
            progress: None,
        }
    }

    /// Counts the bytes handed to transit in `progress` too.
    pub fn with_progress(mut self, progress: Progress) -> SendBytes {
        self.progress = Some(progress);
        self
    }

    /// Whether this candidate won and the receiver confirmed the bytes.
    pub fn confirmed(&self) -> bool {
        self.confirmed
    }

    /// Whether this candidate carried the transfer.
    pub fn won(&self) -> bool {
        self.won
    }

    /// Bytes handed to transit so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    fn on_connected(&mut self, transit: &mut Transit) -> io::Result<()> {
        let taken = self
            .source
            .lock()
            .map(|mut slot| slot.take())
            .unwrap_or(None);
        let (true, Some(file)) = (self.race.claim(), taken) else {
            return transit.nevermind().map_err(app_error);
        };
        self.file = Some(file);
        self.won = true;
        transit.go().map_err(app_error)
    }

    fn on_ack(&mut self, transit: &mut Transit, record: &[u8]) -> io::Result<()> {
        let ack: Ack = serde_json::from_slice(record).map_err(|_| {
            app_error(WormholeError::BadPeer(
                "a last record that is not the acknowledgement",
            ))
        })?;
        if ack.ack != "ok" {
            return Err(app_error(WormholeError::PeerError(crate::error::sanitize(
                ack.ack.as_bytes(),
            ))));
        }
        if self.sent < self.size {
            return Err(app_error(WormholeError::BadPeer(
                "an acknowledgement before the whole file was sent",
            )));
        }
        let ours = hex::encode(self.hasher.clone().finalize());
        if ack.sha256.is_some_and(|theirs| theirs != ours) {
            return Err(app_error(WormholeError::BadPeer(
                "a SHA-256 of the file that is not what was sent",
            )));
        }
        self.confirmed = true;
        transit.close().map_err(app_error)
    }
}

/// The next chunk of the file, read off the driver's loop.
fn read_chunk(mut file: File, want: usize) -> io::Result<(File, Vec<u8>)> {
    let mut chunk = vec![0u8; want];
    file.read_exact(&mut chunk).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("reading the file to send: {e} (did it shrink?)"),
        )
    })?;
    Ok((file, chunk))
}

impl App<Transit> for SendBytes {
    fn on_event(
        &mut self,
        transit: &mut Transit,
        _now: Instant,
        event: TransitEvent,
    ) -> io::Result<()> {
        match event {
            TransitEvent::Connected => self.on_connected(transit),
            TransitEvent::Record(record) => self.on_ack(transit, &record),
        }
    }

    fn poll_work(&mut self) -> Option<Work<Self, Transit>> {
        if self.reading || self.sent >= self.size {
            return None;
        }
        let file = self.file.take()?;
        self.reading = true;
        let want = (self.size - self.sent).min(RECORD_BYTES as u64) as usize;
        Some(Work::new(move || {
            let read = read_chunk(file, want);
            move |app: &mut SendBytes, transit: &mut Transit, _now: Instant| {
                app.reading = false;
                let (file, chunk) = read?;
                if !transit.is_open() {
                    // The connection ended while the chunk was read: the
                    // machine's own error says why, not a refused send.
                    return Ok(());
                }
                app.file = Some(file);
                app.hasher.update(&chunk);
                app.sent += chunk.len() as u64;
                if let Some(progress) = &app.progress {
                    progress.store(app.sent, Ordering::Relaxed);
                }
                transit.send_record(&chunk).map_err(app_error)
            }
        }))
    }
}

/// Where received bytes go.
pub enum Target {
    /// A file, saved under its name once whole and durable.
    File(Incoming),
    /// A spool (an unnamed file), handed to `finish` once whole, rewound:
    /// a folder's zip, say, to unpack. `finish` says where it landed.
    Spool(File, Box<dyn FnOnce(File) -> io::Result<PathBuf> + Send>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::File(incoming) => f.debug_tuple("File").field(incoming).finish(),
            Target::Spool(file, _) => f.debug_tuple("Spool").field(file).finish_non_exhaustive(),
        }
    }
}

impl Target {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        match self {
            Target::File(incoming) => incoming.write_at(offset, data),
            Target::Spool(file, _) => file.write_all_at(data, offset),
        }
    }

    fn finish(self) -> io::Result<PathBuf> {
        match self {
            Target::File(incoming) => incoming.commit().map_err(|r| io::Error::other(r.message)),
            Target::Spool(mut file, finish) => {
                file.rewind()?;
                finish(file)
            }
        }
    }
}

/// Where a receiver writes, shared by the candidates: the winner takes it.
pub type SharedTarget = Arc<Mutex<Option<Target>>>;

/// The receiving side of one candidate connection.
#[derive(Debug)]
pub struct ReceiveBytes {
    target: SharedTarget,
    size: u64,
    race: Race,
    mine: Option<Target>,
    won: bool,
    received: u64,
    hasher: Sha256,
    saved: Option<PathBuf>,
    progress: Option<Progress>,
}

impl ReceiveBytes {
    /// Writes the `size` offered bytes into `target` (shared by the
    /// candidates; the winner of `race` takes it).
    pub fn new(target: SharedTarget, size: u64, race: Race) -> ReceiveBytes {
        ReceiveBytes {
            target,
            size,
            race,
            mine: None,
            won: false,
            received: 0,
            hasher: Sha256::new(),
            saved: None,
            progress: None,
        }
    }

    /// Counts the bytes received in `progress` too.
    pub fn with_progress(mut self, progress: Progress) -> ReceiveBytes {
        self.progress = Some(progress);
        self
    }

    /// Where the file (or folder) was saved, once it was.
    pub fn saved(&self) -> Option<&PathBuf> {
        self.saved.as_ref()
    }

    /// Whether this candidate carried the transfer.
    pub fn won(&self) -> bool {
        self.won
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn on_connected(&mut self, transit: &mut Transit) -> io::Result<()> {
        debug_assert_eq!(transit.role(), Role::Receiver);
        let taken = self
            .target
            .lock()
            .map(|mut slot| slot.take())
            .unwrap_or(None);
        let (true, Some(mut target)) = (self.race.claim(), taken) else {
            return Err(app_error(WormholeError::Transit(
                "a second connection said go",
            )));
        };
        self.won = true;
        if let Target::File(incoming) = &mut target {
            incoming.start(0)?;
        }
        self.mine = Some(target);
        self.finish_if_whole(transit)
    }

    fn on_record(&mut self, transit: &mut Transit, record: &[u8]) -> io::Result<()> {
        let Some(target) = self.mine.as_mut() else {
            return Err(app_error(WormholeError::BadPeer(
                "a record before the connection was chosen",
            )));
        };
        if self.received + record.len() as u64 > self.size {
            return Err(app_error(WormholeError::BadPeer(
                "more bytes than the offered size",
            )));
        }
        target.write_at(self.received, record)?;
        self.hasher.update(record);
        self.received += record.len() as u64;
        if let Some(progress) = &self.progress {
            progress.store(self.received, Ordering::Relaxed);
        }
        self.finish_if_whole(transit)
    }

    /// Saves the file once all of it is there, then acknowledges it.
    fn finish_if_whole(&mut self, transit: &mut Transit) -> io::Result<()> {
        if self.received < self.size {
            return Ok(());
        }
        let Some(target) = self.mine.take() else {
            return Ok(());
        };
        self.saved = Some(target.finish()?);
        let ack = Ack {
            ack: "ok".into(),
            sha256: Some(hex::encode(self.hasher.clone().finalize())),
        };
        let record = serde_json::to_vec(&ack).expect("an acknowledgement always serialises");
        transit.send_record(&record).map_err(app_error)?;
        transit.close().map_err(app_error)
    }
}

impl App<Transit> for ReceiveBytes {
    fn on_event(
        &mut self,
        transit: &mut Transit,
        _now: Instant,
        event: TransitEvent,
    ) -> io::Result<()> {
        match event {
            TransitEvent::Connected => self.on_connected(transit),
            TransitEvent::Record(record) => self.on_record(transit, &record),
        }
    }
}
