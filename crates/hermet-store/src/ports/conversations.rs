//! Conversations: the read model of a member's view of a channel
//! (`user_conversation_view`), its list query, and the member's settings.

use std::future::Future;

use hermet_domain::channel::ChannelType;
use hermet_domain::id::{ChannelId, MessageId, UserId};

use super::StoreResult;

/// A member's conversation settings (write side).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationSetting {
    pub is_pinned: bool,
    pub is_muted: bool,
    pub is_hidden: bool,
    pub hidden_seq: i64,
    pub closed_at: Option<i64>,
    pub closed_seq: i64,
}

/// A row of `user_conversation_view` (the read model), as computed or as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub conversation_type: String,
    pub conversation_name: String,
    pub conversation_avatar: String,
    pub conversation_info_ver: i64,
    pub peer_user_id: Option<UserId>,
    pub peer_nickname: String,
    pub peer_avatar: String,
    pub remark_name: String,
    pub is_muted: bool,
    pub is_pinned: bool,
    pub is_hidden: bool,
    pub last_message_id: Option<MessageId>,
    pub last_message_seq: i64,
    pub last_message_type: Option<String>,
    pub last_message_content: Option<String>,
    pub last_message_sender_id: Option<UserId>,
    pub last_message_sender_name: Option<String>,
    pub last_message_time: Option<i64>,
    pub last_active_at: i64,
    pub unread_count: i64,
    pub mention_count: i64,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    /// The row of an active member of a large group: computed when read. As stored, its
    /// message-derived columns hold neutral values (docs/ARCHITECTURE.md "Large groups").
    pub read_diffusion: bool,
    /// A one-to-one chat: how far the peer has read (read receipts); 0 in groups.
    pub peer_read_seq: i64,
}

impl ConversationRow {
    /// Names of the fields in which two rows differ.
    pub fn diff(&self, other: &Self) -> Vec<&'static str> {
        let mut d = Vec::new();
        macro_rules! cmp { ($($f:ident),*) => { $( if self.$f != other.$f { d.push(stringify!($f)); } )* } }
        cmp!(
            conversation_type,
            conversation_name,
            conversation_avatar,
            conversation_info_ver,
            peer_user_id,
            peer_nickname,
            peer_avatar,
            remark_name,
            is_muted,
            is_pinned,
            is_hidden,
            last_message_id,
            last_message_seq,
            last_message_type,
            last_message_content,
            last_message_sender_id,
            last_message_sender_name,
            last_message_time,
            last_active_at,
            unread_count,
            mention_count,
            opened_at,
            closed_at,
            read_diffusion,
            peer_read_seq
        );
        d
    }
}

/// `GET /conversations`: keyset position is (pinned, last active, channel id).
#[derive(Debug, Clone)]
pub struct ConversationQuery {
    pub user_id: UserId,
    pub conversation_type: Option<ChannelType>,
    pub unread_only: bool,
    pub after: Option<(bool, i64, i64)>,
    pub limit: u32,
}

pub trait ConversationReads {
    fn conversations(&self, q: &ConversationQuery) -> impl Future<Output = StoreResult<Vec<ConversationRow>>> + Send;
    fn conversation(
        &self,
        user: UserId,
        channel: ChannelId,
    ) -> impl Future<Output = StoreResult<Option<ConversationRow>>> + Send;
    /// Sum of unread counts of the user's open, unmuted conversations.
    fn total_unread(&self, user: UserId) -> impl Future<Output = StoreResult<i64>> + Send;
    /// The user's large groups (conversation rows in read-diffusion form).
    fn large_groups(&self, user: UserId) -> impl Future<Output = StoreResult<Vec<ChannelId>>> + Send;
}

/// A member's conversation settings (pinned, muted, hidden, closed) on the write side.
pub trait ConversationWrites {
    fn setting(
        &mut self,
        user: UserId,
        channel: ChannelId,
    ) -> impl Future<Output = StoreResult<ConversationSetting>> + Send;
    fn save_setting(
        &mut self,
        user: UserId,
        channel: ChannelId,
        s: &ConversationSetting,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}
