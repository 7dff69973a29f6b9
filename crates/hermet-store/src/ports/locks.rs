//! Row locks a command takes before it writes, in the canonical order.

use std::future::Future;

use hermet_domain::channel::{Channel, Member};
use hermet_domain::contact::Friendship;
use hermet_domain::id::{ChannelId, UserId};
use hermet_domain::message::Message;
use hermet_domain::user::UserStatus;

use super::StoreResult;

/// A user row as commands need it: status and display name.
#[derive(Debug, Clone)]
pub struct UserBrief {
    pub id: UserId,
    pub status: UserStatus,
    pub nickname: String,
    pub avatar: String,
}

/// Locks, in the canonical order users → channel → friendship → member, so concurrent
/// commands that refresh the same read-model rows are serialized (PostgreSQL; SQLite's
/// single writer already serializes every transaction).
pub trait Locks {
    /// Reads users rows (ascending id), locking them for share when `lock`; returns those
    /// that exist.
    fn lock_users(&mut self, ids: &[UserId], lock: bool) -> impl Future<Output = StoreResult<Vec<UserBrief>>> + Send;
    /// Of `ids`, those that are not active users: unknown (`None`) or with their status.
    /// Returns only the exceptions, so validating 50,000 members moves no rows.
    fn inactive_users(
        &mut self,
        ids: &[UserId],
    ) -> impl Future<Output = StoreResult<Vec<(UserId, Option<UserStatus>)>>> + Send;
    /// Locks a channel row, exclusively when the command changes it.
    fn lock_channel(
        &mut self,
        id: ChannelId,
        exclusive: bool,
    ) -> impl Future<Output = StoreResult<Option<Channel>>> + Send;
    fn lock_friendship(
        &mut self,
        user: UserId,
        friend: UserId,
        exclusive: bool,
    ) -> impl Future<Output = StoreResult<Option<Friendship>>> + Send;
    /// Everything a batch of message sends locks and reads, in the canonical order
    /// (PostgreSQL: one round trip, the statements pipelined in lock order).
    fn lock_for_sends(&mut self, l: &SendBatchLocks) -> impl Future<Output = StoreResult<SendBatchLocked>> + Send;
    fn lock_member(
        &mut self,
        channel: ChannelId,
        user: UserId,
    ) -> impl Future<Output = StoreResult<Option<Member>>> + Send;
}

/// What a batch of message sends (group commit) locks, in the canonical order, every
/// list ascending and without repeats: the users of one-to-one chats (senders and peers,
/// for share), the channels (exclusively: their seq moves), the pairs' friendships in
/// both directions (for share), the senders' memberships (exclusively). Then, under
/// those locks, what the sends read: group senders' nicknames, messages already sent
/// with these client ids, and which mentioned users are active members.
#[derive(Debug, Clone, Default)]
pub struct SendBatchLocks {
    pub share_users: Vec<UserId>,
    pub read_users: Vec<UserId>,
    pub channels: Vec<ChannelId>,
    pub friendships: Vec<(UserId, UserId)>,
    pub members: Vec<(ChannelId, UserId)>,
    /// (sender, clientMsgId).
    pub client_ids: Vec<(UserId, String)>,
    /// (channel, mentioned user).
    pub mentioned: Vec<(ChannelId, UserId)>,
}

/// The rows [`SendBatchLocks`] names that exist.
#[derive(Debug, Clone, Default)]
pub struct SendBatchLocked {
    /// `share_users` and `read_users` together.
    pub users: Vec<UserBrief>,
    pub channels: Vec<Channel>,
    pub friendships: Vec<Friendship>,
    pub members: Vec<Member>,
    /// Messages already sent with one of the client ids.
    pub sent: Vec<Message>,
    /// The mentioned pairs whose user is an active member.
    pub mentioned: Vec<(ChannelId, UserId)>,
}
