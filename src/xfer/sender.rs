//! The sender role: its whole transition table and the driver's answers.
//!
//! Pure: it offers files, checks a resume point, hashes every chunk and
//! queues it, asking its driver (through [`SenderEvent`]s) to hash a prefix
//! or read the next chunk only when its output has room. It never touches
//! a file; it holds at most one chunk request outstanding.

use bytes::Bytes;

use super::entry::FileSpec;
use super::request::{ChunkRequest, PrefixRequest, Requests};
use crate::codec::{Frame, FrameLimits, Protocol, RejectReason};
use crate::config::{SessionLimits, TransferConfig};
use crate::error::{sanitize, ConfigError, Error, ProtocolError, UsageError};
use crate::session::{Framed, Link, Role};

/// What the sender tells its driver. Events marked "answer" carry a
/// request, to be handed back to a method of the [`Sender`](super::Sender)
/// whenever the answer is ready.
#[derive(Debug, PartialEq, Eq)]
pub enum SenderEvent {
    /// Answer: the receiver holds `len` bytes of `file`; hash the first
    /// `len` bytes of the local file and call
    /// [`prefix_hashed`](Framed::prefix_hashed).
    HashPrefix {
        /// Index of the file in the list given to [`SenderRole::new`].
        file: usize,
        /// Bytes to hash.
        len: u64,
        /// Goes back with the answer.
        request: PrefixRequest,
    },
    /// Data of `file` starts at `from` (0: from the start; more: resumed).
    Started {
        /// The file.
        file: usize,
        /// First byte sent.
        from: u64,
    },
    /// Answer: read exactly `len` bytes of `file` at `offset` and call
    /// [`push_chunk`](Framed::push_chunk).
    Read {
        /// The file.
        file: usize,
        /// Byte offset.
        offset: u64,
        /// Bytes wanted (at most `chunk_size`).
        len: usize,
        /// Goes back with the answer.
        request: ChunkRequest,
    },
    /// The receiver verified `file`, made it durable and confirmed it.
    Delivered {
        /// The file.
        file: usize,
        /// BLAKE3 of its content.
        hash: [u8; 32],
    },
    /// The receiver refused `file` (or could not save it).
    Rejected {
        /// The file.
        file: usize,
        /// Why.
        reason: RejectReason,
        /// The receiver's explanation, sanitised for display.
        message: String,
    },
}

#[derive(Debug)]
enum State {
    /// `Offer` sent for this file; waiting for `Accept` or `Reject`.
    Offered(usize),
    /// `HashPrefix` emitted; waiting for the driver's hasher.
    Checking {
        file: usize,
        have: u64,
        prefix: [u8; 32],
    },
    /// Streaming `Data`; `pending` is the outstanding `Read` request.
    Sending {
        file: usize,
        at: u64,
        pending: Option<usize>,
        hasher: Box<blake3::Hasher>,
    },
    /// `End` sent; waiting for `Saved` (or `Reject`).
    Ending { file: usize, hash: [u8; 32] },
    /// `Quit` sent.
    Done,
}

/// The sender role. Use it as [`Sender`](super::Sender).
#[derive(Debug)]
pub struct SenderRole {
    files: Vec<FileSpec>,
    state: State,
    bytes_sent: u64,
    /// The answer owed by the application, if any.
    requests: Requests,
    config: TransferConfig,
}

impl SenderRole {
    /// A sender that offers `files` in order, then ends the session,
    /// within `config` (validated by [`Framed::new`]).
    pub fn new(files: Vec<FileSpec>, config: TransferConfig) -> Self {
        SenderRole {
            files,
            state: State::Done,
            bytes_sent: 0,
            requests: Requests::default(),
            config,
        }
    }

    /// The files this sender offers.
    pub fn files(&self) -> &[FileSpec] {
        &self.files
    }

    /// File data bytes queued for the peer in this session.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// The file being offered or sent, if any.
    pub fn current(&self) -> Option<usize> {
        match self.state {
            State::Offered(file)
            | State::Checking { file, .. }
            | State::Sending { file, .. }
            | State::Ending { file, .. } => Some(file),
            State::Done => None,
        }
    }

    /// Offers file `file`, or ends the session when there is none left.
    fn offer(&mut self, link: &mut Link<SenderEvent>, file: usize) {
        self.state = match self.files.get(file) {
            Some(spec) => {
                let name = Bytes::copy_from_slice(spec.path.file_name().as_str().as_bytes());
                link.send(&Frame::Offer {
                    size: spec.size,
                    name,
                });
                State::Offered(file)
            }
            None => {
                link.send(&Frame::Quit);
                State::Done
            }
        };
    }

    fn begin(
        &mut self,
        link: &mut Link<SenderEvent>,
        file: usize,
        from: u64,
        hasher: blake3::Hasher,
    ) {
        link.send(&Frame::Begin { from });
        link.emit(SenderEvent::Started { file, from });
        self.state = State::Sending {
            file,
            at: from,
            pending: None,
            hasher: Box::new(hasher),
        };
    }

    fn size(&self, file: usize) -> u64 {
        self.files.get(file).map_or(0, |f| f.size)
    }
}

impl Role for SenderRole {
    type Event = SenderEvent;
    const PROTOCOL: Protocol = Protocol::File;

    fn start(&mut self, link: &mut Link<SenderEvent>) -> Result<(), Error> {
        self.offer(link, 0);
        Ok(())
    }

    fn on_frame(&mut self, link: &mut Link<SenderEvent>, frame: Frame) -> Result<(), Error> {
        match (&self.state, frame) {
            (&State::Offered(file), Frame::Accept { have, prefix }) => {
                if have > self.size(file) {
                    let reason = "more than the offered size";
                    return Err(ProtocolError::BadOffset {
                        offset: have,
                        reason,
                    }
                    .into());
                }
                if have == 0 {
                    self.begin(link, file, 0, blake3::Hasher::new());
                } else {
                    let request = self.requests.issue();
                    link.emit(SenderEvent::HashPrefix {
                        file,
                        len: have,
                        request,
                    });
                    self.state = State::Checking { file, have, prefix };
                }
            }
            (
                &State::Offered(file) | &State::Ending { file, .. },
                Frame::Reject { reason, message },
            ) => {
                link.emit(SenderEvent::Rejected {
                    file,
                    reason,
                    message: sanitize(&message[..message.len().min(1024)]),
                });
                self.offer(link, file + 1);
            }
            (&State::Ending { file, hash }, Frame::Saved) => {
                link.emit(SenderEvent::Delivered { file, hash });
                self.offer(link, file + 1);
            }
            (_, frame) => {
                return Err(ProtocolError::UnexpectedFrame {
                    state: self.state_name(),
                    frame: frame.name(),
                }
                .into())
            }
        }
        Ok(())
    }

    fn on_writable(&mut self, link: &mut Link<SenderEvent>) {
        let chunk = self.config.chunk_size as u64;
        let State::Sending {
            file,
            at,
            pending: pending @ None,
            hasher,
        } = &mut self.state
        else {
            return;
        };
        let size = self.files.get(*file).map_or(0, |f| f.size);
        if *at < size {
            let len = chunk.min(size - *at) as usize;
            *pending = Some(len);
            let request = self.requests.issue();
            link.emit(SenderEvent::Read {
                file: *file,
                offset: *at,
                len,
                request,
            });
        } else {
            let hash = *hasher.finalize().as_bytes();
            let spec = &self.files[*file];
            let offer = super::offer_digest(spec.size, spec.path.file_name().as_str().as_bytes());
            link.send(&Frame::End { hash, offer });
            self.state = State::Ending { file: *file, hash };
        }
    }

    fn awaits_app(&self) -> bool {
        matches!(self.state, State::Checking { .. })
    }

    fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::Offered(_) => "waiting for Accept",
            State::Checking { .. } => "checking a resume prefix",
            State::Sending { .. } => "sending file data",
            State::Ending { .. } => "waiting for Saved",
            State::Done => "finished",
        }
    }

    fn frame_limits(&self, session: &SessionLimits) -> Result<FrameLimits, ConfigError> {
        super::frame_limits(&self.config, session)
    }
}

fn wrong_state(call: &'static str, role: &SenderRole) -> Error {
    UsageError::WrongState {
        call,
        state: role.state_name(),
    }
    .into()
}

impl Framed<SenderRole> {
    /// Answers [`SenderEvent::HashPrefix`]: `hasher` has hashed the first
    /// `bytes_hashed` bytes of the local file. If they are the bytes the
    /// receiver holds, sending resumes after them; otherwise it restarts from 0.
    pub fn prefix_hashed(
        &mut self,
        request: PrefixRequest,
        hasher: blake3::Hasher,
        bytes_hashed: u64,
    ) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            let State::Checking { file, have, prefix } = role.state else {
                return Err(wrong_state("prefix_hashed", role));
            };
            let same = bytes_hashed == have
                && hasher.count() == have
                && *hasher.finalize().as_bytes() == prefix;
            if same {
                role.begin(link, file, have, hasher);
            } else {
                role.begin(link, file, 0, blake3::Hasher::new());
            }
            Ok(())
        })
    }

    /// Answers [`SenderEvent::Read`] with the bytes read. Anything but
    /// exactly the length asked for is refused with
    /// [`Error::SourceChanged`] (the file changed under the sender: the
    /// application's failure, not a misuse);
    /// the session is left as it was (and `request` spent: the application
    /// gives up on the session, as a source that changed leaves nothing to
    /// send).
    pub fn push_chunk(&mut self, request: ChunkRequest, chunk: Bytes) -> Result<(), Error> {
        self.command(|role, link| {
            role.requests.answer(request)?;
            let State::Sending {
                at,
                pending,
                hasher,
                ..
            } = &mut role.state
            else {
                return Err(wrong_state("push_chunk", role));
            };
            match *pending {
                None => return Err(wrong_state("push_chunk", role)),
                Some(len) if len != chunk.len() => {
                    return Err(Error::SourceChanged("chunk length differs"))
                }
                Some(_) => {}
            }
            hasher.update(&chunk);
            *at += chunk.len() as u64;
            *pending = None;
            role.bytes_sent += chunk.len() as u64;
            link.send(&Frame::Data(chunk));
            Ok(())
        })
    }
}
