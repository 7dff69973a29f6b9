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
    /// The conversation rows of these (owner, channel) pairs, as readers see them
    /// (pushed as `conversation.updated`). Pairs with no row are left out.
    fn conversations_of(
        &self,
        pairs: &[(UserId, ChannelId)],
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
    /// Appends each event to the inboxes of its users (distinct, ascending), in the
    /// order given: each user's cursor moves on by one per event, so a user's entries
    /// follow the events' order. A user who has the event already (a replay, a
    /// redelivered batch) gets no new entry. Returns, per event, (user, new cursor).
    fn append_inbox(
        &mut self,
        events: &[(i64, &[UserId])],
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<Vec<(UserId, i64)>>>> + Send;
    /// Deletes at most `limit` inbox entries that are older than `before` or more than
    /// `keep` behind their user's cursor; returns how many.
    fn prune_inbox(&mut self, before: i64, keep: i64, limit: u32) -> impl Future<Output = StoreResult<u64>> + Send;
}
