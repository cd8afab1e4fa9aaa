//! [`Channel`]: a machine behind the secure channel or plain, chosen at
//! run time.

use std::borrow::{Borrow, BorrowMut};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Handshake, Secure, SecureConfig, Side};
use crate::error::Error;
use crate::machine::{Machine, Output, StreamMachine};

/// A stream machine `M` behind the secure channel, or plain: one type for
/// a program that decides at run time whether a session is encrypted (the
/// `echoxfer` binary runs every native session in one). It is a
/// [`StreamMachine`] with `M`'s events, like [`Secure<M>`], and the apps
/// of this crate take it wherever they take `M`.
///
/// A secure side only talks to a secure peer with the same secret, a plain
/// side only to a plain one; each tells the other what is wrong
/// ([`SecureError::PeerIsPlaintext`](crate::SecureError::PeerIsPlaintext),
/// [`CodecError::PeerExpectsEncryption`](crate::error::CodecError::PeerExpectsEncryption)).
///
/// Answer `M`'s requests on the channel itself: it dereferences to `M`
/// (see [`Secure`]'s docs for how method names resolve).
///
/// ```
/// use std::time::Instant;
/// use echoxfer::echo::{self, ClientRole};
/// use echoxfer::secure::{normalize_code, Channel, SecureConfig, Side};
/// use echoxfer::{EchoConfig, SessionLimits};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let now = Instant::now();
/// let client = echo::Client::new(ClientRole::new(EchoConfig::default()), SessionLimits::default(), now);
/// // `None` for a plaintext session; the seed is then unused.
/// let code = normalize_code("7-crossover-clockwork")?;
/// let seed = [7u8; 32]; // `secure::os_seed()?` outside tests
/// let mut channel =
///     Channel::new(Side::Client, client, Some(code.as_bytes()), SecureConfig::default(), now, seed);
/// assert!(channel.is_secure());
/// channel.send(&b"hello"[..])?; // `echo::Client::send`, through `Deref`
/// # Ok(())
/// # }
/// ```
// One per session, and nearly always `Secure`: boxing it would only add an
// indirection to every call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Channel<M> {
    /// The machine's bytes as they are: no authentication, no encryption.
    Plain(M),
    /// Authenticated by the shared secret and encrypted.
    Secure(Secure<M>),
}

impl<M: StreamMachine> Channel<M> {
    /// `inner` on `side`: behind the secure channel keyed by `secret`
    /// (as [`Secure::new`] takes it: a code through
    /// [`normalize_code`](super::normalize_code), a secret file through
    /// [`secret_file_password`](super::secret_file_password)), seeded by
    /// `seed` (32 bytes from a CSPRNG, fresh for every session); or plain
    /// when `secret` is `None` (then `config` and `seed` are unused). An
    /// invalid `config` or an empty secret fails the machine at once with
    /// [`UsageError::BadConfig`](crate::UsageError::BadConfig), as
    /// [`Secure::new`] does.
    pub fn new(
        side: Side,
        inner: M,
        secret: Option<&[u8]>,
        config: SecureConfig,
        now: Instant,
        seed: [u8; 32],
    ) -> Self {
        match secret {
            Some(secret) => Channel::Secure(Secure::new(side, inner, secret, config, now, seed)),
            None => Channel::Plain(inner),
        }
    }

    /// `inner` on the side that opened the connection, seeded from the
    /// operating system ([`os_seed`](super::os_seed)) when `secret` is
    /// given; see [`new`](Self::new). Feature `os-rng`.
    ///
    /// # Errors
    ///
    /// [`SeedError`](super::SeedError) when the operating system's random
    /// number generator cannot be read (only asked for a secure channel):
    /// the session must not start.
    #[cfg(feature = "os-rng")]
    pub fn client(
        inner: M,
        secret: Option<&[u8]>,
        config: SecureConfig,
        now: Instant,
    ) -> Result<Self, super::SeedError> {
        Self::os_seeded(Side::Client, inner, secret, config, now)
    }

    /// `inner` on the side that accepted the connection; see
    /// [`client`](Self::client). Feature `os-rng`.
    ///
    /// # Errors
    ///
    /// As [`client`](Self::client).
    #[cfg(feature = "os-rng")]
    pub fn server(
        inner: M,
        secret: Option<&[u8]>,
        config: SecureConfig,
        now: Instant,
    ) -> Result<Self, super::SeedError> {
        Self::os_seeded(Side::Server, inner, secret, config, now)
    }

    #[cfg(feature = "os-rng")]
    fn os_seeded(
        side: Side,
        inner: M,
        secret: Option<&[u8]>,
        config: SecureConfig,
        now: Instant,
    ) -> Result<Self, super::SeedError> {
        // A plaintext session needs no randomness: it cannot fail for want of it.
        let seed = match secret {
            Some(_) => super::os_seed()?,
            None => [0; 32],
        };
        Ok(Self::new(side, inner, secret, config, now, seed))
    }

    /// How far the peer got in the secure handshake ([`Secure::handshake`]);
    /// `None` for a plaintext session, where no secret is involved.
    pub fn handshake(&self) -> Option<Handshake> {
        match self {
            Channel::Plain(_) => None,
            Channel::Secure(m) => Some(m.handshake()),
        }
    }
}

impl<M> Channel<M> {
    /// Whether the session runs behind the secure channel.
    pub fn is_secure(&self) -> bool {
        matches!(self, Channel::Secure(_))
    }

    /// The wrapped machine.
    pub fn inner(&self) -> &M {
        match self {
            Channel::Plain(m) => m,
            Channel::Secure(m) => m.borrow(),
        }
    }

    /// The wrapped machine, for its commands and answers.
    pub fn inner_mut(&mut self) -> &mut M {
        match self {
            Channel::Plain(m) => m,
            Channel::Secure(m) => m.borrow_mut(),
        }
    }
}

impl<M: StreamMachine> Machine for Channel<M> {
    type Transmit = Bytes;
    type Event = M::Event;

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Channel::Plain(m) => m.handle_timeout(now),
            Channel::Secure(m) => m.handle_timeout(now),
        }
    }

    fn poll_output(&mut self) -> Output<Bytes, M::Event> {
        match self {
            Channel::Plain(m) => m.poll_output(),
            Channel::Secure(m) => m.poll_output(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Channel::Plain(m) => m.poll_timeout(),
            Channel::Secure(m) => m.poll_timeout(),
        }
    }
}

impl<M: StreamMachine> StreamMachine for Channel<M> {
    fn input_buffer(&mut self, max: usize) -> &mut [u8] {
        match self {
            Channel::Plain(m) => m.input_buffer(max),
            Channel::Secure(m) => m.input_buffer(max),
        }
    }

    fn commit_input(&mut self, now: Instant, n: usize) -> Result<(), Error> {
        match self {
            Channel::Plain(m) => m.commit_input(now, n),
            Channel::Secure(m) => m.commit_input(now, n),
        }
    }

    fn handle_eof(&mut self, now: Instant) {
        match self {
            Channel::Plain(m) => m.handle_eof(now),
            Channel::Secure(m) => m.handle_eof(now),
        }
    }

    fn abort(&mut self, reason: String) {
        match self {
            Channel::Plain(m) => m.abort(reason),
            Channel::Secure(m) => m.abort(reason),
        }
    }

    fn input_room(&self) -> usize {
        match self {
            Channel::Plain(m) => m.input_room(),
            Channel::Secure(m) => m.input_room(),
        }
    }

    fn write_timeout(&self) -> Option<Duration> {
        match self {
            Channel::Plain(m) => m.write_timeout(),
            Channel::Secure(m) => m.write_timeout(),
        }
    }

    /// A secure session's verdict ([`Secure`]'s `failed_guess`); a
    /// plaintext session never spends a guess.
    fn failed_guess(&self) -> bool {
        match self {
            Channel::Plain(_) => false,
            Channel::Secure(m) => m.failed_guess(),
        }
    }
}

impl<M> From<Secure<M>> for Channel<M> {
    fn from(secure: Secure<M>) -> Self {
        Channel::Secure(secure)
    }
}

impl<M> Deref for Channel<M> {
    type Target = M;

    fn deref(&self) -> &M {
        self.inner()
    }
}

impl<M> DerefMut for Channel<M> {
    fn deref_mut(&mut self) -> &mut M {
        self.inner_mut()
    }
}

impl<M> Borrow<M> for Channel<M> {
    fn borrow(&self) -> &M {
        self.inner()
    }
}

impl<M> BorrowMut<M> for Channel<M> {
    fn borrow_mut(&mut self) -> &mut M {
        self.inner_mut()
    }
}
