//! The one-shot commands (`hermet compensate`, `prune-outbox`, `dlq`, `check-consistency`,
//! `rebuild-views`, `replay`, `bench pipeline`, `migrate`): each opens the configured
//! database, builds the application without serving, does one thing and closes the pools.

use std::time::Duration;

use anyhow::Context;
use hermet_store::Backend;
use hermet_store::postgres::PgDatabase;
use hermet_store::sqlite::SqliteDatabase;
use hermet_store::{Database, MigrationReport};

use crate::config::{Config, redact_url};
use crate::startup::{app_for, with_database};

/// `hermet compensate`: one scan of groups created in `[since, until)`.
pub async fn compensate(
    config: &Config,
    since: i64,
    until: i64,
) -> anyhow::Result<hermet_app::pipeline::compensate::CompensationReport> {
    with_database!(config, |db| {
        let app = app_for(db.clone(), config).await?;
        let r = app.compensate(since, until).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        db.close();
        Ok(r)
    })
}

/// `hermet prune-outbox`: one pruning pass (what the upkeep does periodically).
pub async fn prune_outbox(config: &Config) -> anyhow::Result<u64> {
    with_database!(config, |db| {
        let app = app_for(db.clone(), config).await?;
        let r = app.prune_outbox().await.map_err(|e| anyhow::anyhow!("{e:?}"));
        db.close();
        r
    })
}

/// What `hermet dlq` does.
#[derive(Debug, Clone)]
pub enum DlqAction {
    List { status: String, after: i64, limit: u32 },
    Show(i64),
    Replay { id: i64, payload: Option<String> },
    Discard(i64),
}

/// `hermet dlq …`: the dead letters it listed or changed.
pub async fn dlq(config: &Config, action: DlqAction) -> anyhow::Result<Vec<hermet_store::DeadLetter>> {
    with_database!(config, |db| {
        let app = app_for(db.clone(), config).await?;
        let r = match action {
            DlqAction::List { status, after, limit } => app.dead_letters(&status, after, limit).await,
            DlqAction::Show(id) => app.dead_letter(id).await.map(|d| vec![d]),
            DlqAction::Replay { id, payload } => app.request_dead_letter_replay(id, payload).await.map(|d| vec![d]),
            DlqAction::Discard(id) => app.discard_dead_letter(id).await.map(|d| vec![d]),
        };
        db.close();
        r.map_err(|e| anyhow::anyhow!("{e}"))
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

/// Where `hermet replay` put a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayedTo {
    /// Embedded log: just after this cursor.
    Log(hermet_store::LogCursor),
    /// Kafka: the next offset of every partition (`consumer@topic/partition`).
    Kafka(Vec<(String, i64)>),
}

/// `hermet replay`: moves a consumer's offsets; it re-consumes from there.
pub async fn replay(
    config: &Config,
    consumer: &str,
    from: hermet_app::pipeline::ReplayFrom,
) -> anyhow::Result<ReplayedTo> {
    use hermet_app::pipeline::ReplayFrom;
    with_database!(config, |db| {
        let app = app_for(db.clone(), config).await?;
        let r = match config.kafka_settings() {
            None => app.replay(consumer, from).await.map(ReplayedTo::Log),
            Some(k) => {
                let ms = match from {
                    ReplayFrom::Earliest => 0,
                    ReplayFrom::Time(ms) => ms,
                    ReplayFrom::Cursor(_) => anyhow::bail!("on Kafka, --from is earliest or a Unix time in ms"),
                };
                hermet_kafka::source::replay(&app, &k, consumer, ms).await.map(ReplayedTo::Kafka)
            }
        };
        db.close();
        r.map_err(|e| anyhow::anyhow!("{e}"))
    })
}

/// `hermet bench pipeline`: the relay's and the projector's throughput on the configured
/// database and transport (see `crate::bench`).
pub async fn bench_pipeline(
    config: &Config,
    messages: usize,
    groups: usize,
    concurrency: usize,
    progress: impl Fn(String),
) -> anyhow::Result<crate::bench::PipelineReport> {
    with_database!(config, |db| crate::bench::run(db, config, messages, groups, concurrency, progress).await)
}

/// `hermet bench search` on the configured database.
pub async fn bench_search(
    config: &Config,
    bench: crate::search_bench::SearchBench,
    progress: impl Fn(String),
) -> anyhow::Result<crate::search_bench::SearchReport> {
    with_database!(config, |db| crate::search_bench::run(db, config, bench, progress).await)
}

/// After `hermet replay`: reports how many events `consumer` still has to apply (every
/// 500 ms, through `progress`) until it has caught up. The consumer runs elsewhere
/// (`hermet serve` or `hermet project`); this only watches its offsets.
pub async fn follow_consumer(config: &Config, consumer: &str, progress: impl Fn(i64)) -> anyhow::Result<()> {
    with_database!(config, |db| {
        let app = app_for(db.clone(), config).await?;
        loop {
            let left = app.events_left(consumer).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            progress(left);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        db.close();
        Ok(())
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
