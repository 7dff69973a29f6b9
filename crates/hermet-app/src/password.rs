//! Password hashing with argon2id. Hashing is CPU-bound, so it runs on tokio's blocking
//! threads, never on the async workers.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hermet_domain::{Error, Result};

/// argon2id cost. Defaults follow OWASP's minimum (19 MiB, 2 passes, 1 lane); tests
/// lower them. Verification reads the parameters stored in each hash, so changing them
/// only affects new hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

fn hasher(p: PasswordParams) -> Result<Argon2<'static>> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| Error::internal(anyhow::anyhow!("invalid argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

pub(crate) fn hash_blocking(p: PasswordParams, password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::internal(anyhow::anyhow!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::internal(anyhow::anyhow!("{e}")))?;
    hasher(p)?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(anyhow::anyhow!("password hashing failed: {e}")))
}

pub(crate) async fn hash(p: PasswordParams, password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(p, &password)).await.map_err(Error::internal)?
}

/// Hashes many passwords using every core (admin bulk creation).
pub(crate) async fn hash_many(p: PasswordParams, passwords: Vec<Option<String>>) -> Result<Vec<Option<String>>> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(1);
    let chunk = passwords.len().div_ceil(workers).max(1);
    let mut tasks = Vec::new();
    let mut rest = passwords;
    while !rest.is_empty() {
        let tail = rest.split_off(chunk.min(rest.len()));
        let part = std::mem::replace(&mut rest, tail);
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter().map(|pw| pw.map(|pw| hash_blocking(p, &pw)).transpose()).collect::<Result<Vec<_>>>()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.map_err(Error::internal)??);
    }
    Ok(out)
}

/// The hash of a password nobody has, made once per cost: what a sign-in for an unknown
/// account is verified against, so that it costs one verification like any other.
fn dummy_hash(p: PasswordParams) -> Result<String> {
    static MADE: std::sync::Mutex<Vec<(PasswordParams, String)>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, h)) = made.iter().find(|(q, _)| *q == p) {
        return Ok(h.clone());
    }
    let h = hash_blocking(p, "dummy-password-for-timing")?;
    made.push((p, h.clone()));
    Ok(h)
}

/// Verifies a password; `hash = None` (no password, or no such account) runs the same one
/// verification against a dummy hash and fails, so timing does not reveal which accounts
/// exist.
pub(crate) async fn verify(p: PasswordParams, password: String, hash: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let (stored, real) = match hash {
            Some(h) => (h, true),
            None => (dummy_hash(p)?, false),
        };
        let parsed =
            PasswordHash::new(&stored).map_err(|e| Error::internal(anyhow::anyhow!("stored hash unreadable: {e}")))?;
        let ok = hasher(p)?.verify_password(password.as_bytes(), &parsed).is_ok();
        Ok(ok && real)
    })
    .await
    .map_err(Error::internal)?
}
