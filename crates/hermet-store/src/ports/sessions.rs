//! Sessions and refresh tokens.

use std::future::Future;

use hermet_domain::id::{SessionId, UserId};
use hermet_domain::user::UserStatus;

use super::StoreResult;

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: i64,
    pub expires_at: i64,
    pub user_agent: String,
    pub refresh_hash: String,
}

/// What authenticating a request needs to know, in one read.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub session_revoked: bool,
    pub session_expires_at: i64,
    pub user_status: UserStatus,
    pub email: Option<String>,
    pub mobile: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub rotated_at: Option<i64>,
    pub session_revoked: bool,
    pub session_expires_at: i64,
    pub user_status: UserStatus,
}

pub trait SessionReads {
    fn auth_context(&self, session: SessionId) -> impl Future<Output = StoreResult<Option<AuthContext>>> + Send;
}

pub trait SessionWrites {
    fn insert_sessions(&mut self, sessions: &[NewSession]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Finds a refresh token by hash and locks its session row until commit.
    fn lock_refresh_token(
        &mut self,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<RefreshTokenRecord>>> + Send;
    /// Marks `old_hash` rotated, records `new_hash` as the session's live token and
    /// moves the session's expiry to `expires_at` (sliding expiry).
    fn rotate_refresh_token(
        &mut self,
        session: SessionId,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn revoke_session(
        &mut self,
        session: SessionId,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Revokes every live session of a user; returns how many.
    fn revoke_user_sessions(
        &mut self,
        user: UserId,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}
