//! Building and running a node: pick the backend once from the database URL, migrate,
//! build the application and the router, serve until the shutdown token fires, drain
//! in-flight requests, close the pools.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hermet_api::{AppState, SharedState};
use hermet_app::cache::{Cache, CacheMode, Coherence, LocalGenerations};
use hermet_app::gateway::{CloseReason, Cluster, GatewayPush, LocalCluster, Registry};
use hermet_app::pipeline::consumer::LogSource;
use hermet_app::rate_limits::SharedBudgets;
use hermet_app::{App, MemoryPush, PushSink, TeePush};
use hermet_domain::id::IdGenerator;
use hermet_redis::{RedisBudgets, RedisCluster, RedisGenerations};
use hermet_store::postgres::PgDatabase;
use hermet_store::sqlite::SqliteDatabase;
use hermet_store::{Backend, Database, PipelineWrites, Transaction};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, redact_url};

/// Starts a node's background roles on a task tracker, stopping with the token.
type StartBackground = Box<dyn FnOnce(&TaskTracker, &CancellationToken) + Send>;

/// A node ready to serve: bound listener, router, pools.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// Starts the background roles (relay, consumers, upkeep) on the tracker.
    start_background: StartBackground,
    push: Arc<MemoryPush>,
    close: Box<dyn FnOnce() + Send>,
    grace: Duration,
    backend: &'static str,
}

/// Opens the configured database (the only place that looks at the backend) and runs
/// `f` with it, monomorphized per backend.
macro_rules! with_database {
    ($config:expr, |$db:ident| $body:expr) => {{
        let config: &Config = $config;
        match Backend::from_url(&config.database_url) {
            Some(Backend::Sqlite) => {
                let $db = SqliteDatabase::open(&config.database_url, &config.pool_settings())
                    .await
                    .with_context(|| format!("cannot open {}", config.database_url))?;
                $body
            }
            Some(Backend::Postgres) => {
                let $db = PgDatabase::connect(
                    &config.database_url,
                    config.read_database_url.as_deref(),
                    &config.pool_settings(),
                )
                .with_context(|| format!("cannot connect to {}", redact_url(&config.database_url)))?;
                $body
            }
            None => anyhow::bail!("unsupported database URL {}", redact_url(&config.database_url)),
        }
    }};
}
pub(crate) use with_database;

/// Builds the application without serving (maintenance commands).
pub(crate) async fn app_for<D: Database>(db: D, config: &Config) -> anyhow::Result<App<D>> {
    app_with_push(db, config, Arc::new(MemoryPush::new(10_000))).await
}

async fn app_with_push<D: Database>(db: D, config: &Config, push: Arc<dyn PushSink>) -> anyhow::Result<App<D>> {
    let ids = Arc::new(IdGenerator::new(config.node_id)?);
    let app = App::new(db, ids, config.auth_settings(), config.limits(), config.pipeline_settings(), push)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the application: {e:?}"))?;
    Ok(app
        .with_cache(cache(config).await?)
        .with_group_commit(&config.group_commit)
        .with_rate_limits(config.rate_limits.clone(), shared_budgets(config).await?))
}

/// Rate-limit budgets every node shares: in Redis when `redis_url` is set.
async fn shared_budgets(config: &Config) -> anyhow::Result<Option<Arc<dyn SharedBudgets>>> {
    match &config.redis_url {
        Some(url) if config.rate_limits.enabled => Ok(Some(Arc::new(
            RedisBudgets::connect(url, &config.redis_tls())
                .await
                .with_context(|| format!("cannot connect to Redis at {} (rate limits)", redact_url(url)))?,
        ))),
        _ => Ok(None),
    }
}

/// The read caches and where their generations live (hermet_app::cache).
async fn cache(config: &Config) -> anyhow::Result<Cache> {
    let coherence: Arc<dyn Coherence> = match (config.cache_mode(), &config.redis_url) {
        (CacheMode::Local, _) => Arc::new(LocalGenerations::default()),
        (CacheMode::Redis, Some(url)) => Arc::new(
            RedisGenerations::connect(url, &config.redis_tls())
                .await
                .with_context(|| format!("cannot connect to Redis at {} (cache)", redact_url(url)))?,
        ),
        _ => return Ok(Cache::disabled()),
    };
    Ok(Cache::new(coherence, &config.cache))
}

/// A conversation row's `conversation.updated` frame, the row as the API shows it.
fn conversation_frame(row: &hermet_store::ConversationRow) -> String {
    #[derive(serde::Serialize)]
    struct Frame {
        #[serde(rename = "type")]
        frame_type: &'static str,
        data: hermet_api::routes::conversations::ConversationDto,
    }
    let frame = Frame { frame_type: "conversation.updated", data: row.clone().into() };
    serde_json::to_string(&frame).unwrap_or_default()
}

/// The gateway's cluster: Redis when `redis_url` is set (also returned, to run its
/// heartbeats and subscription), else this node alone.
async fn cluster(config: &Config) -> anyhow::Result<(Arc<dyn Cluster>, Option<Arc<RedisCluster>>)> {
    let registry = Arc::new(Registry::new(config.gateway.clone()));
    match &config.redis_url {
        Some(url) => {
            let redis = Arc::new(
                RedisCluster::connect(url, &config.redis_tls(), config.node_id, registry)
                    .await
                    .with_context(|| format!("cannot connect to Redis at {}", redact_url(url)))?,
            );
            Ok((redis.clone(), Some(redis)))
        }
        None => Ok((Arc::new(LocalCluster::new(registry)), None)),
    }
}

/// Which pipeline roles a process runs.
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    /// The outbox relay (Kafka transport only).
    pub relay: bool,
    /// The consumer groups the sync mode calls for (projectors in async mode, notifier).
    pub consumers: bool,
    /// Pipeline metrics and the compensation scanner.
    pub upkeep: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { relay: true, consumers: true, upkeep: true };
    pub const NONE: Roles = Roles { relay: false, consumers: false, upkeep: false };
}

/// Runs `f` until it succeeds or `shutdown` fires (start-up against a broker that may be
/// down: the API keeps working, the role starts when the broker is back).
async fn until_ok<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => tracing::warn!(error = %e, "{what} failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
}

/// Starts the pipeline roles of `app` on `tasks`, stopping with `shutdown`.
fn spawn_pipeline<D: Database>(
    app: &App<D>,
    config: &Config,
    roles: Roles,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let (app, token, spawner) = (app.clone(), shutdown.clone(), tasks.clone());
    let kafka = config.kafka_settings();
    // Leases are held by node, not by process: a node that restarts (cleanly or after a
    // crash) takes its own leases back at once instead of waiting for them to expire.
    // node_id is unique per node already (it is part of every id the node makes).
    let holder = format!("node-{}", config.node_id);
    tasks.spawn(async move {
        if let Some(k) = &kafka
            && (roles.relay || roles.consumers)
            && until_ok("creating the Kafka topics", &token, || hermet_kafka::ensure_topics(k)).await.is_none()
        {
            return;
        }
        if roles.consumers {
            match &kafka {
                // Kafka: the consumer groups share the work out.
                Some(k) => {
                    for name in app.active_consumers() {
                        let (app2, token2) = (app.clone(), token.clone());
                        let Some(source) = until_ok("connecting a Kafka consumer", &token, || async {
                            Ok(hermet_kafka::source::KafkaSource::new(&app, k, name).await?)
                        })
                        .await
                        else {
                            return;
                        };
                        spawner.spawn(async move { app2.run_consumer(name, source, token2).await });
                    }
                }
                // The embedded log: one node at a time, under a lease.
                None => {
                    let (app2, token2, holder2) = (app.clone(), token.clone(), holder.clone());
                    spawner.spawn(async move { run_log_consumers_under_lease(app2, holder2, token2).await });
                }
            }
        }
        if roles.relay
            && let Some(k) = &kafka
        {
            match hermet_kafka::relay::Relay::new(app.clone(), k.clone(), holder.clone()) {
                Ok(relay) => {
                    spawner.spawn(relay.run(token.clone()));
                }
                Err(e) => tracing::error!(error = %e, "cannot create the Kafka producer; the relay is not running"),
            }
        }
        if roles.upkeep {
            let (a, t) = (app.clone(), token.clone());
            spawner.spawn(async move { a.run_pipeline_metrics(t).await });
            let (a, t) = (app.clone(), token.clone());
            spawner.spawn(async move { a.run_compensation(holder, t).await });
            let (a, t) = (app.clone(), token.clone());
            spawner.spawn(async move { a.run_outbox_pruning(t).await });
        }
    });
}

/// The lease that lets one node at a time run the consumers of the embedded log.
const LOG_CONSUMERS_LEASE: &str = "embedded-log-consumers";

/// Runs the embedded log's consumer groups while this process holds their lease, so
/// several nodes on one PostgreSQL do not repeat the same work; another node takes over
/// within `pipeline.consumer_lease_ms` of the holder dying. (The offsets' compare-and-set
/// keeps even an overlap harmless: a batch commits once.)
async fn run_log_consumers_under_lease<D: Database>(app: App<D>, holder: String, shutdown: CancellationToken) {
    let ttl = app.pipeline_settings().consumer_lease_ms.max(300);
    let renew = Duration::from_millis(ttl / 3);
    let retry = renew.min(hermet_app::pipeline::LEASE_RETRY);
    let take = |app: App<D>, holder: String| async move {
        let mut tx = app.db.begin().await?;
        let held = tx.take_lease(LOG_CONSUMERS_LEASE, &holder, ttl as i64, hermet_domain::time::now_ms()).await?;
        tx.commit().await?;
        Ok::<bool, hermet_store::StoreError>(held)
    };
    while !shutdown.is_cancelled() {
        if !matches!(take(app.clone(), holder.clone()).await, Ok(true)) {
            tokio::select! {
                _ = tokio::time::sleep(retry) => continue,
                _ = shutdown.cancelled() => break,
            }
        }
        tracing::info!(holder, "holding the embedded log's consumer lease: consumers start");
        let (running, tasks) = (shutdown.child_token(), TaskTracker::new());
        for name in app.active_consumers() {
            let Some(source) =
                until_ok("reading a consumer offset", &running, || async { Ok(LogSource::new(&app, name).await?) })
                    .await
            else {
                break;
            };
            let (a, t) = (app.clone(), running.clone());
            tasks.spawn(async move { a.run_consumer(name, source, t).await });
        }
        tasks.close();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(renew) => {}
                _ = running.cancelled() => break,
            }
            if !matches!(take(app.clone(), holder.clone()).await, Ok(true)) {
                tracing::warn!(holder, "lost the embedded log's consumer lease: consumers stop");
                running.cancel();
            }
        }
        tasks.wait().await;
    }
    app.release_lease(LOG_CONSUMERS_LEASE, &holder).await;
}

/// `hermet project` and `hermet relay`: pipeline roles without HTTP, until `shutdown`
/// (scaled apart from the API; `serve` runs them too unless told not to).
pub async fn run_roles(config: &Config, roles: Roles, shutdown: CancellationToken) -> anyhow::Result<()> {
    if roles.relay && config.kafka_brokers.is_none() {
        anyhow::bail!("the relay publishes to Kafka: set kafka_brokers (HERMET_KAFKA_BROKERS)");
    }
    with_database!(config, |db| {
        // With Redis, a notifier here routes its pushes to the gateway nodes.
        let app = match &config.redis_url {
            Some(_) if roles.consumers => {
                let (cluster, _) = cluster(config).await?;
                app_with_push(db.clone(), config, Arc::new(GatewayPush::new(cluster, conversation_frame))).await?
            }
            _ => app_for(db.clone(), config).await?,
        };
        let tasks = TaskTracker::new();
        spawn_pipeline(&app, config, roles, &tasks, &shutdown);
        tasks.close();
        tasks.wait().await;
        db.close();
        Ok(())
    })
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        with_database!(&config, |db| Self::build_with(db, &config).await)
    }

    async fn build_with<D: Database>(db: D, config: &Config) -> anyhow::Result<Self> {
        if config.migrate_on_start {
            let report = db.migrate().await.context("migration failed")?;
            for m in &report.applied {
                tracing::info!(migration = %m, "migration applied");
            }
        }
        let push = Arc::new(MemoryPush::new(10_000));
        let (cluster, redis) = cluster(config).await?;
        // The notifier delivers to the gateway (this node's sockets and, through Redis,
        // other nodes'), and to the in-process observer.
        let sink = TeePush(vec![Arc::new(GatewayPush::new(cluster.clone(), conversation_frame)), push.clone()]);
        let app = app_with_push(db.clone(), config, Arc::new(sink)).await?;
        let (background_app, background_config) = (app.clone(), config.clone());
        let roles = if config.pipeline.serve_runs_pipeline { Roles::ALL } else { Roles::NONE };
        let registry = cluster.registry().clone();
        let start_background: StartBackground = Box::new(move |tasks, token| {
            tasks.spawn(background_app.clone().run_database_watchdog(token.clone()));
            spawn_pipeline(&background_app, &background_config, roles, tasks, token);
            if let Some(r) = redis {
                tasks.spawn(r.run(token.clone()));
            }
            // Sockets are not requests: tell them to go (4011) when the node stops.
            let token = token.clone();
            tasks.spawn(async move {
                token.cancelled().await;
                registry.close_all(CloseReason::ShuttingDown);
            });
        });
        let origins = hermet_api::security::Origins::new(&config.http.allowed_origins);
        let state = AppState::new(SharedState { app, metrics: hermet_api::metrics::recorder(), cluster, origins });
        let router = hermet_api::router(state, &config.http_settings());
        let listener = TcpListener::bind(config.listen_addr())
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let backend = db.backend();
        Ok(Self {
            listener,
            router,
            start_background,
            push,
            close: Box::new(move || db.close()),
            grace: Duration::from_secs(config.http.shutdown_grace_secs),
            backend,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The in-process push sink the notifier delivers to (until the realtime gateway).
    pub fn push_hub(&self) -> Arc<MemoryPush> {
        self.push.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, gives in-flight
    /// requests up to the grace period, and closes the pools.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.listener.local_addr()?;
        let tasks = TaskTracker::new();
        (self.start_background)(&tasks, &shutdown);
        tasks.close();
        tracing::info!(%addr, backend = self.backend, "hermet listening");
        let signal = shutdown.clone();
        // TCP_NODELAY: responses and WebSocket frames are small and latency-bound; with
        // Nagle's algorithm a second small write waits for the peer's delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        // the peer's address is what rate limits key on (unless a proxy header is configured)
        let service = self.router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, service).with_graceful_shutdown(async move { signal.cancelled().await });
        let grace = self.grace;
        tokio::select! {
            res = server => res.context("server error")?,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish within the grace period");
            }
        }
        // Background roles stop with the same token; let them finish their batch.
        shutdown.cancel();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!("background tasks did not stop within the grace period");
        }
        (self.close)();
        tracing::info!("hermet stopped");
        Ok(())
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutdown signal received");
        token.cancel();
    });
}
