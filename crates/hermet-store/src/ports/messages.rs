//! Messages: history reads, a batch's appends, and read positions.

use std::future::Future;

use hermet_domain::id::{ChannelId, UserId};
use hermet_domain::message::Message;

use super::StoreResult;

/// `GET /channels/{id}/messages`: seqs in (after, before), newest first when `descending`.
#[derive(Debug, Clone)]
pub struct MessageQuery {
    pub channel_id: ChannelId,
    /// Exclusive lower bound (also the member's join seq).
    pub after_seq: i64,
    /// Exclusive upper bound.
    pub before_seq: i64,
    pub descending: bool,
    pub limit: u32,
}

pub trait MessageReads {
    fn messages(&self, q: &MessageQuery) -> impl Future<Output = StoreResult<Vec<Message>>> + Send;
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
}
