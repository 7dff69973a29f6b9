//! One consumer loop for every transport and consumer group: read a batch from an
//! [`EventSource`], apply it (projection or notification) together with the new offsets,
//! retry failures with backoff, isolate and dead-letter events that keep failing.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hermet_domain::event::DomainEvent;
use hermet_domain::id::UserId;
use hermet_domain::projection::{Refresh, project};
use hermet_domain::time::now_ms;
use hermet_domain::{Error, Result};
use hermet_store::{
    Database, DeadLetterChange, InboxWrites, LogCursor, NewDeadLetter, OffsetWrites, PipelineWrites, ProjectionWrites,
    StoredEvent, Transaction,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{NOTIFIER, PROJECTORS, part_for};
use crate::App;

/// A consumer's offset moving from `from` to `to` when a batch commits (compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetMove {
    /// The `consumer_offset` row: the consumer's name on the embedded log,
    /// `consumer@topic/partition` on Kafka.
    pub name: String,
    pub from: LogCursor,
    pub to: LogCursor,
}

/// Events read by one consumer, with where each came from and the offsets they move.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub events: Vec<StoredEvent>,
    /// For each event: `outbox TX:POS` or `kafka TOPIC/PARTITION@OFFSET` (dead letters).
    pub origins: Vec<String>,
    pub moves: Vec<OffsetMove>,
}

/// A transport as one consumer sees it.
pub trait EventSource: Send {
    /// The next batch of at most `max` events; `None` after waiting briefly (up to the
    /// poll interval, or until woken) with nothing to read.
    fn next_batch(&mut self, max: u32) -> impl Future<Output = Result<Option<Batch>>> + Send;
    /// The batch's offsets were committed.
    fn committed(&mut self, batch: &Batch);
    /// The stored offsets moved under the consumer (a replay): read them again.
    fn reset(&mut self) -> impl Future<Output = Result<()>> + Send;
    /// Reading keeps failing: start reading afresh (a new client, from the stored
    /// offsets). By default, [`EventSource::reset`].
    fn recover(&mut self) -> impl Future<Output = Result<()>> + Send {
        self.reset()
    }
}

/// Failed reads in a row after which a source starts again from a fresh client.
const READ_FAILURES_BEFORE_RECOVERY: u32 = 3;

/// The embedded transport: the outbox table read as a log from the consumer's offset.
pub struct LogSource<D: Database> {
    app: App<D>,
    consumer: &'static str,
    cursor: LogCursor,
    written: watch::Receiver<u64>,
    poll: Duration,
    /// How long it last waited for events held back by a running transaction.
    held_back: Duration,
    /// When it last looked at its stored offset (and let the caller look at dead letters).
    checked: Instant,
}

/// Waits for events held back by a transaction still running elsewhere in the cluster:
/// from the first, doubling up to the second, until they come through.
const HELD_BACK_WAIT: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(50));

impl<D: Database> LogSource<D> {
    pub async fn new(app: &App<D>, consumer: &'static str) -> Result<Self> {
        let cursor = app.db.consumer_offset(consumer).await?;
        tracing::info!(consumer, tx = cursor.0, "{consumer} resumes at committed position {}", cursor.1);
        if let Some(i) = PROJECTORS.iter().position(|p| *p == consumer) {
            app.pipeline.local.store(true, Ordering::Relaxed);
            app.pipeline.log_positions[i].send_replace(cursor);
        }
        Ok(Self {
            app: app.clone(),
            consumer,
            cursor,
            written: app.written(),
            poll: Duration::from_millis(app.settings.pipeline.poll_interval_ms),
            held_back: Duration::ZERO,
            checked: Instant::now(),
        })
    }

    fn publish_position(&self) {
        if let Some(i) = PROJECTORS.iter().position(|p| *p == self.consumer) {
            self.app.pipeline.log_positions[i].send_replace(self.cursor);
        }
    }
}

impl<D: Database> EventSource for LogSource<D> {
    async fn next_batch(&mut self, max: u32) -> Result<Option<Batch>> {
        loop {
            let events = self.app.db.read_events(self.cursor, max).await?;
            if let Some(last) = events.last().map(|e| e.cursor) {
                let origins = events.iter().map(|e| format!("outbox {}:{}", e.cursor.0, e.cursor.1)).collect();
                let moves = vec![OffsetMove { name: self.consumer.to_owned(), from: self.cursor, to: last }];
                return Ok(Some(Batch { events, origins, moves }));
            }
            // Committed behind a transaction still running somewhere in the cluster: the
            // wake-up for this commit has come and gone, and the next write or poll may be
            // far off, so look again soon.
            if self.app.db.events_held_back(self.cursor).await? {
                let cap = HELD_BACK_WAIT.1.min(self.poll).max(HELD_BACK_WAIT.0);
                self.held_back = (self.held_back * 2).clamp(HELD_BACK_WAIT.0, cap);
                tokio::time::sleep(self.held_back).await;
                return Ok(None);
            }
            self.held_back = Duration::ZERO;
            let woken = tokio::select! {
                r = self.written.changed() => r.is_ok(),
                _ = tokio::time::sleep(self.poll) => false,
            };
            // Woken by a commit in this process: read it at once. The round trips below
            // (a replay's offset, and the caller's look at dead letters) are an idle
            // consumer's, once a poll interval, not a busy one's before every batch.
            if woken && self.checked.elapsed() < self.poll {
                continue;
            }
            self.checked = Instant::now();
            // An idle consumer notices a replay here (a busy one when its offset CAS fails).
            let stored = self.app.db.consumer_offset(self.consumer).await?;
            if stored != self.cursor {
                tracing::info!(consumer = self.consumer, ?stored, "offset moved by a replay; continuing from there");
                self.cursor = stored;
                self.publish_position();
            }
            return Ok(None);
        }
    }

    fn committed(&mut self, batch: &Batch) {
        if let Some(m) = batch.moves.first() {
            self.cursor = m.to;
            self.publish_position();
        }
    }

    async fn reset(&mut self) -> Result<()> {
        self.cursor = self.app.db.consumer_offset(self.consumer).await?;
        tracing::info!(consumer = self.consumer, cursor = ?self.cursor, "offset moved by a replay; continuing from there");
        self.publish_position();
        Ok(())
    }
}

/// Errors worth retrying forever (the database is away) rather than counting as attempts.
fn transient(e: &Error) -> bool {
    matches!(e, Error::Unavailable(_) | Error::DatabaseUnavailable)
}

enum Outcome {
    Committed,
    /// The offsets moved under us (replay): nothing was applied.
    Moved,
}

impl<D: Database> App<D> {
    /// Runs `consumer` on `source` until `shutdown`.
    pub async fn run_consumer<S: EventSource>(
        &self,
        consumer: &'static str,
        mut source: S,
        shutdown: CancellationToken,
    ) {
        tracing::info!(consumer, "consumer started");
        let max = self.settings.pipeline.batch_size;
        let mut errors = 0u32;
        while !shutdown.is_cancelled() {
            let next = tokio::select! {
                b = source.next_batch(max) => b,
                _ = shutdown.cancelled() => break,
            };
            match next {
                Ok(None) => {
                    errors = 0;
                    if let Err(e) = self.retry_requested_dead_letters(consumer).await {
                        tracing::warn!(consumer, error = ?e, "cannot replay requested dead letters");
                    }
                }
                Ok(Some(batch)) => {
                    errors = 0;
                    match self.consume(consumer, &batch, &shutdown).await {
                        Some(Outcome::Committed) => {
                            source.committed(&batch);
                            self.progressed();
                        }
                        Some(Outcome::Moved) => {
                            if let Err(e) = source.reset().await {
                                tracing::warn!(consumer, error = ?e, "cannot re-read offsets");
                            }
                        }
                        None => break, // shutting down
                    }
                }
                Err(e) => {
                    errors += 1;
                    tracing::warn!(consumer, error = ?e, errors, "cannot read events; retrying");
                    // Reading is retried within a second (the source is away, not the
                    // events bad); after a few failures in a row, from a fresh client.
                    if !self.pause_reading(errors, &shutdown).await {
                        break;
                    }
                    if errors.is_multiple_of(READ_FAILURES_BEFORE_RECOVERY) {
                        match source.recover().await {
                            Ok(()) => tracing::info!(consumer, "reading again from a fresh client"),
                            Err(e) => tracing::warn!(consumer, error = ?e, "cannot start a fresh client yet"),
                        }
                    }
                }
            }
        }
        tracing::info!(consumer, "consumer stopped");
    }

    /// The pause before reading again after `attempt` failures ([`super::reconnect_backoff`]);
    /// false when shutting down.
    async fn pause_reading(&self, attempt: u32, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(super::reconnect_backoff(attempt)) => true,
            _ = shutdown.cancelled() => false,
        }
    }

    /// Exponential backoff before retry `attempt` (1-based); false when shutting down.
    async fn pause(&self, attempt: u32, shutdown: &CancellationToken) -> bool {
        let s = &self.settings.pipeline;
        let ms =
            s.retry_backoff_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(16)).min(s.retry_backoff_max_ms);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => true,
            _ = shutdown.cancelled() => false,
        }
    }

    /// Applies a batch with its offsets. Unreadable events go to the dead-letter store at
    /// once (no retry can help); failures are retried with backoff, transient ones (the
    /// database away) until they pass, others `max_attempts` times; then the events are
    /// tried one by one and those that still fail are dead-lettered, so one poison event
    /// never blocks the rest. `None` when shutting down.
    async fn consume(&self, consumer: &'static str, batch: &Batch, shutdown: &CancellationToken) -> Option<Outcome> {
        let mut dead = Vec::new();
        let mut good: Vec<(usize, DomainEvent)> = Vec::new();
        for (i, e) in batch.events.iter().enumerate() {
            match DomainEvent::from_stored(&e.event_type, e.payload.clone()) {
                Ok(ev) => good.push((i, ev)),
                Err(err) => {
                    tracing::error!(consumer, event_type = %e.event_type, origin = %batch.origins[i], error = %err, "unreadable event: dead-lettered");
                    dead.push(dead_letter(consumer, batch, i, format!("unreadable event: {err}"), 1));
                }
            }
        }
        let max_attempts = self.settings.pipeline.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            match self.apply(consumer, batch, &good, &dead, Some(&batch.moves)).await {
                Ok(o) => return Some(o),
                Err(e) if transient(&e) => {
                    tracing::warn!(consumer, error = ?e, "batch failed (transient); retrying");
                    if !self.pause(1, shutdown).await {
                        return None;
                    }
                }
                Err(e) => {
                    attempt += 1;
                    metrics::counter!("projection_batches_failed_total", "consumer" => consumer).increment(1);
                    tracing::error!(consumer, attempt, error = ?e, "batch failed; retrying");
                    if attempt >= max_attempts {
                        break;
                    }
                    if !self.pause(attempt, shutdown).await {
                        return None;
                    }
                }
            }
        }
        // Isolate: each event alone, with its own attempts.
        let mut survivors = Vec::new();
        for (i, ev) in good {
            let mut attempt = 0;
            loop {
                match self.apply(consumer, batch, &[(i, ev.clone())], &[], None).await {
                    Ok(_) => {
                        survivors.push(i);
                        break;
                    }
                    Err(e) if transient(&e) => {
                        if !self.pause(1, shutdown).await {
                            return None;
                        }
                    }
                    Err(e) => {
                        attempt += 1;
                        if attempt >= max_attempts {
                            tracing::error!(consumer, event_type = ev.event_type(), origin = %batch.origins[i], error = ?e, "event failed every attempt: dead-lettered");
                            dead.push(dead_letter(consumer, batch, i, format!("{e:?}"), attempt as i32));
                            break;
                        }
                        if !self.pause(attempt, shutdown).await {
                            return None;
                        }
                    }
                }
            }
        }
        // The applied events stay applied (refreshes are idempotent); commit the dead
        // letters with the offsets.
        loop {
            match self.apply(consumer, batch, &[], &dead, Some(&batch.moves)).await {
                Ok(o) => return Some(o),
                Err(e) => {
                    tracing::warn!(consumer, error = ?e, "cannot commit dead letters; retrying");
                    if !self.pause(1, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// One attempt: the consumer's work for `events`, the dead letters and the offsets.
    async fn apply(
        &self,
        consumer: &'static str,
        batch: &Batch,
        events: &[(usize, DomainEvent)],
        dead: &[NewDeadLetter],
        moves: Option<&[OffsetMove]>,
    ) -> Result<Outcome> {
        let now = now_ms();
        let plan = if consumer == NOTIFIER && !events.is_empty() {
            let list: Vec<(&StoredEvent, &DomainEvent)> = events.iter().map(|(i, e)| (&batch.events[*i], e)).collect();
            self.plan_notifications(&list).await?
        } else {
            Vec::new()
        };
        let mut tx = self.db.begin().await?;
        // The notifier: each recipient's cursor moves on in the same transaction as the
        // offsets, so a redelivered batch never numbers an event twice.
        // An event older than the inbox keeps entries (a replay from far back) is not
        // delivered again: devices had it, and its entry would be pruned at once.
        let oldest = now - (self.settings.pipeline.inbox_retention_secs * 1000) as i64;
        let plan: Vec<_> = plan
            .into_iter()
            .filter(|p| p.notification.occurred_at <= 0 || p.notification.occurred_at >= oldest)
            .collect();
        // Every numbered event of the batch in one append.
        let numbered: Vec<(i64, &[UserId])> =
            plan.iter().filter(|p| p.numbered).map(|p| (p.notification.event_id, p.users.as_slice())).collect();
        let mut cursors =
            if numbered.is_empty() { Vec::new() } else { tx.append_inbox(&numbered, now).await? }.into_iter();
        let mut deliveries = Vec::with_capacity(plan.len());
        for p in plan {
            let targets =
                if p.numbered { cursors.next().unwrap_or_default() } else { p.users.iter().map(|u| (*u, 0)).collect() };
            deliveries.push((p, targets));
        }
        if consumer != NOTIFIER {
            let mut refresh = Refresh::default();
            for (_, e) in events {
                refresh.merge(project(e));
            }
            let part = part_for(consumer, refresh);
            if !part.is_empty() {
                tx.apply_refresh(&part, now).await?;
            }
        }
        for d in dead {
            tx.insert_dead_letter(d, now).await?;
        }
        for m in moves.unwrap_or_default() {
            if !tx.advance_offset(&m.name, m.from, m.to, now).await? {
                // A replay moved the offset: drop this batch (rolled back with `tx`).
                return Ok(Outcome::Moved);
            }
        }
        self.commit_touching(tx).await?;
        self.deliver(deliveries).await;
        // Sync lag: from the event's commit (its outbox time) to this commit.
        let done = now_ms();
        for (i, e) in events {
            metrics::counter!("events_processed_total", "consumer" => consumer, "type" => e.event_type()).increment(1);
            if consumer != NOTIFIER {
                metrics::histogram!("sync_lag_seconds", "consumer" => consumer)
                    .record((done - batch.events[*i].created_at).max(0) as f64 / 1000.0);
            }
        }
        for d in dead {
            metrics::counter!("events_failed_total", "consumer" => consumer, "type" => d.event_type.clone())
                .increment(1);
        }
        Ok(Outcome::Committed)
    }

    /// Applies the dead letters an operator asked to replay (`hermet dlq replay`) for
    /// `consumer`: `replayed` when they pass, back to `pending` with the new error if not.
    pub(crate) async fn retry_requested_dead_letters(&self, consumer: &'static str) -> Result<()> {
        let requested = self.db.dead_letters("replay", 0, 100).await?;
        for d in requested.into_iter().filter(|d| d.consumer == consumer) {
            let payload: serde_json::Value =
                serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::String(d.payload.clone()));
            let stored = StoredEvent {
                cursor: (0, 0),
                event_id: d.event_id,
                event_type: d.event_type.clone(),
                payload: payload.clone(),
                created_at: d.created_at,
            };
            let batch = Batch { events: vec![stored], origins: vec![d.source.clone()], moves: Vec::new() };
            let result = match DomainEvent::from_stored(&d.event_type, payload) {
                Ok(ev) => self.apply(consumer, &batch, &[(0, ev)], &[], None).await.map(|_| ()),
                Err(e) => Err(Error::invalid("payload", format!("unreadable event: {e}"))),
            };
            let change = match &result {
                Ok(()) => DeadLetterChange { status: "replayed".into(), ..Default::default() },
                Err(e) => {
                    DeadLetterChange { status: "pending".into(), error: Some(format!("{e:?}")), ..Default::default() }
                }
            };
            let mut tx = self.db.begin().await?;
            tx.update_dead_letter(d.id, "replay", &change, now_ms()).await?;
            tx.commit().await?;
            tracing::info!(consumer, id = d.id, status = %change.status, "dead letter replayed");
        }
        Ok(())
    }
}

fn dead_letter(consumer: &str, batch: &Batch, i: usize, error: String, attempts: i32) -> NewDeadLetter {
    let e = &batch.events[i];
    let payload = match &e.payload {
        serde_json::Value::String(raw) => raw.clone(),
        other => other.to_string(),
    };
    NewDeadLetter {
        consumer: consumer.to_owned(),
        event_id: e.event_id,
        event_type: e.event_type.clone(),
        payload,
        source: batch.origins[i].clone(),
        error,
        attempts,
    }
}
