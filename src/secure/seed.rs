//! Session seeds from the operating system (feature `os-rng`).

/// Bytes in a session seed.
pub const SEED_LEN: usize = 32;

/// A fresh session seed from the operating system's CSPRNG (through the
/// `getrandom` crate: `getrandom(2)` on Linux, the platform's equivalent
/// elsewhere): what [`Secure::client`](super::Secure::client)
/// and [`Secure::server`](super::Secure::server) take as `seed`. Call it
/// once per session; never reuse a seed.
///
/// Available with the `os-rng` feature (the `cli` feature, on by default,
/// enables it). Without it, pass 32 bytes from a CSPRNG of your own.
///
/// # Errors
///
/// [`SeedError`] when the operating system cannot give randomness (rare:
/// a sandbox that forbids the call, or a system whose generator is not
/// initialised yet and cannot wait). There is no fallback: a session with
/// a guessable seed would leak the code to an eavesdropper, so one that
/// cannot be seeded must not start.
///
/// ```
/// # use std::time::Instant;
/// # use echoxfer::echo::{Client, ClientRole};
/// # use echoxfer::{EchoConfig, SessionLimits};
/// use echoxfer::secure::{normalize_code, os_seed, Secure, SecureConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let now = Instant::now();
/// # let client = Client::new(ClientRole::new(EchoConfig::default()), SessionLimits::default(), now);
/// let code = normalize_code(" 7-Crossover-Clockwork ")?;
/// let secure = Secure::client(client, code.as_bytes(), SecureConfig::default(), now, os_seed()?);
/// # let _ = secure;
/// # Ok(())
/// # }
/// ```
pub fn os_seed() -> Result<[u8; SEED_LEN], SeedError> {
    let mut seed = [0u8; SEED_LEN];
    getrandom::fill(&mut seed).map_err(SeedError)?;
    Ok(seed)
}

/// The operating system's random number generator could not be read (see
/// [`os_seed`]). Its message includes the operating system's own (an
/// `errno` on Unix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the operating system's random number generator: {0}")]
pub struct SeedError(getrandom::Error);
