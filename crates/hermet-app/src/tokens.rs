//! Access tokens (HS256 JWTs naming user and session) and refresh tokens (random
//! secrets stored as SHA-256 hashes).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hermet_domain::id::{SessionId, UserId};
use hermet_domain::{Error, Result};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const ISSUER: &str = "hermet";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    iat: u64,
    exp: u64,
    iss: String,
}

pub(crate) struct AuthKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub(crate) access_ttl_secs: u64,
}

impl AuthKeys {
    pub(crate) fn new(secret: &[u8], access_ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl_secs,
        }
    }

    pub(crate) fn access_token(&self, user: UserId, session: SessionId, now_ms: i64) -> Result<String> {
        let iat = (now_ms / 1000) as u64;
        let claims = Claims {
            sub: user.to_string(),
            sid: session.to_string(),
            iat,
            exp: iat + self.access_ttl_secs,
            iss: ISSUER.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::internal(anyhow::anyhow!("cannot sign access token: {e}")))
    }

    /// Checks signature, issuer and expiry; returns (user, session).
    pub(crate) fn verify(&self, token: &str) -> Result<(UserId, SessionId)> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Error::invalid_token())?;
        let user = data.claims.sub.parse().map_err(|_| Error::invalid_token())?;
        let session = data.claims.sid.parse().map_err(|_| Error::invalid_token())?;
        Ok((user, session))
    }
}

/// `bytes` random bytes, base64url without padding.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // getrandom fails only on platforms without an entropy source, which we do not run on;
    // a zeroed buffer would be unsafe, so treat failure as fatal for this token.
    if getrandom::fill(&mut buf).is_err() {
        buf.clear();
    }
    URL_SAFE_NO_PAD.encode(&buf)
}

pub(crate) fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh refresh token and its stored hash.
pub(crate) fn new_refresh_token() -> Result<(String, String)> {
    let token = random_token(32);
    if token.is_empty() {
        return Err(Error::internal(anyhow::anyhow!("no randomness available")));
    }
    let hash = hash_refresh_token(&token);
    Ok((token, hash))
}
