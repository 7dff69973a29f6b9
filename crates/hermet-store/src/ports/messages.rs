//! Messages: history reads, a batch's appends, and read positions.

use std::future::Future;

use hermet_domain::id::{ChannelId, MessageId, UserId};
use hermet_domain::message::{Message, MessageVersion, Pin, ReactionCount};

use super::StoreResult;

/// `GET /channels/{id}/messages`: seqs in (after, before), newest first when `descending`.
#[derive(Debug, Clone)]
pub struct MessageQuery {
    pub channel_id: ChannelId,
    /// Who reads: what they deleted for themselves is left out.
    pub viewer: UserId,
    /// Exclusive lower bound (also the member's join seq).
    pub after_seq: i64,
    /// Exclusive upper bound.
    pub before_seq: i64,
    pub descending: bool,
    pub limit: u32,
}

/// `GET /messages/search`: text messages containing `text` (case-insensitive) that
/// `viewer` can see, newest first (by id), below `before_id`.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub viewer: UserId,
    /// What to find: 1 to 100 characters.
    pub text: String,
    pub channel: Option<ChannelId>,
    pub sender: Option<UserId>,
    /// Sent strictly between these times (ms).
    pub sent_after: i64,
    pub sent_before: i64,
    /// Exclusive upper bound of message ids (the keyset).
    pub before_id: i64,
    pub limit: u32,
}

/// Characters a search needs before an index of trigrams can narrow it down.
pub const TRIGRAM: usize = 3;

pub trait MessageReads {
    /// Messages `q.viewer` can see (an active member of their channel, sent after they
    /// joined, not recalled, not deleted for them) whose text contains `q.text`.
    fn search(&self, q: &SearchQuery) -> impl Future<Output = StoreResult<Vec<Message>>> + Send;
    fn messages(&self, q: &MessageQuery) -> impl Future<Output = StoreResult<Vec<Message>>> + Send;
    /// The message `id` of `channel`.
    fn message(&self, channel: ChannelId, id: MessageId) -> impl Future<Output = StoreResult<Option<Message>>> + Send;
    /// The reaction counts of `messages` as `viewer` sees them (`me`), each message's in
    /// the order its reactions were first given; messages without any are left out.
    fn reactions(
        &self,
        messages: &[MessageId],
        viewer: UserId,
    ) -> impl Future<Output = StoreResult<Vec<(MessageId, ReactionCount)>>> + Send;
    /// Read receipts of the message at `seq` of `channel` sent by `sender`: how many active
    /// members who joined before it (the sender aside) have read it, and (`list`) those
    /// of them with an id above `after`, ascending, at most `limit`.
    fn receipts(
        &self,
        channel: ChannelId,
        seq: i64,
        sender: UserId,
        list: Option<(UserId, u32)>,
    ) -> impl Future<Output = StoreResult<(i64, Vec<UserId>)>> + Send;
    /// The messages `ids`, of any channel, in no order; ids of no message are left out.
    fn messages_by_ids(&self, ids: &[MessageId]) -> impl Future<Output = StoreResult<Vec<Message>>> + Send;
    /// The pinned messages of `channel` sent after `after_seq`, newest pin first.
    fn pins(&self, channel: ChannelId, after_seq: i64) -> impl Future<Output = StoreResult<Vec<Pin>>> + Send;
    /// The earlier versions of an edited message, oldest first (the current one is the
    /// message itself).
    fn message_versions(&self, id: MessageId) -> impl Future<Output = StoreResult<Vec<MessageVersion>>> + Send;
}

/// An edit of a message by its sender (docs/API.md "Edit").
#[derive(Debug)]
pub struct MessageEdit<'a> {
    /// The message as it was: its content becomes version `edit_count + 1`.
    pub before: &'a Message,
    pub content: &'a serde_json::Value,
    /// Active members of the channel, not the sender; sorted, distinct.
    pub mentions: &'a [UserId],
    pub mention_all: bool,
    pub at: i64,
}

pub trait MessageWrites {
    /// A batch's messages, their channels locked exclusively and each message's `seq`
    /// already allocated (consecutive per channel, after the channel's `last_seq`): the
    /// channels' `last_seq` and last-message time, the messages, their mention rows, and
    /// each sender's read position moved to their last message (their own). PostgreSQL:
    /// one set-based statement each, in one round trip.
    fn append_messages(&mut self, messages: &[Message], now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Moves the read position forward (never back); returns the position after.
    fn advance_read(
        &mut self,
        user: UserId,
        channel: ChannelId,
        seq: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// The message `id` of `channel`, locked against a concurrent change of it
    /// (PostgreSQL: `FOR UPDATE`). Message rows are locked after the member row (the
    /// canonical order, docs/ARCHITECTURE.md "Concurrency").
    fn lock_message(
        &mut self,
        channel: ChannelId,
        id: MessageId,
    ) -> impl Future<Output = StoreResult<Option<Message>>> + Send;
    /// Recalls a message: its content, preview and mentions erased (its mention rows
    /// deleted, `@all` cleared), who and when recorded; and the content of its
    /// `message.sent` event in the outbox erased the same way (found by its `event_id`,
    /// which is the message's id). The row keeps its seq and original type.
    /// Its earlier versions, its reactions and its pins are deleted, its edit events in
    /// the outbox erased too, and so is its quote in the `message.sent` events of replies
    /// to it.
    fn recall_message(&mut self, id: MessageId, by: UserId, at: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Adds (`add`) or takes back `user`'s reaction; returns whether it changed anything.
    fn react(
        &mut self,
        message: MessageId,
        user: UserId,
        emoji: &str,
        add: bool,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// How many reactions `user` has put on `message`, and whether `emoji` is one of them.
    fn reactions_by(
        &mut self,
        message: MessageId,
        user: UserId,
        emoji: &str,
    ) -> impl Future<Output = StoreResult<(i64, bool)>> + Send;
    /// Records that these (channel, member) pairs sent at `now` in slow mode.
    fn note_slow_sends(
        &mut self,
        pairs: &[(ChannelId, UserId)],
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Pins (`add`) or unpins `message` in its channel; returns whether it changed anything.
    fn pin(
        &mut self,
        message: &Message,
        by: UserId,
        add: bool,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// How many messages of `channel` are pinned, and whether `message` is one of them.
    fn pin_count(
        &mut self,
        channel: ChannelId,
        message: MessageId,
    ) -> impl Future<Output = StoreResult<(i64, bool)>> + Send;
    /// Deletes a message for `user` only: left out of their history, and of their
    /// conversation's preview. Returns whether it was not already.
    fn hide_message(
        &mut self,
        user: UserId,
        message: &Message,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Edits a message: the current version kept in `message_version`, the new content,
    /// preview and mentions (mention rows replaced) written, `edited_at` set and
    /// `edit_count` moved on.
    fn edit_message(&mut self, edit: &MessageEdit<'_>) -> impl Future<Output = StoreResult<()>> + Send;
}
