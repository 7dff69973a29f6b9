//! The outbox: events appended in a command's transaction, read back as a log, and the
//! consumers' offsets in it.

use std::future::Future;

use hermet_domain::event::OutboxEvent;

use super::StoreResult;

pub trait OutboxWrites {
    /// Appends events to the outbox in the current transaction.
    fn append_events(&mut self, events: &[OutboxEvent]) -> impl Future<Output = StoreResult<()>> + Send;
}

/// A position in the outbox log: (transaction id, position). Consumers read the log in
/// this order; on PostgreSQL only rows of finished transactions are read (see the schema),
/// on SQLite the transaction id is always 0.
pub type LogCursor = (i64, i64);

/// An event as read back from the outbox log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub cursor: LogCursor,
    pub event_id: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// The outbox read as a log (the embedded transport).
pub trait EventLog {
    /// Where `consumer` stands; (0, 0) before its first event.
    fn consumer_offset(&self, consumer: &str) -> impl Future<Output = StoreResult<LogCursor>> + Send;
    /// The cursor just before the first event written at or after `ms` (replay by time).
    fn cursor_before_time(&self, ms: i64) -> impl Future<Output = StoreResult<LogCursor>> + Send;
    /// The cursor of the newest event in the log ((0, 0) when empty).
    fn log_head(&self) -> impl Future<Output = StoreResult<LogCursor>> + Send;
    /// Every offset row whose name starts with `prefix` (a Kafka consumer's partitions).
    fn consumer_offsets(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<(String, LogCursor)>>> + Send;
    /// Events after `after`, in log order, at most `limit`.
    fn read_events(&self, after: LogCursor, limit: u32) -> impl Future<Output = StoreResult<Vec<StoredEvent>>> + Send;
    /// Whether events after `after` are committed but held back by [`read_events`](Self::read_events):
    /// on PostgreSQL, written by a transaction no older than the oldest one still running
    /// anywhere in the cluster (which might yet commit an event behind them). SQLite's one
    /// writer commits in log order, so never there.
    fn events_held_back(&self, after: LogCursor) -> impl Future<Output = StoreResult<bool>> + Send;
}

pub trait OffsetWrites {
    /// Moves `consumer` from `from` to `to`, in the transaction that applied those events.
    /// Compare-and-set: returns false (and changes nothing) when the stored offset is no
    /// longer `from` (a replay moved it), so the caller drops its batch.
    fn advance_offset(
        &mut self,
        consumer: &str,
        from: LogCursor,
        to: LogCursor,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Sets `consumer`'s offset unconditionally (replay).
    fn set_offset(&mut self, consumer: &str, at: LogCursor, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
}
