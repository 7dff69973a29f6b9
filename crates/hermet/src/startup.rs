//! Building and running a node: pick the backend once from the database URL, migrate,
//! build the application and the router, serve until the shutdown token fires, drain
//! in-flight requests, close the pools.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hermet_api::AppState;
use hermet_app::App;
use hermet_domain::id::IdGenerator;
use hermet_store::postgres::PgDatabase;
use hermet_store::sqlite::SqliteDatabase;
use hermet_store::{Backend, Database, MigrationReport};
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
    /// Starts the background roles (projectors in async mode) on the tracker.
    start_background: StartBackground,
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

/// Builds the application without serving (maintenance commands).
async fn app_for<D: Database>(db: D, config: &Config) -> anyhow::Result<App<D>> {
    let ids = Arc::new(IdGenerator::new(config.node_id)?);
    App::new(db, ids, config.auth_settings(), config.limits(), config.pipeline_settings())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the application: {e:?}"))
}

/// Starts every projector of `app` on `tasks`, stopping with `shutdown`.
fn spawn_projectors<D: Database>(app: &App<D>, tasks: &TaskTracker, shutdown: &CancellationToken) {
    for name in hermet_app::pipeline::PROJECTORS {
        let (app, token) = (app.clone(), shutdown.clone());
        tasks.spawn(async move { app.run_projector(name, token).await });
    }
}

/// `hermet project`: runs the consumers that maintain the read models, without HTTP,
/// until `shutdown` (scaled apart from the API; `serve` in async mode runs them too).
pub async fn run_projectors(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    with_database!(config, |db| {
        let app = app_for(db.clone(), config).await?;
        let tasks = TaskTracker::new();
        spawn_projectors(&app, &tasks, &shutdown);
        tasks.close();
        tasks.wait().await;
        db.close();
        Ok(())
    })
}

/// `hermet check-consistency`: compares the read models with the write side.
pub async fn check_consistency(
    config: &Config,
    repair: bool,
    user: Option<i64>,
) -> anyhow::Result<hermet_app::consistency::ConsistencyReport> {
    with_database!(config, |db| {
        let app = app_for(db.clone(), config).await?;
        let report = app
            .check_consistency(repair, user.map(hermet_domain::id::UserId), |n| eprint!("\rchecked {n} users"))
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        eprintln!();
        db.close();
        Ok(report)
    })
}

/// `hermet rebuild-views`: rebuilds the read models from the write side.
pub async fn rebuild_views(config: &Config, user: Option<i64>) -> anyhow::Result<u64> {
    with_database!(config, |db| {
        let app = app_for(db.clone(), config).await?;
        let n = app
            .rebuild_views(user.map(hermet_domain::id::UserId), |n| eprint!("\rrebuilt {n} users"))
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        eprintln!();
        db.close();
        Ok(n)
    })
}

/// `hermet replay`: moves a consumer's offset; it re-projects from there.
pub async fn replay(
    config: &Config,
    consumer: &str,
    from: hermet_app::pipeline::ReplayFrom,
) -> anyhow::Result<hermet_store::LogCursor> {
    with_database!(config, |db| {
        let app = app_for(db.clone(), config).await?;
        let at = app.replay(consumer, from).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        db.close();
        Ok(at)
    })
}

/// `hermet migrate`: applies pending migrations and reports them.
pub async fn migrate(config: &Config) -> anyhow::Result<MigrationReport> {
    with_database!(config, |db| {
        let report = db.migrate().await.context("migration failed")?;
        db.close();
        Ok(report)
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
        let app = app_for(db.clone(), config).await?;
        let background_app = app.clone();
        let start_background: StartBackground = Box::new(move |tasks, token| {
            if background_app.sync_mode() == hermet_app::SyncMode::Async {
                spawn_projectors(&background_app, tasks, token);
            }
        });
        let state = AppState { app, metrics: hermet_api::metrics::recorder() };
        let router = hermet_api::router(state, &config.http_settings());
        let listener = TcpListener::bind(config.listen_addr())
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let backend = db.backend();
        Ok(Self {
            listener,
            router,
            start_background,
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

    /// Serves until `shutdown` is cancelled, then stops accepting, gives in-flight
    /// requests up to the grace period, and closes the pools.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.listener.local_addr()?;
        let tasks = TaskTracker::new();
        (self.start_background)(&tasks, &shutdown);
        tasks.close();
        tracing::info!(%addr, backend = self.backend, "hermet listening");
        let signal = shutdown.clone();
        let server =
            axum::serve(self.listener, self.router).with_graceful_shutdown(async move { signal.cancelled().await });
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
