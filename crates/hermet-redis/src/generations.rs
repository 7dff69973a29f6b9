//! Cache generations in Redis ([`RedisGenerations`]), so that a write on any node, or in
//! a projector process of its own, invalidates what every node has cached
//! (`hermet_app::cache`).
//!
//! Keys: `hermet:gen:{stripe}` (65,536 at most, `INCR`ed after each commit that touches
//! a scope hashing there) and `hermet:gen:epoch`, set once by whichever node comes first.
//! If Redis loses its data, the counters start again from zero, which could make an old
//! entry look current; the epoch is gone too then, every lookup carries it, so every
//! older entry misses. Lookups and bumps give up after [`TIMEOUT`]: a lookup then
//! bypasses the cache; a lost bump leaves other nodes' entries stale for at most the
//! cache's `max_age_secs`, and is counted (`cache_invalidation_errors_total`).

use std::time::Duration;

use hermet_app::cache::{Coherence, Scope};
use hermet_app::push::BoxFuture;
use redis::aio::ConnectionManager;

const EPOCH_KEY: &str = "hermet:gen:epoch";
const TIMEOUT: Duration = Duration::from_millis(250);

fn stripe_key(s: Scope) -> String {
    format!("hermet:gen:{}", s.stripe())
}

pub struct RedisGenerations {
    conn: ConnectionManager,
}

impl RedisGenerations {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let conn = ConnectionManager::new(redis::Client::open(url)?).await?;
        let g = Self { conn };
        g.ensure_epoch().await?;
        Ok(g)
    }

    async fn ensure_epoch(&self) -> redis::RedisResult<()> {
        let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64);
        let mut c = self.conn.clone();
        redis::cmd("SET").arg(EPOCH_KEY).arg(epoch.unwrap_or(1)).arg("NX").query_async::<()>(&mut c).await
    }

    async fn read(&self, scopes: &[Scope]) -> redis::RedisResult<Option<Vec<u64>>> {
        let mut keys = Vec::with_capacity(scopes.len() + 1);
        keys.push(EPOCH_KEY.to_owned());
        keys.extend(scopes.iter().map(|s| stripe_key(*s)));
        let mut c = self.conn.clone();
        let found: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
        if found.first().copied().flatten().is_none() {
            // Redis lost its data (or was never set up): a new epoch, and no cache now.
            self.ensure_epoch().await?;
            return Ok(None);
        }
        Ok(Some(found.into_iter().map(|g| g.unwrap_or(0)).collect()))
    }

    async fn incr(&self, scopes: &[Scope]) -> redis::RedisResult<()> {
        let mut p = redis::pipe();
        for s in scopes {
            p.incr(stripe_key(*s), 1).ignore();
        }
        let mut c = self.conn.clone();
        p.query_async::<()>(&mut c).await
    }
}

impl Coherence for RedisGenerations {
    fn generations<'a>(&'a self, scopes: &'a [Scope]) -> BoxFuture<'a, Option<Vec<u64>>> {
        Box::pin(async move {
            match tokio::time::timeout(TIMEOUT, self.read(scopes)).await {
                Ok(Ok(g)) => g,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read cache generations from Redis; reading the database");
                    None
                }
                Err(_) => {
                    tracing::warn!("cache generations from Redis timed out; reading the database");
                    None
                }
            }
        })
    }

    fn bump<'a>(&'a self, scopes: &'a [Scope]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let failed = match tokio::time::timeout(TIMEOUT, self.incr(scopes)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            tracing::error!(error = %failed, scopes = scopes.len(), "cannot invalidate cached reads in Redis");
            metrics::counter!("cache_invalidation_errors_total").increment(1);
        })
    }
}
