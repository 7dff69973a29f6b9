//! The realtime gateway: per-user inboxes and the conversation rows it pushes.

use std::future::Future;

use hermet_domain::id::{ChannelId, UserId};

use super::{ConversationRow, StoreResult};

/// An entry of a user's inbox: the event the user was notified of at cursor `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    pub seq: i64,
    pub event_id: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    /// When the event was recorded (its outbox time).
    pub occurred_at: i64,
}

/// The realtime gateway's reads: per-user cursors and catch-up (docs/PROTOCOL.md).
pub trait InboxReads {
    /// The user's latest cursor (0 if the user was never notified).
    fn inbox_head(&self, user: UserId) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Inbox entries after cursor `after`, in cursor order, at most `limit`. Entries whose
    /// event has left the outbox (retention) are missing: callers check continuity.
    fn inbox_after(
        &self,
        user: UserId,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<InboxEntry>>> + Send;
    /// The conversation rows of `users` in `channel` (pushed as `conversation.updated`).
    fn channel_conversations(
        &self,
        channel: ChannelId,
        users: &[UserId],
    ) -> impl Future<Output = StoreResult<Vec<ConversationRow>>> + Send;
    /// The user's conversation rows changed at or after `since`, oldest change first.
    fn conversations_changed(
        &self,
        user: UserId,
        since: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ConversationRow>>> + Send;
}

pub trait InboxWrites {
    /// Appends event `event_id` to the inboxes of `users` (distinct, ascending): each
    /// user's cursor moves on by one. Returns (user, new cursor) for each.
    fn append_inbox(
        &mut self,
        users: &[UserId],
        event_id: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<(UserId, i64)>>> + Send;
    /// Deletes at most `limit` inbox entries that are older than `before` or more than
    /// `keep` behind their user's cursor; returns how many.
    fn prune_inbox(&mut self, before: i64, keep: i64, limit: u32) -> impl Future<Output = StoreResult<u64>> + Send;
}
