//! The event pipeline (`000_70dd81066eae5b2b.txt` "事务 + 异步通知 + 补偿",
//! `003_0aed9671e6f5a289.txt` 方案2).
//!
//! Commands write their events to the outbox in their own transaction. Consumers read
//! them through a transport ([`consumer::EventSource`]): the outbox itself as a log
//! (embedded, [`consumer::LogSource`]) or Kafka (the `hermet-kafka` crate, fed by its
//! outbox relay). The consumer groups are:
//! - `conversation-view-updater` and `contact-view-updater` (async sync mode only):
//!   apply the union of a batch's refreshes in one transaction with their new offsets;
//! - `notifier` (always): decides recipients and hands pushes to a [`crate::push::PushSink`].
//!
//! Failures are retried with backoff; an event that keeps failing goes to the dead-letter
//! store and the consumer moves on ([`dlq`]). A compensation scanner re-emits events for
//! changes that were never published or never projected ([`compensate`]).
//!
//! Read-your-writes: after committing, an `async` command waits (bounded) until both
//! projectors have passed its last event, so its author's next read sees the change.

pub mod compensate;
pub mod consumer;
pub mod dlq;
pub mod monitor;
pub mod notify;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hermet_domain::projection::Refresh;
use hermet_domain::time::now_ms;
use hermet_domain::{Error, Result};
use hermet_store::{Database, LogCursor, OffsetWrites, PipelineWrites, Transaction};
use tokio::sync::watch;

use crate::App;

/// Consumer group that maintains conversation views and their reverse index.
pub const CONVERSATION_VIEW_UPDATER: &str = "conversation-view-updater";
/// Consumer group that maintains contact views and their reverse index.
pub const CONTACT_VIEW_UPDATER: &str = "contact-view-updater";
/// Consumer group that pushes notifications to online users (`000_70dd81066eae5b2b.txt`
/// §3.4).
pub const NOTIFIER: &str = "notifier";
pub const PROJECTORS: [&str; 2] = [CONVERSATION_VIEW_UPDATER, CONTACT_VIEW_UPDATER];
pub const CONSUMERS: [&str; 3] = [CONVERSATION_VIEW_UPDATER, CONTACT_VIEW_UPDATER, NOTIFIER];

/// How often a node without a lease (consumers, relay) asks for it again: a holder that
/// shut down cleanly released it, and is replaced within this interval.
pub const LEASE_RETRY: Duration = Duration::from_millis(500);

/// The pause before trying a transport again after `failures` failures in a row (reading
/// events, publishing them): 100 ms doubling to 1 s at most, so work resumes within a
/// second of the broker or database returning.
pub fn reconnect_backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.saturating_sub(1).min(4)).min(1_000))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Commands update the read models in their own transaction (default).
    DualWrite,
    /// Commands write the outbox only; consumers update the read models.
    Async,
}

/// How events travel from the outbox to the consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The outbox table is the log (default; no other service needed).
    Embedded,
    /// An outbox relay publishes to Kafka; consumers read Kafka.
    Kafka,
}

/// The pipeline's settings; the `[pipeline]` section of hermet's configuration is this
/// struct (serde), except `sync_mode` and `transport`, which come from the top-level
/// `sync_mode` and `kafka_brokers` settings.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    #[serde(skip, default = "dual_write")]
    pub sync_mode: SyncMode,
    #[serde(skip, default = "embedded")]
    pub transport: Transport,
    /// Events per consumer batch (one transaction, one statement per kind of row).
    pub batch_size: u32,
    /// How often consumers look for events written by other processes.
    pub poll_interval_ms: u64,
    /// How long an `async` command waits for its own projection before answering anyway.
    pub read_your_writes_timeout_ms: u64,
    /// Attempts at an event before it goes to the dead-letter store.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `retry_backoff_max_ms`.
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// Concurrent push tasks of the notifier (the worker pool of
    /// `000_70dd81066eae5b2b.txt` §4.3).
    pub notify_workers: usize,
    /// Recipients per push task.
    pub notify_chunk_size: usize,
    /// How often the compensation scanner runs (0: never).
    pub compensation_interval_secs: u64,
    /// How far back it looks.
    pub compensation_lookback_secs: u64,
    /// How recent a change may be and still be left to the pipeline.
    pub compensation_grace_secs: u64,
    /// How long outbox rows are kept once every consumer has passed them (embedded) or
    /// they were published (Kafka); replays from `earliest` reach back this far.
    pub outbox_retention_secs: u64,
    /// How often old outbox rows are pruned (0: never).
    pub outbox_prune_interval_secs: u64,
    /// Users' inbox entries (catch-up by cursor, docs/PROTOCOL.md) are kept this long; at
    /// most `outbox_retention_secs`, since their payloads are read from the outbox.
    pub inbox_retention_secs: u64,
    /// At most this many inbox entries are kept per user (the newest).
    pub inbox_max_per_user: u64,
    /// On the embedded log, one node at a time runs the consumers: it renews a lease of
    /// this length every third of it, and another node takes over once it lapses.
    pub consumer_lease_ms: u64,
    /// Whether `serve` also runs the relay, the consumers and the upkeep (default); false
    /// to run them apart with `hermet relay` and `hermet project`.
    pub serve_runs_pipeline: bool,
}

fn dual_write() -> SyncMode {
    SyncMode::DualWrite
}

fn embedded() -> Transport {
    Transport::Embedded
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            sync_mode: SyncMode::DualWrite,
            transport: Transport::Embedded,
            batch_size: 500,
            poll_interval_ms: 500,
            read_your_writes_timeout_ms: 5_000,
            max_attempts: 5,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 10_000,
            notify_workers: 8,
            notify_chunk_size: 500,
            compensation_interval_secs: 60,
            compensation_lookback_secs: 3_600,
            compensation_grace_secs: 60,
            outbox_retention_secs: 7 * 24 * 3_600,
            outbox_prune_interval_secs: 300,
            inbox_retention_secs: 7 * 24 * 3_600,
            inbox_max_per_user: 10_000,
            consumer_lease_ms: 10_000,
            serve_runs_pipeline: true,
        }
    }
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    Earliest,
    /// Just after this log cursor.
    Cursor(LogCursor),
    /// From the first event written at or after this time (Unix ms).
    Time(i64),
}

/// In-process signals between commands, the relay and consumers.
pub(crate) struct Pipeline {
    /// Bumped after every commit that appended events: wakes the relay and consumers.
    written: watch::Sender<u64>,
    /// Bumped whenever a consumer committed a batch or the relay published one.
    progress: watch::Sender<u64>,
    /// Where each in-process embedded projector stands.
    log_positions: [watch::Sender<LogCursor>; 2],
    /// Whether the embedded projectors run in this process (else their offsets are polled).
    local: AtomicBool,
    /// The projection missed the read-your-writes timeout and has not caught up since:
    /// writes answer after their commit without waiting for it (see [`read_model`]).
    behind: AtomicBool,
    /// The newest write that answered before its projection: once it is projected, the
    /// projection moves again (however slowly) and writes wait for it again.
    behind_at: std::sync::Mutex<LogCursor>,
    push: Arc<dyn crate::push::PushSink>,
    /// The queue of the background task that pushes changed conversation rows, in
    /// order (started on first use).
    conversation_pushes: std::sync::OnceLock<tokio::sync::mpsc::Sender<notify::ConversationPush>>,
}

impl Pipeline {
    /// Where pushes go (the realtime gateway).
    pub(crate) fn push_sink(&self) -> &Arc<dyn crate::push::PushSink> {
        &self.push
    }

    pub(crate) fn new(push: Arc<dyn crate::push::PushSink>) -> Self {
        Self {
            written: watch::channel(0).0,
            progress: watch::channel(0).0,
            log_positions: [watch::channel((0, 0)).0, watch::channel((0, 0)).0],
            local: AtomicBool::new(false),
            behind: AtomicBool::new(false),
            behind_at: std::sync::Mutex::new((0, 0)),
            push,
            conversation_pushes: std::sync::OnceLock::new(),
        }
    }
}

/// The part of a refresh a consumer group owns.
pub(crate) fn part_for(consumer: &str, r: Refresh) -> Refresh {
    if consumer == CONVERSATION_VIEW_UPDATER {
        Refresh {
            channels: r.channels,
            message_channels: r.message_channels,
            message_conversations: r.message_conversations,
            conversations: r.conversations,
            peers: r.peers,
            reverse_channels: r.reverse_channels,
            ..Refresh::default()
        }
    } else {
        Refresh {
            contacts: r.contacts,
            contact_of: r.contact_of,
            reverse_contacts: r.reverse_contacts,
            ..Refresh::default()
        }
    }
}

/// The offset row of a Kafka consumer for one partition.
pub fn partition_offset_name(consumer: &str, topic: &str, partition: i32) -> String {
    format!("{consumer}@{topic}/{partition}")
}

impl<D: Database> App<D> {
    /// Gives up the lease `name` on a clean shutdown, so another node takes it over
    /// within its retry interval instead of waiting for it to expire. Bounded: a database
    /// that does not answer leaves the lease to expire.
    pub async fn release_lease(&self, name: &str, holder: &str) {
        let released = async {
            let mut tx = self.db.begin().await?;
            let released = tx.release_lease(name, holder).await?;
            tx.commit().await?;
            Ok::<bool, hermet_store::StoreError>(released)
        };
        match tokio::time::timeout(Duration::from_secs(2), released).await {
            Ok(Ok(true)) => tracing::info!(lease = name, holder, "lease released"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(lease = name, error = ?e, "cannot release the lease; it expires instead"),
            Err(_) => tracing::warn!(lease = name, "releasing the lease timed out; it expires instead"),
        }
    }

    pub fn sync_mode(&self) -> SyncMode {
        self.settings.pipeline.sync_mode
    }

    pub fn pipeline_settings(&self) -> &PipelineSettings {
        &self.settings.pipeline
    }

    /// The consumers this node's settings call for: the projectors in async mode, and
    /// the notifier always.
    pub fn active_consumers(&self) -> Vec<&'static str> {
        match self.sync_mode() {
            SyncMode::Async => CONSUMERS.to_vec(),
            SyncMode::DualWrite => vec![NOTIFIER],
        }
    }

    /// A receiver that changes whenever this process committed new events.
    pub fn written(&self) -> watch::Receiver<u64> {
        self.pipeline.written.subscribe()
    }

    /// Signals progress (a published or consumed batch) to read-your-writes waiters.
    pub fn progressed(&self) {
        self.pipeline.progress.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Wakes the relay and the consumers of this process (after a commit that appended
    /// events).
    pub(crate) fn wake_consumers(&self) {
        self.pipeline.written.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// In `async` mode, waits until the projectors have applied the log up to `c` (or the
    /// read-your-writes timeout passed); at once in dual-write mode. The last step of a
    /// command (`crate::commit`), on this node's transport.
    ///
    /// A projection known to be behind (it missed the timeout and has not caught up
    /// since: broker down, projector dead) is waited for [`BEHIND_WAIT`] at most, so a
    /// write answers right after its commit instead of stalling for the whole timeout on
    /// every request; the response says the read model is behind ([`read_model`]). Once
    /// the newest such write is projected, the projection is moving again and writes wait
    /// for it as before.
    /// False when it did not catch up in time.
    #[tracing::instrument(level = "debug", skip_all)]
    pub(crate) async fn read_your_writes(&self, c: LogCursor) -> bool {
        if self.sync_mode() != SyncMode::Async {
            return true;
        }
        let configured = Duration::from_millis(self.settings.pipeline.read_your_writes_timeout_ms);
        let mut behind = self.pipeline.behind.load(Ordering::Relaxed);
        if behind {
            let last = *self.pipeline.behind_at.lock().unwrap_or_else(|p| p.into_inner());
            if self.projected_within(last, Duration::ZERO).await {
                self.caught_up();
                behind = false;
            }
        }
        let timeout = if behind { configured.min(BEHIND_WAIT) } else { configured };
        if self.projected_within(c, timeout).await {
            self.caught_up();
            return true;
        }
        {
            let mut at = self.pipeline.behind_at.lock().unwrap_or_else(|p| p.into_inner());
            *at = (*at).max(c);
        }
        metrics::counter!("read_your_writes_timeouts_total").increment(1);
        if !self.pipeline.behind.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "the projection did not catch up within the read-your-writes timeout: writes answer after \
                 their commit, marked as ahead of the read models, until it does"
            );
            metrics::gauge!("read_model_behind").set(1.0);
        }
        false
    }

    fn caught_up(&self) {
        if self.pipeline.behind.swap(false, Ordering::Relaxed) {
            tracing::info!("the projection caught up: writes wait for their read models again");
            metrics::gauge!("read_model_behind").set(0.0);
        }
    }

    /// Whether the projectors applied the log up to `c` within `timeout` (zero: now).
    async fn projected_within(&self, c: LogCursor, timeout: Duration) -> bool {
        match self.settings.pipeline.transport {
            Transport::Embedded => self.wait_projected(c, timeout).await,
            Transport::Kafka => self.wait_projected_kafka(c, timeout).await,
        }
    }

    /// Whether the projectors applied the log up to `target` within `timeout`.
    async fn wait_projected(&self, target: LogCursor, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for (i, name) in PROJECTORS.iter().enumerate() {
            let mut rx = self.pipeline.log_positions[i].subscribe();
            loop {
                if *rx.borrow_and_update() >= target {
                    break;
                }
                let local = self.pipeline.local.load(Ordering::Relaxed);
                if !local && self.db.consumer_offset(name).await.map(|o| o >= target).unwrap_or(false) {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    tracing::debug!(consumer = name, "projection not caught up in time");
                    return false;
                }
                let step = if local { left } else { left.min(Duration::from_millis(10)) };
                let _ = tokio::time::timeout(step, rx.changed()).await;
            }
        }
        true
    }

    /// Kafka: the event is projected once the relay has recorded its partition and offset
    /// and each projector's offset for that partition is past it.
    async fn wait_projected_kafka(&self, target: LogCursor, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut rx = self.pipeline.progress.subscribe();
        loop {
            rx.borrow_and_update();
            if self.kafka_projected(target.1).await.unwrap_or(false) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(10)), rx.changed()).await;
        }
    }

    async fn kafka_projected(&self, position: i64) -> Result<bool> {
        let Some(p) = self.db.publication(position).await? else { return Ok(false) };
        for name in PROJECTORS {
            let (_, next) = self.db.consumer_offset(&partition_offset_name(name, &p.topic, p.partition)).await?;
            if next <= p.offset {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Events `consumer` has not applied yet on this node's transport (on Kafka, counting
    /// the rows the relay has not published).
    pub async fn events_left(&self, consumer: &str) -> Result<i64> {
        Ok(match self.settings.pipeline.transport {
            Transport::Embedded => self.db.events_after(self.db.consumer_offset(consumer).await?).await?,
            Transport::Kafka => self.db.undrained_on_kafka(consumer).await?,
        })
    }

    /// Waits until every consumer this node runs has applied every event (tests, tools).
    pub async fn wait_drained(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = false;
            for name in self.active_consumers() {
                behind |= self.events_left(name).await? > 0;
            }
            if !behind {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable("the consumers did not drain in time"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `hermet replay` on the embedded log: moves a consumer's offset; a running consumer
    /// notices at its next batch (offsets are compare-and-set) and re-consumes from there.
    /// (On Kafka, `hermet-kafka` moves the per-partition offsets.)
    pub async fn replay(&self, consumer: &str, from: ReplayFrom) -> Result<LogCursor> {
        self.check_replayable(consumer)?;
        let at = match from {
            ReplayFrom::Earliest => (0, 0),
            ReplayFrom::Cursor(c) => c,
            ReplayFrom::Time(ms) => self.db.cursor_before_time(ms).await?,
        };
        let mut tx = self.db.begin().await?;
        tx.set_offset(consumer, at, now_ms()).await?;
        tx.commit().await?;
        self.wake_consumers();
        Ok(at)
    }
}

impl<D: Database> App<D> {
    /// Refuses a replay no consumer would carry out: an unknown name, or a projector in
    /// dual-write mode (no such consumer runs; commands refresh the read models in their
    /// own transactions, and `hermet rebuild-views` rebuilds them).
    pub fn check_replayable(&self, consumer: &str) -> Result<()> {
        check_consumer(consumer)?;
        if self.active_consumers().contains(&consumer) {
            return Ok(());
        }
        Err(Error::invalid(
            "consumer",
            format!(
                "{consumer} does not run in dual_write mode: commands update the read models in their own \
                 transaction; use `hermet rebuild-views` to rebuild them"
            ),
        ))
    }
}

/// How long a write waits for a projection known to be behind.
pub const BEHIND_WAIT: Duration = Duration::from_millis(50);

/// Whether a request's writes are ahead of the read models: set by read-your-writes when
/// the projection did not catch up, read by the HTTP layer (`X-Read-Model: behind`).
pub mod read_model {
    use std::cell::Cell;

    tokio::task_local! {
        static BEHIND: Cell<bool>;
    }

    /// Runs `f`, telling whether any write in it answered before its read models caught up.
    pub async fn tracked<F: std::future::Future>(f: F) -> (F::Output, bool) {
        BEHIND.scope(Cell::new(false), async move { (f.await, BEHIND.with(Cell::get)) }).await
    }

    pub(crate) fn mark_behind() {
        let _ = BEHIND.try_with(|b| b.set(true));
    }
}

/// Refuses names that are not consumer groups.
fn check_consumer(consumer: &str) -> Result<()> {
    if CONSUMERS.contains(&consumer) {
        Ok(())
    } else {
        Err(Error::invalid("consumer", format!("unknown consumer {consumer}; known: {}", CONSUMERS.join(", "))))
    }
}
