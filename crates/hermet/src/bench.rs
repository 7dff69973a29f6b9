//! `hermet bench pipeline`: the event pipeline's own throughput, measured in-process on
//! the configured database and transport (no HTTP in the way):
//! - the **relay** (Kafka only): how fast a backlog of outbox rows is published to the
//!   broker and marked published;
//! - the **conversation projector**: how fast `conversation-view-updater` drains the same
//!   backlog, from the embedded log or from Kafka.
//!
//! It writes its own backlog first (users, groups of three, then `--messages` sends, with
//! the pipeline stopped), so it needs a fresh database. Sync lag under a steady event
//! rate is measured against a running server instead (`hermet bench sync-lag`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hermet_app::pipeline::CONVERSATION_VIEW_UPDATER;
use hermet_app::pipeline::consumer::LogSource;
use hermet_app::{App, MemoryPush, Principal};
use hermet_domain::id::{ChannelId, IdGenerator, SessionId, UserId};
use hermet_domain::message::{Mentions, MessageType};
use hermet_store::Database;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SyncModeConfig};

/// Members per bench group (each message refreshes this many conversation rows).
const GROUP_SIZE: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub events: i64,
    pub seconds: f64,
    pub events_per_sec: f64,
}

impl Throughput {
    fn of(events: i64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self { events, seconds, events_per_sec: events as f64 / seconds.max(1e-9) }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub backend: &'static str,
    pub transport: &'static str,
    pub groups: usize,
    pub members_per_group: usize,
    pub messages: usize,
    /// Events in the outbox when the pipeline started (setup events included).
    pub backlog_events: i64,
    /// Writing the backlog (dual-write sends at `concurrency`); not the thing measured.
    pub backlog_write: Throughput,
    pub relay: Option<Throughput>,
    pub projector: Throughput,
}

fn err(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

/// Polls `remaining` every 10 ms until it reports 0; returns the time taken.
async fn until_zero<F, Fut>(what: &str, progress: &impl Fn(String), mut remaining: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i64>>,
{
    let start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let left = remaining().await?;
        if left == 0 {
            return Ok(start.elapsed());
        }
        if last_report.elapsed() > Duration::from_secs(1) {
            progress(format!("{what}: {left} events left"));
            last_report = Instant::now();
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("{what} did not finish within 10 minutes ({left} events left)");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs the pipeline benchmark on `db` (which must hold no events); the backend is
/// chosen by `commands::bench_pipeline`.
pub(crate) async fn run<D: Database>(
    db: D,
    config: &Config,
    messages: usize,
    groups: usize,
    concurrency: usize,
    progress: impl Fn(String),
) -> anyhow::Result<PipelineReport> {
    db.migrate().await.context("migration failed")?;
    if db.events_after((0, 0)).await.map_err(err)? > 0 {
        bail!("the database already holds events; the bench measures its own backlog: give it a fresh database");
    }
    // Writes go through the application with the pipeline stopped; dual-write keeps the
    // sends from waiting for projectors that are not running yet.
    let mut writer_config = config.clone();
    writer_config.sync_mode = SyncModeConfig::DualWrite;
    let ids = Arc::new(IdGenerator::new(config.node_id)?);
    let app = App::new(
        db.clone(),
        ids,
        writer_config.auth_settings(),
        writer_config.limits(),
        writer_config.pipeline_settings(),
        Arc::new(MemoryPush::new(1_000)),
    )
    .await
    .map_err(err)?;

    let admin = Principal { user_id: UserId(0), session_id: SessionId(0), is_admin: true, lists_generation: None };
    let total_users = groups * GROUP_SIZE;
    let mut user_ids = Vec::with_capacity(total_users);
    while user_ids.len() < total_users {
        let from = user_ids.len();
        let chunk: Vec<hermet_app::admin::BulkUser> = (from..total_users
            .min(from + config.limits.max_bulk_users.min(5_000)))
            .map(|i| hermet_app::admin::BulkUser {
                account_type: hermet_domain::user::AccountType::Email,
                account: format!("pipeline-bench-{i}@bench.hermet"),
                credential: None,
                nickname: format!("bench {i}"),
                avatar: None,
            })
            .collect();
        let created = app.bulk_create_users(admin, chunk, false).await.map_err(err)?;
        user_ids.extend(created.into_iter().map(|u| u.user_id));
    }
    let mut channels: Vec<(Principal, ChannelId)> = Vec::with_capacity(groups);
    for (g, members) in user_ids.chunks(GROUP_SIZE).enumerate() {
        let owner =
            Principal { user_id: members[0], session_id: SessionId(0), is_admin: false, lists_generation: None };
        let c = app.create_group(owner, &format!("bench {g}"), None, members[1..].to_vec()).await.map_err(err)?;
        channels.push((owner, c.id));
    }
    progress(format!("{groups} groups of {GROUP_SIZE} created; writing {messages} messages"));

    let start = Instant::now();
    let channels = Arc::new(channels);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let (app, channels) = (app.clone(), channels.clone());
        tasks.spawn(async move {
            let mut i = worker;
            while i < messages {
                let (who, channel) = channels[i % channels.len()];
                let req = hermet_app::messages::SendMessage {
                    msg_type: MessageType::Text,
                    content: serde_json::json!({"text": format!("bench message {i}")}),
                    mentions: Mentions::None,
                    client_msg_id: None,
                    reply_to: None,
                };
                app.send_message(who, channel, req).await?;
                i += concurrency.max(1);
            }
            Ok::<(), hermet_domain::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r?.map_err(err)?;
    }
    let backlog_write = Throughput::of(messages as i64, start.elapsed());
    let backlog_events = db.events_after((0, 0)).await.map_err(err)?;
    progress(format!(
        "backlog of {backlog_events} events written in {:.1} s; starting the pipeline",
        backlog_write.seconds
    ));

    let shutdown = CancellationToken::new();
    let result = measure(&app, config, backlog_events, &shutdown, &progress).await;
    shutdown.cancel();
    db.close();
    let (relay, projector) = result?;
    Ok(PipelineReport {
        backend: db.backend(),
        transport: if config.kafka_brokers.is_some() { "kafka" } else { "embedded" },
        groups,
        members_per_group: GROUP_SIZE,
        messages,
        backlog_events,
        backlog_write,
        relay,
        projector,
    })
}

async fn measure<D: Database>(
    app: &App<D>,
    config: &Config,
    backlog: i64,
    shutdown: &CancellationToken,
    progress: &impl Fn(String),
) -> anyhow::Result<(Option<Throughput>, Throughput)> {
    let db = app.db.clone();
    match config.kafka_settings() {
        None => {
            let source = LogSource::new(app, CONVERSATION_VIEW_UPDATER).await.map_err(err)?;
            let (a, t) = (app.clone(), shutdown.clone());
            tokio::spawn(async move { a.run_consumer(CONVERSATION_VIEW_UPDATER, source, t).await });
            let took = until_zero("projector", progress, || async {
                app.events_left(CONVERSATION_VIEW_UPDATER).await.map_err(err)
            })
            .await?;
            Ok((None, Throughput::of(backlog, took)))
        }
        Some(k) => {
            hermet_kafka::ensure_topics(&k).await?;
            let relay = hermet_kafka::relay::Relay::new(app.clone(), k.clone(), "bench".into())?;
            tokio::spawn(relay.run(shutdown.clone()));
            let relay_took =
                until_zero("relay", progress, || async { Ok(db.outbox_backlog().await.map_err(err)?.0) }).await?;
            let source =
                hermet_kafka::source::KafkaSource::new(app, &k, CONVERSATION_VIEW_UPDATER).await.map_err(err)?;
            let (a, t) = (app.clone(), shutdown.clone());
            tokio::spawn(async move { a.run_consumer(CONVERSATION_VIEW_UPDATER, source, t).await });
            let took = until_zero("projector", progress, || async {
                app.events_left(CONVERSATION_VIEW_UPDATER).await.map_err(err)
            })
            .await?;
            Ok((Some(Throughput::of(backlog, relay_took)), Throughput::of(backlog, took)))
        }
    }
}
