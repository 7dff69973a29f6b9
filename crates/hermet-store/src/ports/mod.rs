//! The storage ports, one module per domain. Reads that need no transaction are
//! methods of [`Database`] (served by a read pool or replica); every write goes through
//! a [`Transaction`].

mod channels;
mod consistency;
mod contacts;
mod conversations;
mod locks;
mod messages;
mod outbox;
mod pipeline;
mod projection;
mod realtime;
mod sessions;
mod users;

use std::future::Future;

use hermet_domain::id::{ChannelId, SessionId, UserId};

pub use channels::*;
pub use consistency::*;
pub use contacts::*;
pub use conversations::*;
pub use locks::*;
pub use messages::*;
pub use outbox::*;
pub use pipeline::*;
pub use projection::*;
pub use realtime::*;
pub use sessions::*;
pub use users::*;

use crate::{MigrationReport, StoreError};

pub type StoreResult<T> = Result<T, StoreError>;

/// A connection pool to one database, cloned cheaply into every handler.
pub trait Database:
    UserReads
    + SessionReads
    + ChannelReads
    + MessageReads
    + ContactReads
    + ConversationReads
    + ConsistencyReads
    + EventLog
    + PipelineReads
    + InboxReads
    + Clone
    + Send
    + Sync
    + 'static
{
    type Tx: Transaction;

    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;
    /// Applies pending migrations; a no-op when the schema is up to date.
    fn migrate(&self) -> impl Future<Output = StoreResult<MigrationReport>> + Send;
    /// One round trip to the database (readiness probe).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// One round trip outside the pools (the health watchdog): answers even when every
    /// pooled connection is busy, so only a database that does not answer fails it.
    /// By default, [`Database::ping`].
    fn probe(&self) -> impl Future<Output = StoreResult<()>> + Send {
        self.ping()
    }
    fn pool_status(&self) -> Vec<PoolStatus>;
    /// Closes the pools: waiting and future requests fail, open connections close.
    fn close(&self);
    /// Returns the secret stored under `name`, storing `candidate` first if there is
    /// none (the first node to start wins; all nodes then agree).
    fn server_secret(&self, name: &str, candidate: String) -> impl Future<Output = StoreResult<String>> + Send;
}

/// A database transaction. Commit makes every write visible at once; dropping it
/// without commit rolls everything back.
pub trait Transaction:
    UserWrites
    + SessionWrites
    + OutboxWrites
    + Locks
    + ChannelWrites
    + MessageWrites
    + ConversationWrites
    + ContactWrites
    + ProjectionWrites
    + OffsetWrites
    + PipelineWrites
    + InboxWrites
    + Send
{
    /// Commits; returns the log cursor of the last event this transaction appended to the
    /// outbox, if any (so the caller can wait for its projection).
    fn commit(self) -> impl Future<Output = StoreResult<Option<LogCursor>>> + Send;
    /// What this transaction changed that read caches may hold: filled as it writes,
    /// taken by the caller before commit and invalidated after it.
    fn touched(&mut self) -> &mut Touched;
}

/// Owners and keys whose cached reads a transaction made stale (`hermet_app::cache`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Owners of conversation rows written (or whose computed rows changed).
    pub list_owners: Vec<UserId>,
    /// Channels whose members' computed rows changed (large groups) or were refreshed.
    pub channels: Vec<ChannelId>,
    /// Sessions revoked or rotated.
    pub sessions: Vec<SessionId>,
    /// Users whose status or accounts changed.
    pub accounts: Vec<UserId>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        *self == Touched::default()
    }
}

#[derive(Debug, Clone)]
pub struct PoolStatus {
    pub pool: &'static str,
    pub size: usize,
    pub available: usize,
    pub max_size: usize,
    pub waiting: usize,
}
