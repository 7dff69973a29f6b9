//! The PostgreSQL driver: tokio-postgres on deadpool pools. Chosen over sqlx because
//! tokio-postgres pipelines statements on one connection (75–98k small inserts/s here
//! against 14k/s for sqlx) and speaks binary COPY for bulk loads.
//!
//! Two pools: `write` for transactions and `read` for queries of the read models, which
//! is a separate pool on a replica when `read_database_url` is set. Each URL's TLS
//! parameters (`sslmode`, `sslrootcert`, …) apply to its pool and, for the primary, to
//! the watchdog's probe connection ([`tls`]).

mod channels;
mod consistency;
mod contacts;
mod conversations;
mod inbox;
mod locks;
mod messages;
mod pipeline;
mod refresh;
mod statements;
pub mod tls;
mod users;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use hermet_domain::event::OutboxEvent;
use tokio_postgres::error::SqlState;

use self::statements::PgConn;
use self::tls::Target;
use crate::ports::*;
use crate::{MigrationReport, PoolSettings, StoreError, migrations};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// How long reads skip an unreachable replica before trying it again.
const REPLICA_COOL_DOWN_MS: i64 = 1_000;

/// Serializes migrations of several nodes starting at once.
const MIGRATION_LOCK: i64 = 0x6865_726d_6574; // "hermet"

#[derive(Clone)]
pub struct PgDatabase {
    inner: Arc<Inner>,
}

struct Inner {
    write: Pool,
    /// Queries outside transactions (the replica's when `read_database_url` is set, the
    /// primary's otherwise), on connections that always use generic plans.
    read: Pool,
    /// `database.statement_cache`: prepared statements kept per connection (the
    /// default) or prepared for each use.
    statement_cache: bool,
    /// `read` is a read replica's (`read_database_url`).
    replica: bool,
    /// Until when (ms) reads skip an unreachable replica and go to the primary.
    replica_away_until: std::sync::atomic::AtomicI64,
    /// The health watchdog's own connection to the primary (see [`Database::probe`]).
    probe: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    probe_target: Target,
}

impl PgDatabase {
    /// Creates the pools. Connections are opened lazily, so this fails only on a bad
    /// URL or TLS parameter (an unreadable CA file); use [`Database::ping`] to check the
    /// server is reachable.
    pub fn connect(url: &str, read_url: Option<&str>, settings: &PoolSettings) -> Result<Self, StoreError> {
        let primary = target(url)?;
        let write = build_pool(&primary, settings, false)?;
        let replica = read_url.is_some_and(|r| r != url);
        let read = match read_url {
            // A replica that does not answer is given up on within a second (reads then
            // go to the primary), not after the whole acquire timeout.
            Some(r) if replica => {
                let mut s = settings.clone();
                s.acquire_timeout_ms = s.acquire_timeout_ms.min(1_000);
                build_pool(&target(r)?, &s, true)?
            }
            _ => build_pool(&primary, settings, true)?,
        };
        let mut probe_target = primary;
        probe_target.config.connect_timeout(Duration::from_secs(1));
        Ok(Self {
            inner: Arc::new(Inner {
                write,
                read,
                statement_cache: settings.statement_cache,
                replica,
                replica_away_until: std::sync::atomic::AtomicI64::new(0),
                probe: tokio::sync::Mutex::new(None),
                probe_target,
            }),
        })
    }

    pub(crate) async fn write_conn(&self) -> Result<PgConn, StoreError> {
        let conn = self.inner.write.get().await.map_err(pool_err)?;
        Ok(PgConn::new(conn, self.inner.statement_cache))
    }

    /// A connection for queries outside transactions that must see every commit: the read
    /// pool's while it is on the primary (no replica), for its generic plans (see
    /// [`build_pool`]), else the write pool's. The notifier's read of the conversation rows
    /// it pushes took 5.8 ms to plan and 0.7 ms to run, and was planned on each of the
    /// first executions on every write connection.
    pub(crate) async fn primary_read_conn(&self) -> Result<PgConn, StoreError> {
        if self.inner.replica {
            return self.write_conn().await;
        }
        let conn = self.inner.read.get().await.map_err(pool_err)?;
        Ok(PgConn::new(conn, self.inner.statement_cache))
    }

    /// A connection for queries outside transactions: the replica's, or the primary's
    /// while the replica is unreachable (for [`REPLICA_COOL_DOWN_MS`] after a failed
    /// attempt, then the replica is tried again).
    pub(crate) async fn read_conn(&self) -> Result<PgConn, StoreError> {
        use std::sync::atomic::Ordering;
        let inner = &self.inner;
        if inner.replica && inner.replica_away_until.load(Ordering::Relaxed) > hermet_domain::time::now_ms() {
            return self.write_conn().await;
        }
        match inner.read.get().await.map_err(pool_err) {
            Ok(conn) => {
                if inner.replica && inner.replica_away_until.swap(0, Ordering::Relaxed) != 0 {
                    tracing::info!("the read replica answers again: reads go to it");
                    metrics::gauge!("db_replica_up").set(1.0);
                }
                Ok(PgConn::new(conn, inner.statement_cache))
            }
            Err(StoreError::Unavailable(cause)) if inner.replica => {
                let until = hermet_domain::time::now_ms() + REPLICA_COOL_DOWN_MS;
                if inner.replica_away_until.swap(until, Ordering::Relaxed) == 0 {
                    tracing::warn!(%cause, "the read replica is unreachable: reads go to the primary");
                    metrics::gauge!("db_replica_up").set(0.0);
                }
                self.write_conn().await
            }
            Err(e) => Err(e),
        }
    }
}

/// `reads`: the pool for queries outside transactions. Its connections plan every
/// prepared statement once, generically (`plan_cache_mode = force_generic_plan`): the
/// conversation-list statements (the merge with large groups' computed rows) took 2–5
/// ms to plan and 0.1 ms to run, and PostgreSQL's own choice kept planning them per
/// execution. Every read is a keyed lookup that a generic plan serves as well as a
/// custom one. Writes keep `auto`; the refresh chooses its plan itself (`count_and_plan`).
fn build_pool(target: &Target, s: &PoolSettings, reads: bool) -> Result<Pool, StoreError> {
    let mut cfg = target.config.clone();
    let generic = if reads { " -c plan_cache_mode=force_generic_plan" } else { "" };
    // No JIT: it compiled a small refresh's generic plan (estimated above jit_above_cost)
    // on every execution, 35 ms for a two-row refresh that runs in 0.5 ms.
    cfg.options(format!("-c statement_timeout={} -c jit=off{generic}", s.statement_timeout_ms));
    if cfg.get_application_name().is_none() {
        cfg.application_name("hermet");
    }
    cfg.connect_timeout(Duration::from_millis(s.acquire_timeout_ms.max(1_000)));
    let manager =
        Manager::from_config(cfg, target.tls.clone(), ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let reusable = s.reusable();
    let wait = Duration::from_millis(s.acquire_timeout_ms);
    Pool::builder(manager)
        .max_size(s.max_connections)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .recycle_timeout(Some(wait))
        .pre_recycle(Hook::sync_fn(move |_, metrics| reusable(metrics.age()).map_err(HookError::message)))
        .build()
        .map_err(|e| StoreError::other(anyhow::anyhow!("cannot build PostgreSQL pool: {e}")))
}

/// A URL's connection settings and TLS connector; errors name the parameter, not the URL.
fn target(url: &str) -> Result<Target, StoreError> {
    Target::from_url(url).map_err(|e| StoreError::other(anyhow::anyhow!("{e}")))
}

pub(crate) fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg_err(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            return StoreError::UniqueViolation { constraint: db.constraint().unwrap_or_default().to_owned() };
        }
        // The server cannot serve now: a statement timeout, too many connections, a
        // shutdown or restart in progress, a lost connection (class 08).
        if *code == SqlState::QUERY_CANCELED
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || code.code().starts_with("08")
        {
            return StoreError::Unavailable(db.message().to_owned());
        }
        return StoreError::Other(anyhow::Error::new(e));
    }
    // Not an answer of the server: the connection closed, could not be made (refused,
    // timed out) or broke. Conversions and protocol errors stay bugs.
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io || e.to_string().starts_with("error connecting to server") {
        return StoreError::Unavailable(with_causes(&e));
    }
    StoreError::Other(anyhow::Error::new(e))
}

/// tokio-postgres' message and its causes: its own message names only the kind ("error
/// performing TLS handshake"), the cause says why ("invalid peer certificate: UnknownIssuer").
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

impl Database for PgDatabase {
    type Tx = PgTx;

    fn backend(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(level = "debug", name = "postgres.begin", skip_all)]
    async fn begin(&self) -> Result<PgTx, StoreError> {
        let conn = self.write_conn().await?;
        conn.batch_execute("BEGIN").await.map_err(pg_err)?;
        Ok(PgTx { conn: Some(conn), last_event: None, touched: Touched::default(), events: Vec::new() })
    }

    #[tracing::instrument(level = "debug", name = "postgres.migrate", skip_all)]
    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut conn = self.write_conn().await?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err)?;
        let runner = embedded::migrations::runner();
        let result = async {
            let history: bool = conn
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&migrations::HISTORY])
                .await
                .map_err(pg_err)?
                .get(0);
            if history {
                for (now, version, earlier) in migrations::updates(migrations::POSTGRES, runner.get_migrations()) {
                    conn.execute(migrations::UPDATE_CHECKSUM, &[&now, &version, &earlier]).await.map_err(pg_err)?;
                }
            }
            let client: &mut tokio_postgres::Client = &mut conn;
            runner
                .set_grouped(true)
                .run_async(client)
                .await
                .map_err(|e| StoreError::other(anyhow::anyhow!("migration failed: {e}")))
        }
        .await;
        conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err)?;
        let report = result?;
        Ok(MigrationReport { applied: report.applied_migrations().iter().map(|m| m.to_string()).collect() })
    }

    /// On a connection of its own, kept between probes and dropped on any failure. The
    /// caller bounds the time (a frozen server never answers).
    #[tracing::instrument(level = "debug", name = "postgres.probe", skip_all)]
    async fn probe(&self) -> Result<(), StoreError> {
        let mut slot = self.inner.probe.lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = Some(self.inner.probe_target.connect().await.map_err(pg_err)?);
        }
        let Some(client) = slot.as_ref() else { return Err(StoreError::Unavailable("no probe connection".into())) };
        let answered = client.simple_query("SELECT 1").await.map_err(pg_err);
        if answered.is_err() {
            *slot = None;
        }
        answered.map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.ping", skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.write_conn().await?;
        conn.simple_query("SELECT 1").await.map_err(pg_err)?;
        self.read_conn().await?.simple_query("SELECT 1").await.map_err(pg_err)?;
        Ok(())
    }

    fn pool_status(&self) -> Vec<PoolStatus> {
        vec![status("write", &self.inner.write), status("read", &self.inner.read)]
    }

    fn close(&self) {
        self.inner.write.close();
        self.inner.read.close();
    }

    #[tracing::instrument(level = "debug", name = "postgres.server_secret", skip_all)]
    async fn server_secret(&self, name: &str, candidate: String) -> Result<String, StoreError> {
        let conn = self.write_conn().await?;
        let now = hermet_domain::time::now_ms();
        conn.execute(
            "INSERT INTO server_secret (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            &[&name, &candidate, &now],
        )
        .await
        .map_err(pg_err)?;
        let row = conn.query_one("SELECT value FROM server_secret WHERE name = $1", &[&name]).await.map_err(pg_err)?;
        Ok(row.get(0))
    }
}

fn status(pool: &'static str, p: &Pool) -> PoolStatus {
    let s = p.status();
    PoolStatus { pool, size: s.size, available: s.available, max_size: s.max_size, waiting: s.waiting }
}

/// A PostgreSQL transaction on one pooled connection (`BEGIN` … `COMMIT`).
pub struct PgTx {
    conn: Option<PgConn>,
    /// Cursor of the last event appended in this transaction.
    last_event: Option<LogCursor>,
    pub(crate) touched: Touched,
    /// Outbox rows appended, written in the same round trip as `COMMIT`.
    events: Vec<OutboxEvent>,
}

impl PgTx {
    pub(crate) fn conn(&self) -> Result<&PgConn, StoreError> {
        self.conn.as_ref().ok_or_else(|| StoreError::other(anyhow::anyhow!("transaction already finished")))
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // Roll back before the connection goes back to the pool; if that is not
        // possible, detach the connection so it is closed instead of reused.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if conn.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(conn.into_object()));
                    }
                });
            }
            Err(_) => drop(Object::take(conn.into_object())),
        }
    }
}

impl Transaction for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.commit", skip_all)]
    async fn commit(mut self) -> Result<Option<LogCursor>, StoreError> {
        let conn =
            self.conn.take().ok_or_else(|| StoreError::other(anyhow::anyhow!("transaction already finished")))?;
        if self.events.is_empty() {
            conn.batch_execute("COMMIT").await.map_err(pg_err)?;
            return Ok(self.last_event);
        }
        // The outbox insert and COMMIT in one round trip. The statement is prepared first
        // (a cache hit but on a connection's first use), so the two go out in this order.
        let stmt = conn.prep(APPEND_EVENTS).await.map_err(pg_err)?;
        let e = &self.events;
        let ids: Vec<i64> = e.iter().map(|e| e.id.get()).collect();
        let types: Vec<&str> = e.iter().map(|e| e.event_type).collect();
        let versions: Vec<i32> = e.iter().map(|e| e.schema_version).collect();
        let agg_types: Vec<&str> = e.iter().map(|e| e.aggregate_type).collect();
        let agg_keys: Vec<&str> = e.iter().map(|e| e.aggregate_key.as_str()).collect();
        let payloads: Vec<&serde_json::Value> = e.iter().map(|e| &e.payload).collect();
        let times: Vec<i64> = e.iter().map(|e| e.occurred_at).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&ids, &types, &versions, &agg_types, &agg_keys, &payloads, &times];
        let (rows, committed) = tokio::join!(conn.query(&stmt, &params), conn.batch_execute("COMMIT"));
        // A failed insert aborted the transaction, and COMMIT then rolled it back.
        let rows = rows.map_err(pg_err)?;
        committed.map_err(pg_err)?;
        let last = rows.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1))).max();
        Ok(self.last_event.max(last))
    }

    fn touched(&mut self) -> &mut Touched {
        &mut self.touched
    }
}

const APPEND_EVENTS: &str =
    "INSERT INTO outbox (event_id, event_type, schema_version, aggregate_type, aggregate_key, payload, created_at)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::jsonb[], $7::bigint[])
     RETURNING tx_id, position";

impl OutboxWrites for PgTx {
    /// Kept until commit, which writes them in its own round trip (nothing in a
    /// transaction reads the outbox back).
    #[tracing::instrument(level = "debug", name = "postgres.append_events", skip_all)]
    async fn append_events(&mut self, events: &[OutboxEvent]) -> Result<(), StoreError> {
        self.conn()?;
        self.events.extend_from_slice(events);
        Ok(())
    }
}

impl EventLog for PgDatabase {
    #[tracing::instrument(level = "debug", name = "postgres.cursor_before_time", skip_all)]
    async fn cursor_before_time(&self, ms: i64) -> Result<LogCursor, StoreError> {
        let c = self.write_conn().await?;
        let stmt = c
            .prep("SELECT tx_id, position FROM outbox WHERE created_at >= $1 ORDER BY tx_id, position LIMIT 1")
            .await
            .map_err(pg_err)?;
        match c.query_opt(&stmt, &[&ms]).await.map_err(pg_err)? {
            Some(r) => Ok((r.get(0), r.get::<_, i64>(1) - 1)),
            None => self.log_head().await,
        }
    }

    #[tracing::instrument(level = "debug", name = "postgres.log_head", skip_all)]
    async fn log_head(&self) -> Result<LogCursor, StoreError> {
        let c = self.write_conn().await?;
        let stmt = c
            .prep("SELECT tx_id, position FROM outbox ORDER BY tx_id DESC, position DESC LIMIT 1")
            .await
            .map_err(pg_err)?;
        Ok(c.query_opt(&stmt, &[]).await.map_err(pg_err)?.map(|r| (r.get(0), r.get(1))).unwrap_or((0, 0)))
    }

    #[tracing::instrument(level = "debug", name = "postgres.consumer_offset", skip_all)]
    async fn consumer_offset(&self, consumer: &str) -> Result<LogCursor, StoreError> {
        let c = self.write_conn().await?;
        let stmt = c.prep("SELECT tx_id, position FROM consumer_offset WHERE consumer = $1").await.map_err(pg_err)?;
        Ok(c.query_opt(&stmt, &[&consumer]).await.map_err(pg_err)?.map(|r| (r.get(0), r.get(1))).unwrap_or((0, 0)))
    }

    #[tracing::instrument(level = "debug", name = "postgres.consumer_offsets", skip_all)]
    async fn consumer_offsets(&self, prefix: &str) -> Result<Vec<(String, LogCursor)>, StoreError> {
        self.offsets_with_prefix(prefix).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.events_held_back", skip_all)]
    async fn events_held_back(&self, after: LogCursor) -> Result<bool, StoreError> {
        let c = self.write_conn().await?;
        let stmt =
            c.prep("SELECT EXISTS (SELECT 1 FROM outbox WHERE (tx_id, position) > ($1, $2))").await.map_err(pg_err)?;
        Ok(c.query_one(&stmt, &[&after.0, &after.1]).await.map_err(pg_err)?.get(0))
    }

    #[tracing::instrument(level = "debug", name = "postgres.read_events", skip_all)]
    async fn read_events(&self, after: LogCursor, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let c = self.write_conn().await?;
        // Only transactions older than this snapshot's xmin: all of them have finished,
        // so no row can still appear behind the cursor.
        let stmt = c
            .prep(
                "SELECT tx_id, position, event_type, payload, created_at, event_id FROM outbox
                 WHERE (tx_id, position) > ($1, $2) AND tx_id < txid_snapshot_xmin(txid_current_snapshot())
                 ORDER BY tx_id, position LIMIT $3",
            )
            .await
            .map_err(pg_err)?;
        let rows = c.query(&stmt, &[&after.0, &after.1, &(limit as i64)]).await.map_err(pg_err)?;
        // `try_get`: a payload that does not decode is an error of this read, never a
        // panic in the consumer's task.
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    cursor: (r.try_get(0).map_err(pg_err)?, r.try_get(1).map_err(pg_err)?),
                    event_type: r.try_get(2).map_err(pg_err)?,
                    payload: r.try_get(3).map_err(pg_err)?,
                    created_at: r.try_get(4).map_err(pg_err)?,
                    event_id: r.try_get(5).map_err(pg_err)?,
                })
            })
            .collect()
    }
}

impl OffsetWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.advance_offset", skip_all)]
    async fn advance_offset(
        &mut self,
        consumer: &str,
        from: LogCursor,
        to: LogCursor,
        now: i64,
    ) -> Result<bool, StoreError> {
        let c = self.conn()?;
        let stmt = c
            .prep(
                "INSERT INTO consumer_offset (consumer, tx_id, position, updated_at) VALUES ($1, $4, $5, $6)
                 ON CONFLICT (consumer) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, updated_at = excluded.updated_at
                 WHERE consumer_offset.tx_id = $2 AND consumer_offset.position = $3",
            )
            .await
            .map_err(pg_err)?;
        Ok(c.execute(&stmt, &[&consumer, &from.0, &from.1, &to.0, &to.1, &now]).await.map_err(pg_err)? == 1)
    }

    #[tracing::instrument(level = "debug", name = "postgres.set_offset", skip_all)]
    async fn set_offset(&mut self, consumer: &str, at: LogCursor, now: i64) -> Result<(), StoreError> {
        let c = self.conn()?;
        let stmt = c
            .prep(
                "INSERT INTO consumer_offset (consumer, tx_id, position, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (consumer) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, updated_at = excluded.updated_at",
            )
            .await
            .map_err(pg_err)?;
        c.execute(&stmt, &[&consumer, &at.0, &at.1, &now]).await.map_err(pg_err)?;
        Ok(())
    }
}
