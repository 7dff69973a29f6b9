//! The event pipeline: the Kafka relay's outbox reads, dead letters, leases,
//! retention, and the reads of notification audiences and compensation.

use std::future::Future;

use hermet_domain::id::{ChannelId, UserId};

use super::{LogCursor, StoreResult};

/// An outbox row as the Kafka relay publishes it.
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    pub position: i64,
    pub event_id: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub aggregate_key: String,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// Where the relay put an outbox row on Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub position: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// An event a consumer gave up on (`000_70dd81066eae5b2b.txt` §5.2, message retry).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    pub consumer: String,
    pub event_id: i64,
    pub event_type: String,
    /// The payload as received (it may not be valid JSON).
    pub payload: String,
    /// Where it came from: `outbox TX:POS` or `kafka TOPIC/PARTITION@OFFSET`.
    pub source: String,
    pub error: String,
    pub attempts: i32,
    /// `pending`; `replay` (asked for, waiting for its consumer); `replayed`; `discarded`.
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct DeadLetterChange {
    pub status: String,
    pub payload: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub consumer: String,
    pub event_id: i64,
    pub event_type: String,
    pub payload: String,
    pub source: String,
    pub error: String,
    pub attempts: i32,
}

pub trait PipelineReads {
    /// Unpublished outbox rows in position order (the Kafka relay).
    fn unpublished(&self, limit: u32) -> impl Future<Output = StoreResult<Vec<OutboxRecord>>> + Send;
    /// Unpublished rows and the creation time of the oldest.
    fn outbox_backlog(&self) -> impl Future<Output = StoreResult<(i64, Option<i64>)>> + Send;
    /// Where the outbox row at `position` was published, once it was.
    fn publication(&self, position: i64) -> impl Future<Output = StoreResult<Option<Publication>>> + Send;
    /// Outbox rows `consumer` has not applied yet on the Kafka transport (unpublished, or
    /// published at or after its offset for that partition). Tools and tests.
    fn undrained_on_kafka(&self, consumer: &str) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Events in the log after `after` (a consumer's lag on the embedded log).
    fn events_after(&self, after: LogCursor) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Dead letters with `status` (any when empty) and id above `after`, oldest first.
    fn dead_letters(
        &self,
        status: &str,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<DeadLetter>>> + Send;
    fn dead_letter(&self, id: i64) -> impl Future<Output = StoreResult<Option<DeadLetter>>> + Send;
    fn pending_dead_letters(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Dead letters of Kafka consumers not yet copied to their `<topic>.dlq`, oldest first.
    fn dead_letters_to_publish(&self, limit: u32) -> impl Future<Output = StoreResult<Vec<DeadLetter>>> + Send;
    /// (channel, member, is owner or admin) for the active members of `channels`
    /// (notification audiences).
    fn channel_audience(
        &self,
        channels: &[ChannelId],
    ) -> impl Future<Output = StoreResult<Vec<(ChannelId, UserId, bool)>>> + Send;
    /// (user, owner) for every owner whose contact list shows one of `users`.
    fn contact_owners(&self, users: &[UserId]) -> impl Future<Output = StoreResult<Vec<(UserId, UserId)>>> + Send;
    /// Groups created in `[since, until)` that have no `channel.created` event in the
    /// outbox (compensation by a periodic scan, `000_70dd81066eae5b2b.txt` §5.3 方案1).
    fn groups_without_created_event(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ChannelId>>> + Send;
    /// Groups created in `[since, until)` where an active member has no conversation row.
    fn groups_without_views(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ChannelId>>> + Send;
}

pub trait PipelineWrites {
    /// Records where the relay published these rows, and when.
    fn mark_published(&mut self, rows: &[Publication], now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`; false when
    /// another holder's lease is still valid.
    fn take_lease(
        &mut self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Gives up the lease `name` if `holder` has it, so another node takes it at once
    /// (a clean shutdown); false when `holder` did not hold it.
    fn release_lease(&mut self, name: &str, holder: &str) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Stores a dead letter; the same (consumer, event) again updates the error and adds
    /// its attempts.
    fn insert_dead_letter(&mut self, d: &NewDeadLetter, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes at most `limit` outbox rows created before `before` and at or behind
    /// `floor` in log order (and published, if `published_only`); returns how many.
    fn prune_outbox(
        &mut self,
        before: i64,
        floor: LogCursor,
        published_only: bool,
        limit: u32,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Records that these dead letters, as of their `updated_at`, reached `<topic>.dlq`.
    fn mark_dead_letters_published(
        &mut self,
        letters: &[(i64, i64)],
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Moves a dead letter from status `from` to `change.status` (optionally replacing its
    /// payload or error); false when it was not in `from`.
    fn update_dead_letter(
        &mut self,
        id: i64,
        from: &str,
        change: &DeadLetterChange,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}
