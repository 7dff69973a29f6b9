//! The storage ports. Reads that need no transaction are methods of [`Database`]
//! (served by a read pool or replica); every write goes through a [`Transaction`].

use std::future::Future;

use hermet_domain::event::OutboxEvent;
use hermet_domain::id::{SessionId, UserId};
use hermet_domain::user::{Account, NewUser, User, UserStatus};

use crate::{MigrationReport, StoreError};

pub type StoreResult<T> = Result<T, StoreError>;

/// A connection pool to one database, cloned cheaply into every handler.
pub trait Database: UserReads + SessionReads + Clone + Send + Sync + 'static {
    type Tx: Transaction;

    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;
    /// Applies pending migrations; a no-op when the schema is up to date.
    fn migrate(&self) -> impl Future<Output = StoreResult<MigrationReport>> + Send;
    /// One round trip to the database (readiness probe).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    fn pool_status(&self) -> Vec<PoolStatus>;
    /// Closes the pools: waiting and future requests fail, open connections close.
    fn close(&self);
    /// Returns the secret stored under `name`, storing `candidate` first if there is
    /// none (the first node to start wins; all nodes then agree).
    fn server_secret(&self, name: &str, candidate: String) -> impl Future<Output = StoreResult<String>> + Send;
}

/// A database transaction. Commit makes every write visible at once; dropping it
/// without commit rolls everything back.
pub trait Transaction: UserWrites + SessionWrites + OutboxWrites + Send {
    fn commit(self) -> impl Future<Output = StoreResult<()>> + Send;
}

#[derive(Debug, Clone)]
pub struct PoolStatus {
    pub pool: &'static str,
    pub size: usize,
    pub available: usize,
    pub max_size: usize,
    pub waiting: usize,
}

// ───────────────────────────── users ─────────────────────────────

/// A user search: exact e-mail or mobile, or a nickname prefix; live users only.
#[derive(Debug, Clone)]
pub struct UserSearch {
    pub email: Option<String>,
    pub mobile: Option<String>,
    /// Lower-cased nickname prefix (see `hermet_domain::user::search_key`).
    pub prefix: String,
    /// Keyset position: the (search name, id) of the last row of the previous page.
    pub after: Option<(String, i64)>,
    pub limit: u32,
}

pub trait UserReads {
    fn user_by_id(&self, id: UserId) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    /// The user holding a live account and their password hash (`None` when the account
    /// cannot sign in with a password).
    fn user_by_account(
        &self,
        account: &Account,
    ) -> impl Future<Output = StoreResult<Option<(User, Option<String>)>>> + Send;
    fn search_users(&self, q: &UserSearch) -> impl Future<Output = StoreResult<Vec<(String, User)>>> + Send;
}

pub trait UserWrites {
    /// Inserts users in one set-based statement. A taken account fails with a unique
    /// violation of `users_email_live` or `users_mobile_live`.
    fn insert_users(&mut self, users: &[NewUser]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads a user and locks the row until commit.
    fn lock_user(&mut self, id: UserId) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    /// Writes the profile fields, `profile_ver` and `updated_at` of `user`.
    fn update_profile(&mut self, user: &User) -> impl Future<Output = StoreResult<()>> + Send;
    fn set_user_status(
        &mut self,
        id: UserId,
        status: UserStatus,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

// ───────────────────────────── sessions ─────────────────────────────

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

// ───────────────────────────── outbox ─────────────────────────────

pub trait OutboxWrites {
    /// Appends events to the outbox in the current transaction.
    fn append_events(&mut self, events: &[OutboxEvent]) -> impl Future<Output = StoreResult<()>> + Send;
}
