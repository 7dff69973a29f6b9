//! The event pipeline's embedded transport and the asynchronous sync mode (seed 003 方案2
//! on the outbox as log).
//!
//! In `async` mode commands write the write side and the outbox only; the consumers
//! `conversation-view-updater` and `contact-view-updater` read the outbox in log order,
//! apply the union of a batch's refreshes in one transaction together with their new
//! offset, and start again from that offset after a restart. New events wake them at once
//! (in process); events written by other processes are found by polling.
//!
//! Read-your-writes: after committing, an `async` command waits (bounded) until both
//! consumers have passed its last event, so its author's next read sees the change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hermet_domain::event::DomainEvent;
use hermet_domain::projection::{Refresh, project};
use hermet_domain::time::now_ms;
use hermet_domain::{Error, Result};
use hermet_store::{Database, LogCursor, OffsetWrites, ProjectionWrites, Transaction};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::App;

/// Consumer group that maintains conversation views and their reverse index.
pub const CONVERSATION_VIEW_UPDATER: &str = "conversation-view-updater";
/// Consumer group that maintains contact views and their reverse index.
pub const CONTACT_VIEW_UPDATER: &str = "contact-view-updater";
pub const PROJECTORS: [&str; 2] = [CONVERSATION_VIEW_UPDATER, CONTACT_VIEW_UPDATER];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Commands update the read models in their own transaction (default).
    DualWrite,
    /// Commands write the outbox only; consumers update the read models.
    Async,
}

#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub sync_mode: SyncMode,
    /// Events per consumer batch (one transaction, one statement per kind of row).
    pub batch_size: u32,
    /// How often consumers look for events written by other processes.
    pub poll_interval_ms: u64,
    /// How long an `async` command waits for its own projection before answering anyway.
    pub read_your_writes_timeout_ms: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            sync_mode: SyncMode::DualWrite,
            batch_size: 500,
            poll_interval_ms: 500,
            read_your_writes_timeout_ms: 5_000,
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

/// In-process signals between commands and consumers.
pub(crate) struct Pipeline {
    /// Bumped after every commit that appended events: wakes the consumers.
    written: watch::Sender<u64>,
    /// Where each in-process consumer stands.
    progress: [watch::Sender<LogCursor>; 2],
    /// Whether the consumers run in this process (else their offsets are polled).
    local: AtomicBool,
}

impl Pipeline {
    pub(crate) fn new() -> Self {
        Self {
            written: watch::channel(0).0,
            progress: [watch::channel((0, 0)).0, watch::channel((0, 0)).0],
            local: AtomicBool::new(false),
        }
    }
}

/// The part of a refresh a consumer group owns.
fn part_for(consumer: &str, r: Refresh) -> Refresh {
    if consumer == CONVERSATION_VIEW_UPDATER {
        Refresh {
            channels: r.channels,
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

impl<D: Database> App<D> {
    pub fn sync_mode(&self) -> SyncMode {
        self.settings.pipeline.sync_mode
    }

    /// Commits `tx`; wakes the consumers when it wrote events and, in `async` mode, waits
    /// for their projection (read-your-writes).
    pub(crate) async fn commit(&self, tx: D::Tx) -> Result<()> {
        let cursor = tx.commit().await?;
        if let Some(c) = cursor {
            self.pipeline.written.send_modify(|g| *g = g.wrapping_add(1));
            if self.sync_mode() == SyncMode::Async {
                self.wait_projected(c).await;
            }
        }
        Ok(())
    }

    async fn wait_projected(&self, target: LogCursor) {
        let timeout = Duration::from_millis(self.settings.pipeline.read_your_writes_timeout_ms);
        let deadline = Instant::now() + timeout;
        for (i, name) in PROJECTORS.iter().enumerate() {
            let mut rx = self.pipeline.progress[i].subscribe();
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
                    tracing::warn!(consumer = name, "projection did not catch up within the read-your-writes timeout");
                    metrics::counter!("read_your_writes_timeouts_total").increment(1);
                    return;
                }
                let step = if local { left } else { left.min(Duration::from_millis(10)) };
                let _ = tokio::time::timeout(step, rx.changed()).await;
            }
        }
    }

    /// Waits until every consumer has applied every event in the log (tests, tools).
    pub async fn wait_drained(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let head = self.db.log_head().await?;
            let mut behind = false;
            for name in PROJECTORS {
                if self.db.consumer_offset(name).await? < head {
                    behind = true;
                }
            }
            if !behind {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable("the projectors did not drain in time"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `hermet replay`: moves a consumer to `from`; a running consumer notices at its next
    /// batch (offsets are compare-and-set) and re-projects from there.
    pub async fn replay(&self, consumer: &str, from: ReplayFrom) -> Result<LogCursor> {
        if !PROJECTORS.contains(&consumer) {
            return Err(Error::invalid(
                "consumer",
                format!("unknown consumer {consumer}; known: {}", PROJECTORS.join(", ")),
            ));
        }
        let at = match from {
            ReplayFrom::Earliest => (0, 0),
            ReplayFrom::Cursor(c) => c,
            ReplayFrom::Time(ms) => self.db.cursor_before_time(ms).await?,
        };
        let mut tx = self.db.begin().await?;
        tx.set_offset(consumer, at, now_ms()).await?;
        tx.commit().await?;
        self.pipeline.written.send_modify(|g| *g = g.wrapping_add(1));
        Ok(at)
    }

    /// Runs one consumer group until `shutdown`: reads the outbox from its offset, applies
    /// each batch's refresh and the new offset in one transaction.
    pub async fn run_projector(&self, consumer: &'static str, shutdown: CancellationToken) {
        let idx = PROJECTORS.iter().position(|p| *p == consumer).unwrap_or(0);
        self.pipeline.local.store(true, Ordering::Relaxed);
        let mut written = self.pipeline.written.subscribe();
        let poll = Duration::from_millis(self.settings.pipeline.poll_interval_ms);
        let mut cursor = loop {
            match self.db.consumer_offset(consumer).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(consumer, error = %e, "cannot read the consumer offset; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        };
        self.pipeline.progress[idx].send_replace(cursor);
        tracing::info!(consumer, ?cursor, "projector started");
        let mut backoff = Duration::from_millis(50);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.project_batch(consumer, cursor).await {
                Ok(Some(next)) => {
                    cursor = next;
                    self.pipeline.progress[idx].send_replace(cursor);
                    backoff = Duration::from_millis(50);
                }
                Ok(None) => {
                    tokio::select! {
                        _ = written.changed() => {}
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    // Idle consumers notice a replay here (busy ones at their next batch).
                    if let Ok(stored) = self.db.consumer_offset(consumer).await
                        && stored != cursor
                    {
                        tracing::info!(consumer, ?stored, "offset moved by a replay; continuing from there");
                        cursor = stored;
                        self.pipeline.progress[idx].send_replace(cursor);
                    }
                }
                Err(e) => {
                    tracing::error!(consumer, error = ?e, "projection batch failed; retrying");
                    metrics::counter!("projection_batches_failed_total", "consumer" => consumer).increment(1);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!(consumer, "projector stopped");
    }

    /// One batch; `None` when there was nothing to do.
    async fn project_batch(&self, consumer: &'static str, after: LogCursor) -> Result<Option<LogCursor>> {
        let events = self.db.read_events(after, self.settings.pipeline.batch_size).await?;
        let Some(last) = events.last().map(|e| e.cursor) else { return Ok(None) };
        let mut refresh = Refresh::default();
        let now = now_ms();
        for e in &events {
            match DomainEvent::from_stored(&e.event_type, e.payload.clone()) {
                Ok(ev) => refresh.merge(project(&ev)),
                Err(err) => {
                    // Unknown to this version (written by a newer node) or malformed: the
                    // dead-letter store of the full pipeline will keep these; until then
                    // they are logged and counted, and the consumer moves on.
                    tracing::error!(consumer, event_type = %e.event_type, cursor = ?e.cursor, error = %err, "unreadable event skipped");
                    metrics::counter!("events_failed_total", "consumer" => consumer, "type" => e.event_type.clone())
                        .increment(1);
                }
            }
            metrics::histogram!("sync_lag_seconds", "consumer" => consumer)
                .record((now - e.created_at).max(0) as f64 / 1000.0);
        }
        let part = part_for(consumer, refresh);
        let mut tx = self.db.begin().await?;
        if !part.is_empty() {
            tx.apply_refresh(&part, now).await?;
        }
        if !tx.advance_offset(consumer, after, last, now).await? {
            // A replay moved this consumer's offset: drop the batch (rolled back with the
            // transaction) and continue from where it now stands.
            drop(tx);
            let moved = self.db.consumer_offset(consumer).await?;
            tracing::info!(consumer, ?moved, "offset moved by a replay; continuing from there");
            return Ok(Some(moved));
        }
        tx.commit().await?;
        metrics::counter!("events_processed_total", "consumer" => consumer).increment(events.len() as u64);
        Ok(Some(last))
    }
}
