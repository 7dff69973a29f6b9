//! Storage ports (traits, one per aggregate and read model) and one driver per
//! database: [`postgres`] (tokio-postgres + deadpool) and [`sqlite`] (rusqlite +
//! deadpool). The backend is chosen once at start-up; application code is generic over
//! [`Database`] and monomorphized per backend, so no query goes through a `dyn` call.
//!
//! A command opens one [`Transaction`], passes it down to every write it makes (write
//! side, read models, reverse indexes, outbox) and commits once. Dropping an
//! uncommitted transaction rolls it back.

pub mod error;
pub mod migrations;
pub mod ports;
pub mod postgres;
mod queries;
mod refresh;
mod rows;
pub mod sqlite;
pub mod views;

pub use error::StoreError;
pub use ports::*;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// Pool settings shared by both drivers (connection pool, `000_70dd81066eae5b2b.txt` §4.1);
/// also the configuration's `[database]` section.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// Most connections the pool opens (PostgreSQL write pool; SQLite readers); the
    /// design document's `max_open_conns`.
    pub max_connections: usize,
    /// How long a request waits for a free connection before failing with 503.
    pub acquire_timeout_ms: u64,
    /// Server-side statement timeout (PostgreSQL), busy timeout (SQLite).
    pub statement_timeout_ms: u64,
    /// Connections older than this are closed and replaced (`conn_max_lifetime`).
    pub max_lifetime_secs: u64,
    /// SQLite `synchronous` pragma: FULL by default (no acknowledged write is lost on
    /// power failure); NORMAL trades that for speed.
    pub sqlite_synchronous: String,
    /// PostgreSQL: keep each connection's prepared statements (one Parse per statement
    /// and connection) or prepare them for every use (a round trip more each; for a
    /// pooler that cannot carry prepared statements across server connections).
    pub statement_cache: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            max_lifetime_secs: 3_600,
            sqlite_synchronous: "FULL".into(),
            statement_cache: true,
        }
    }
}

impl PoolSettings {
    /// Both pools' check before they reuse a connection, given how long it has been
    /// open: one older than `max_lifetime_secs` is closed instead (the error says why).
    pub(crate) fn reusable(&self) -> impl Fn(std::time::Duration) -> Result<(), &'static str> + Send + Sync + 'static {
        let lifetime = std::time::Duration::from_secs(self.max_lifetime_secs);
        move |age| if age > lifetime { Err("connection reached its maximum lifetime") } else { Ok(()) }
    }
}

/// What `migrate` did.
#[derive(Debug, Clone, Default)]
pub struct MigrationReport {
    /// Names of the migrations applied by this run (empty when up to date).
    pub applied: Vec<String>,
}

/// The highest seq of `messages` per `key` (a channel's new `last_seq`, a sender's read
/// position), in key order.
pub(crate) fn last_seqs<K: Ord>(
    messages: &[hermet_domain::message::Message],
    key: impl Fn(&hermet_domain::message::Message) -> K,
) -> Vec<(K, i64)> {
    let mut last = std::collections::BTreeMap::new();
    for m in messages {
        let s = last.entry(key(m)).or_insert(m.seq);
        *s = (*s).max(m.seq);
    }
    last.into_iter().collect()
}
