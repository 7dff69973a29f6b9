//! Read caches (docs/ARCHITECTURE.md "Read caches"): the first page of a user's
//! conversation list with its total unread (kept by `conversations.rs`), the
//! session check every authenticated request makes, and channels' immutable facts; and
//! the generations that say when an entry is stale.
//!
//! **Never older than an acknowledged write.** An entry is valid only while the
//! *generations* of the scopes it was read under are unchanged. A command bumps the
//! generations of what it changed right after its transaction commits and before it
//! answers (an asynchronous projector, after its batch commits and before it reports
//! the position that read-your-writes waits for). A reader takes the generations
//! *before* it reads the database and stores them with what it read. So an entry filled
//! from a snapshot older than some commit always carries a generation older than that
//! commit's bump, and the next lookup misses. Generations only ever increase.
//!
//! Scopes:
//! - [`Scope::Lists`]`(u)`: u's stored conversation rows changed (the refresh reports
//!   the owners of the rows it rewrote) or u's read position, settings or membership did.
//! - [`Scope::Channel`]`(c)`: what every member's row of `c` is computed from at read
//!   time changed: a large group's message (read diffusion stores nothing per member),
//!   or any refresh of the channel. A list entry depends on the channels of the user's
//!   large groups (a set that itself changes only with a `Lists` bump).
//! - [`Scope::Session`] and [`Scope::Account`]: revocation, rotation, status, accounts.
//!
//! **Where generations live.** [`LocalGenerations`]: striped counters in this process,
//! for one process that runs every role (the embedded default). With Redis
//! (`hermet-redis`), in Redis, so every node and every separate projector process
//! invalidates every node's entries; a lookup is then one `MGET`. Striping (a fixed hash
//! of the scope onto 65,536 counters) bounds memory; a collision only costs a miss.
//! If generations cannot be read, the cache is bypassed.
//!
//! Entries themselves stay in the process (bounded, with a maximum age as a backstop
//! should a bump ever fail).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hermet_domain::channel::ChannelType;
use hermet_domain::id::{ChannelId, SessionId, UserId};
use hermet_domain::{Error, Result};
use hermet_store::{AuthContext, Database};
use serde::{Deserialize, Serialize};

use crate::App;
use crate::push::BoxFuture;

/// What a cached value depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Lists(UserId),
    Channel(ChannelId),
    Session(SessionId),
    Account(UserId),
}

/// Channel kinds kept (a few MB).
const KINDS: usize = 65_536;

/// Number of generation counters (a power of two).
pub const STRIPES: u64 = 1 << 16;

impl Scope {
    /// The counter this scope maps to: a fixed hash, the same on every node.
    pub fn stripe(self) -> u64 {
        let (kind, id) = match self {
            Scope::Lists(u) => (1u64, u.get() as u64),
            Scope::Channel(c) => (2, c.get() as u64),
            Scope::Session(s) => (3, s.get() as u64),
            Scope::Account(u) => (4, u.get() as u64),
        };
        // splitmix64 finaliser over (kind, id): ids are time-ordered, so mix well.
        let mut z = id ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) & (STRIPES - 1)
    }
}

/// Where generations are kept.
pub trait Coherence: Send + Sync + 'static {
    /// The current generations: an epoch (0 where there is none), then one per scope.
    /// `None`: unknown now, bypass the cache.
    fn generations<'a>(&'a self, scopes: &'a [Scope]) -> BoxFuture<'a, Option<Vec<u64>>>;
    /// Moves the generations of `scopes` forward.
    fn bump<'a>(&'a self, scopes: &'a [Scope]) -> BoxFuture<'a, ()>;
}

/// Generations in this process.
pub struct LocalGenerations {
    stripes: Box<[AtomicU64]>,
}

impl Default for LocalGenerations {
    fn default() -> Self {
        Self { stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl LocalGenerations {
    fn read(&self, scopes: &[Scope]) -> Vec<u64> {
        std::iter::once(0)
            .chain(scopes.iter().map(|s| self.stripes[s.stripe() as usize].load(Ordering::Acquire)))
            .collect()
    }
}

impl Coherence for LocalGenerations {
    fn generations<'a>(&'a self, scopes: &'a [Scope]) -> BoxFuture<'a, Option<Vec<u64>>> {
        let g = self.read(scopes);
        Box::pin(async move { Some(g) })
    }

    fn bump<'a>(&'a self, scopes: &'a [Scope]) -> BoxFuture<'a, ()> {
        for s in scopes {
            self.stripes[s.stripe() as usize].fetch_add(1, Ordering::AcqRel);
        }
        Box::pin(async {})
    }
}

/// The `[cache]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// `auto`: Redis generations when `redis_url` is set; in-process ones on SQLite when
    /// this process also runs the projectors (or in dual-write mode); off otherwise (on
    /// PostgreSQL without Redis other nodes could not invalidate this one) and always
    /// with a read replica. `local`: one process runs every role that writes. `redis`.
    /// `off`.
    pub mode: CacheMode,
    /// Most conversation-list pages kept (each up to `limit` rows).
    pub max_lists: usize,
    /// Most sessions kept.
    pub max_sessions: usize,
    /// Backstop: an entry older than this is read again even if nothing invalidated it.
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    Auto,
    Local,
    Redis,
    Off,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { mode: CacheMode::Auto, max_lists: 100_000, max_sessions: 100_000, max_age_secs: 300 }
    }
}

pub(crate) struct AuthEntry {
    pub generations: Vec<u64>,
    pub ctx: AuthContext,
    pub at: Instant,
}

/// The caches of one process.
pub struct Cache {
    coherence: Option<Arc<dyn Coherence>>,
    /// Capacity of the conversation-list cache (kept by `conversations.rs`).
    max_lists: usize,
    pub(crate) sessions: quick_cache::sync::Cache<SessionId, Arc<AuthEntry>>,
    /// Channels' immutable facts (kept in every mode: nothing ever changes them).
    kinds: quick_cache::sync::Cache<ChannelId, ChannelKind>,
    max_age: Duration,
}

/// What never changes about a channel: its type and, for a one-to-one chat, its pair.
/// A send reads it before its transaction to know what to lock, in order.
#[derive(Debug, Clone)]
pub struct ChannelKind {
    pub channel_type: ChannelType,
    single_pair: Option<Arc<str>>,
}

impl ChannelKind {
    /// The other member of a one-to-one chat that `user` is in.
    pub fn peer_of(&self, user: UserId) -> Option<UserId> {
        let (a, b) = self.single_pair.as_deref()?.split_once(':')?;
        let (a, b): (i64, i64) = (a.parse().ok()?, b.parse().ok()?);
        match user.get() {
            u if u == a => Some(UserId(b)),
            u if u == b => Some(UserId(a)),
            _ => None,
        }
    }
}

impl Cache {
    /// No caching: every read goes to the database.
    pub fn disabled() -> Self {
        Self::build(None, &CacheSettings::default())
    }

    pub fn new(coherence: Arc<dyn Coherence>, settings: &CacheSettings) -> Self {
        Self::build(Some(coherence), settings)
    }

    fn build(coherence: Option<Arc<dyn Coherence>>, s: &CacheSettings) -> Self {
        Self {
            coherence,
            max_lists: s.max_lists.max(1),
            sessions: quick_cache::sync::Cache::new(s.max_sessions.max(1)),
            kinds: quick_cache::sync::Cache::new(KINDS),
            max_age: Duration::from_secs(s.max_age_secs),
        }
    }

    /// Most conversation-list pages kept.
    pub(crate) fn max_lists(&self) -> usize {
        self.max_lists
    }

    pub fn enabled(&self) -> bool {
        self.coherence.is_some()
    }

    /// Current generations of `scopes`; `None` when disabled or unknown.
    pub(crate) async fn generations(&self, scopes: &[Scope]) -> Option<Vec<u64>> {
        self.coherence.as_ref()?.generations(scopes).await
    }

    pub(crate) fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.max_age
    }

    /// After a commit: every entry read under these scopes is stale.
    pub async fn invalidate(&self, scopes: &[Scope]) {
        if let Some(c) = &self.coherence
            && !scopes.is_empty()
        {
            c.bump(scopes).await;
        }
    }
}

/// Counts `cache_requests_total{cache, result}` (hit, miss, bypass).
pub(crate) fn count(cache: &'static str, result: &'static str) {
    metrics::counter!("cache_requests_total", "cache" => cache, "result" => result).increment(1);
}

impl<D: Database> App<D> {
    /// A channel's type and pair, read once per process.
    pub(crate) async fn channel_kind(&self, id: ChannelId) -> Result<ChannelKind> {
        if let Some(k) = self.cache.kinds.get(&id) {
            return Ok(k);
        }
        let c = self.db.channel(id).await?.ok_or(Error::NotFound("channel"))?;
        let kind = ChannelKind { channel_type: c.channel_type, single_pair: c.single_pair.map(Arc::from) };
        self.cache.kinds.insert(id, kind.clone());
        Ok(kind)
    }

    /// The session check of every authenticated request, cached per session. The same
    /// lookup reads the generation of the user's lists (returned: [epoch, generation]),
    /// so a list read in this request needs no second one.
    pub(crate) async fn auth_context(
        &self,
        user: UserId,
        session: SessionId,
    ) -> Result<(Option<AuthContext>, Option<[u64; 2]>)> {
        let scopes = [Scope::Session(session), Scope::Account(user), Scope::Lists(user)];
        let Some(mut generations) = self.cache.generations(&scopes).await else {
            if self.cache.enabled() {
                count("sessions", "bypass");
            }
            return Ok((self.db.auth_context(session).await?, None));
        };
        let lists = generations.pop().map(|g| [generations[0], g]);
        if let Some(e) = self.cache.sessions.get(&session)
            && e.generations == generations
            && self.cache.fresh(e.at)
        {
            count("sessions", "hit");
            return Ok((Some(e.ctx.clone()), lists));
        }
        count("sessions", "miss");
        let ctx = self.db.auth_context(session).await?;
        if let Some(c) = &ctx {
            let entry = AuthEntry { generations, ctx: c.clone(), at: Instant::now() };
            self.cache.sessions.insert(session, Arc::new(entry));
        }
        Ok((ctx, lists))
    }
}
