//! Application services: the command and query handlers of hermet, generic over the
//! storage port [`Database`] so each runs unchanged on SQLite and PostgreSQL.
//!
//! A command validates its input before opening a transaction, does every write of the
//! change (write side, read models, outbox) through one transaction, and commits once.

pub mod admin;
pub mod auth;
pub mod cache;
pub mod channels;
mod commit;
pub mod consistency;
pub mod contacts;
pub mod conversations;
pub mod gateway;
pub mod health;
pub mod messages;
pub mod page;
mod password;
pub mod pipeline;
pub mod push;
pub mod rate_limits;
mod tokens;
pub mod typing;
pub mod users;

use std::collections::HashSet;
use std::sync::Arc;

use hermet_domain::id::IdGenerator;
use hermet_domain::{Error, Result};
use hermet_store::Database;
use secrecy::{ExposeSecret, SecretString};

pub use auth::Principal;
pub use password::PasswordParams;
pub use pipeline::{PipelineSettings, SyncMode, Transport};
pub use push::{MemoryPush, Notification, PushSink, TeePush};

/// Settings of the auth services.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// HS256 signing key; when absent, one is generated on first start and kept in the
    /// database so every node (and every restart) shares it.
    pub jwt_secret: Option<SecretString>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub password: PasswordParams,
    /// Accounts (e-mail or mobile, normalized) that are administrators.
    pub admin_accounts: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            password: PasswordParams::default(),
            admin_accounts: Vec::new(),
        }
    }
}

/// Limits on request sizes that the services enforce, and the large-group threshold;
/// the `[limits]` configuration section itself (serde).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most users one admin bulk-create request may carry.
    pub max_bulk_users: usize,
    /// Most members of a group, its creator included (one request, one transaction).
    pub max_group_members: usize,
    /// Groups of at least this many members use read diffusion: a message writes O(1)
    /// rows and members' conversation rows are computed when read.
    pub large_group_threshold: usize,
    /// Plain members of a group may mention everyone (`"all"`); by default only its
    /// owner and admins may.
    pub mention_all_by_members: bool,
    /// How long after sending a sender may recall their message (group owners and admins
    /// may recall any message of their group at any time).
    pub recall_window_secs: u64,
    /// How long after sending a sender may edit their message.
    pub edit_window_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_users: 10_000,
            max_group_members: 10_000,
            large_group_threshold: 500,
            mention_all_by_members: false,
            recall_window_secs: 120,
            edit_window_secs: 86_400,
        }
    }
}

impl Limits {
    pub(crate) fn large_groups(&self) -> hermet_store::LargeGroups {
        hermet_store::LargeGroups::with_threshold(self.large_group_threshold)
    }
}

/// The application: a database handle, the id generator and the auth keys. Cheap to
/// clone; one per process, passed by value (no globals).
pub struct App<D: Database> {
    pub db: D,
    pub ids: Arc<IdGenerator>,
    auth: Arc<tokens::AuthKeys>,
    settings: Arc<Settings>,
    pipeline: Arc<pipeline::Pipeline>,
    cache: Arc<cache::Cache>,
    lists: Arc<conversations::ListCache>,
    sends: Arc<messages::SendQueue>,
    health: Arc<health::Health>,
    limiter: Arc<rate_limits::Limiter>,
    typing: Arc<typing::TypingThrottle>,
}

struct Settings {
    auth: AuthSettings,
    limits: Limits,
    pipeline: PipelineSettings,
    admins: HashSet<String>,
}

impl<D: Database> Clone for App<D> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            ids: self.ids.clone(),
            auth: self.auth.clone(),
            settings: self.settings.clone(),
            pipeline: self.pipeline.clone(),
            cache: self.cache.clone(),
            lists: self.lists.clone(),
            sends: self.sends.clone(),
            health: self.health.clone(),
            limiter: self.limiter.clone(),
            typing: self.typing.clone(),
        }
    }
}

const JWT_SECRET_NAME: &str = "jwt_hs256_key";

impl<D: Database> App<D> {
    /// Builds the application; loads or creates the signing key.
    pub async fn new(
        db: D,
        ids: Arc<IdGenerator>,
        auth: AuthSettings,
        limits: Limits,
        pipeline: PipelineSettings,
        push: Arc<dyn PushSink>,
    ) -> Result<Self> {
        let secret = match &auth.jwt_secret {
            Some(s) => s.expose_secret().to_owned(),
            None => db.server_secret(JWT_SECRET_NAME, tokens::random_token(48)).await?,
        };
        if secret.len() < 32 {
            return Err(Error::internal(anyhow::anyhow!("the JWT secret must be at least 32 bytes")));
        }
        let keys = tokens::AuthKeys::new(secret.as_bytes(), auth.access_token_ttl_secs);
        let admins = auth.admin_accounts.iter().map(|a| a.trim().to_lowercase()).filter(|a| !a.is_empty()).collect();
        Ok(Self {
            db,
            ids,
            auth: Arc::new(keys),
            settings: Arc::new(Settings { auth, limits, pipeline, admins }),
            pipeline: Arc::new(pipeline::Pipeline::new(push)),
            cache: Arc::new(cache::Cache::disabled()),
            lists: Arc::new(conversations::ListCache::new(cache::CacheSettings::default().max_lists)),
            sends: Arc::new(messages::SendQueue::new(&messages::GroupCommitSettings::default())),
            health: Arc::new(health::Health::new()),
            limiter: Arc::new(rate_limits::Limiter::new(rate_limits::RateLimits::default())),
            typing: Arc::new(typing::TypingThrottle::new()),
        })
    }

    /// Applies `settings` to the rate limits (built with the defaults), their budgets kept
    /// in `shared` when given (every node's), else in this process.
    pub fn with_rate_limits(
        mut self,
        settings: rate_limits::RateLimits,
        shared: Option<Arc<dyn rate_limits::SharedBudgets>>,
    ) -> Self {
        let limiter = rate_limits::Limiter::new(settings);
        self.limiter = Arc::new(match shared {
            Some(s) => limiter.with_shared(s),
            None => limiter,
        });
        self
    }

    /// The header holding the client's address behind a proxy, if configured.
    pub fn client_ip_header(&self) -> Option<&str> {
        self.limiter.client_ip_header()
    }

    /// Takes one call from `limit`'s budget for `key` (429 `rate_limited` when spent).
    pub async fn rate_limit(&self, limit: rate_limits::Limit, key: rate_limits::Key) -> Result<()> {
        self.limiter.check(&[(limit, key)]).await
    }

    /// Takes one call from each budget, or none of them when one is spent (429).
    pub async fn rate_limits(&self, budgets: &[(rate_limits::Limit, rate_limits::Key)]) -> Result<()> {
        self.limiter.check(budgets).await
    }

    /// Batches concurrent message sends as `settings` says (built with the defaults).
    pub fn with_group_commit(mut self, settings: &messages::GroupCommitSettings) -> Self {
        self.sends = Arc::new(messages::SendQueue::new(settings));
        self
    }

    /// Serves reads through `cache` (built disabled; see [`cache`]).
    pub fn with_cache(mut self, cache: cache::Cache) -> Self {
        self.lists = Arc::new(conversations::ListCache::new(cache.max_lists()));
        self.cache = Arc::new(cache);
        self
    }

    pub fn cache(&self) -> &cache::Cache {
        &self.cache
    }

    fn next_id<T: From<i64>>(&self) -> Result<T> {
        self.ids.next().map_err(Error::internal)
    }
}
