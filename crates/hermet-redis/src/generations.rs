//! Cache generations in Redis ([`RedisGenerations`]), so that a write on any node, or in
//! a projector process of its own, invalidates what every node has cached
//! (`hermet_app::cache`).
//!
//! Keys: `hermet:gen:{stripe}` (65,536 at most, `INCR`ed after each commit that touches
//! a scope hashing there) and `hermet:gen:epoch`, set once by whichever node comes first.
//! If Redis loses its data, the counters start again from zero, which could make an old
//! entry look current; the epoch is gone too then, every lookup carries it, so every
//! older entry misses. Lookups and bumps give up after [`TIMEOUT`], and go through a
//! circuit breaker (`crate::breaker`): while Redis is away a lookup bypasses the cache at
//! once (reads go to the database) and a bump is counted as lost
//! (`cache_invalidation_errors_total`). Bumps lost in an outage would let other nodes'
//! older entries look current once Redis is back, so the first call that finds Redis
//! again sets a new epoch: every entry cached before misses.

use std::time::Duration;

use hermet_app::cache::{Coherence, Scope};
use hermet_app::push::BoxFuture;
use redis::aio::ConnectionManager;

use crate::breaker::{Breaker, Refused};

const EPOCH_KEY: &str = "hermet:gen:epoch";
const TIMEOUT: Duration = Duration::from_millis(250);

fn stripe_key(s: Scope) -> String {
    format!("hermet:gen:{}", s.stripe())
}

pub struct RedisGenerations {
    conn: ConnectionManager,
    breaker: Breaker,
}

fn new_epoch() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
}

impl RedisGenerations {
    pub async fn connect(url: &str, tls: &crate::RedisTls) -> anyhow::Result<Self> {
        let conn = crate::connection(&crate::client(url, tls)?).await?;
        let g = Self { conn, breaker: Breaker::new("cache") };
        g.ensure_epoch().await?;
        Ok(g)
    }

    async fn ensure_epoch(&self) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        redis::cmd("SET").arg(EPOCH_KEY).arg(new_epoch()).arg("NX").query_async::<()>(&mut c).await
    }

    /// After an outage: a new epoch, so what any node cached before it misses.
    async fn renew_epoch(&self) {
        let mut c = self.conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(EPOCH_KEY).arg(new_epoch());
        match self.breaker.call(TIMEOUT, set.query_async::<()>(&mut c)).await {
            Ok(_) => tracing::info!("Redis is back: new cache epoch, entries cached before the outage miss"),
            Err(e) => tracing::warn!(error = %e, "cannot renew the cache epoch after an outage"),
        }
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
            match self.breaker.call(TIMEOUT, self.read(scopes)).await {
                Ok((g, false)) => g,
                Ok((_, true)) => {
                    // read before the new epoch: not to be trusted
                    self.renew_epoch().await;
                    None
                }
                Err(Refused::Open) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read cache generations from Redis; reading the database");
                    None
                }
            }
        })
    }

    fn bump<'a>(&'a self, scopes: &'a [Scope]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match self.breaker.call(TIMEOUT, self.incr(scopes)).await {
                Ok((_, false)) => {}
                Ok((_, true)) => self.renew_epoch().await,
                Err(e) => {
                    if !matches!(e, Refused::Open) {
                        tracing::warn!(error = %e, scopes = scopes.len(), "cannot invalidate cached reads in Redis");
                    }
                    metrics::counter!("cache_invalidation_errors_total").increment(1);
                }
            }
        })
    }
}
