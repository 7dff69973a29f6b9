//! Domain events. A command records its events in the outbox in the same transaction as
//! its write-side changes; projections and notifiers consume them (docs/EVENTS.md).
//! Payloads are versioned by [`DomainEvent::schema_version`].

use serde::{Deserialize, Serialize};

use crate::id::{ApplicationId, ChannelId, EventId, MessageId, UserId};

/// Every event hermet emits. The serde tag is the event type as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum DomainEvent {
    #[serde(rename = "user.profile_updated")]
    UserProfileUpdated(UserProfileUpdated),
    #[serde(rename = "contact.application_created")]
    ContactApplicationCreated(ContactApplicationCreated),
    #[serde(rename = "contact.application_reviewed")]
    ContactApplicationReviewed(ContactApplicationReviewed),
    #[serde(rename = "friendship.created")]
    FriendshipCreated(FriendshipCreated),
    #[serde(rename = "friendship.updated")]
    FriendshipUpdated(FriendshipUpdated),
    #[serde(rename = "friendship.deleted")]
    FriendshipDeleted(FriendshipDeleted),
    #[serde(rename = "channel.created")]
    ChannelCreated(ChannelCreated),
    #[serde(rename = "channel.updated")]
    ChannelUpdated(ChannelUpdated),
    #[serde(rename = "channel.dismissed")]
    ChannelDismissed(ChannelDismissed),
    #[serde(rename = "channel.member_added")]
    MemberAdded(MemberAdded),
    #[serde(rename = "channel.member_removed")]
    MemberRemoved(MemberRemoved),
    #[serde(rename = "channel.member_role_changed")]
    MemberRoleChanged(MemberRoleChanged),
    #[serde(rename = "channel.member_updated")]
    MemberUpdated(MemberUpdated),
    #[serde(rename = "channel.moderation_changed")]
    ChannelModerationChanged(ChannelModerationChanged),
    #[serde(rename = "channel.member_muted")]
    MemberMuted(MemberMuted),
    #[serde(rename = "channel.member_banned")]
    MemberBanned(MemberBanned),
    #[serde(rename = "channel.application_created")]
    ChannelApplicationCreated(ChannelApplicationCreated),
    #[serde(rename = "channel.application_reviewed")]
    ChannelApplicationReviewed(ChannelApplicationReviewed),
    #[serde(rename = "message.sent")]
    MessageSent(MessageSent),
    #[serde(rename = "message.recalled")]
    MessageRecalled(MessageRecalled),
    #[serde(rename = "message.edited")]
    MessageEdited(MessageEdited),
    #[serde(rename = "message.hidden")]
    MessageHidden(MessageHidden),
    #[serde(rename = "message.reaction")]
    MessageReaction(MessageReaction),
    #[serde(rename = "message.pinned")]
    MessagePinned(MessagePinned),
    #[serde(rename = "conversation.read")]
    ConversationRead(ConversationRead),
    #[serde(rename = "conversation.settings_changed")]
    ConversationSettingsChanged(ConversationSettingsChanged),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfileUpdated {
    pub user_id: UserId,
    pub profile_ver: i64,
    pub nickname: String,
    pub avatar: String,
    pub gender: String,
    pub region: String,
    pub birthday: Option<String>,
    pub tagline: String,
    /// Names of the fields that changed, camelCase.
    pub changed: Vec<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactApplicationCreated {
    pub application_id: ApplicationId,
    pub applicant_id: UserId,
    pub target_id: UserId,
    pub message: String,
    pub source: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactApplicationReviewed {
    pub application_id: ApplicationId,
    pub applicant_id: UserId,
    pub target_id: UserId,
    /// `approved` or `rejected`.
    pub status: String,
    pub reviewed_at: i64,
}

/// Two users became friends (both directions), sharing `channel_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendshipCreated {
    pub user_id: UserId,
    pub friend_id: UserId,
    pub channel_id: ChannelId,
    pub source: String,
    pub added_at: i64,
}

/// One direction of a friendship changed (remark, group, tags, star, block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendshipUpdated {
    pub user_id: UserId,
    pub friend_id: UserId,
    pub channel_id: Option<ChannelId>,
    pub remark_name: String,
    pub group_name: String,
    pub tags: Vec<String>,
    pub is_starred: bool,
    pub is_blocked: bool,
    pub changed: Vec<String>,
    pub updated_at: i64,
}

/// `user_id` removed `friend_id` from their contacts (one direction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendshipDeleted {
    pub user_id: UserId,
    pub friend_id: UserId,
    pub channel_id: Option<ChannelId>,
    pub deleted_at: i64,
}

/// `000_70dd81066eae5b2b.txt` §3.3: the value of the `channel-events` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelCreated {
    pub channel_id: ChannelId,
    pub channel_type: String,
    pub channel_name: String,
    pub avatar: String,
    pub creator_id: UserId,
    pub member_ids: Vec<UserId>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelUpdated {
    pub channel_id: ChannelId,
    pub name: String,
    pub avatar: String,
    pub channel_info_ver: i64,
    pub updated_by: UserId,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDismissed {
    pub channel_id: ChannelId,
    pub dismissed_by: UserId,
    pub dismissed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberAdded {
    pub channel_id: ChannelId,
    pub user_ids: Vec<UserId>,
    pub added_by: UserId,
    /// Members see history after this seq.
    pub join_seq: i64,
    pub joined_at: i64,
    /// The change moved the group across the large-group threshold (write ↔ read
    /// diffusion): every member's conversation row changes form.
    #[serde(default, skip_serializing_if = "is_false")]
    pub diffusion_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRemoved {
    pub channel_id: ChannelId,
    pub user_ids: Vec<UserId>,
    pub removed_by: UserId,
    /// `removed`, `left` or `dismissed`.
    pub reason: String,
    pub left_seq: i64,
    pub left_at: i64,
    /// As in [`MemberAdded::diffusion_changed`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub diffusion_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRoleChanged {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub role: String,
    pub changed_by: UserId,
    pub changed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberUpdated {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub group_nickname: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelApplicationCreated {
    pub application_id: ApplicationId,
    pub channel_id: ChannelId,
    pub applicant_id: UserId,
    pub message: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelApplicationReviewed {
    pub application_id: ApplicationId,
    pub channel_id: ChannelId,
    pub applicant_id: UserId,
    pub reviewer_id: UserId,
    pub status: String,
    pub reviewed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSent {
    pub message_id: MessageId,
    pub channel_id: ChannelId,
    pub channel_type: String,
    pub seq: i64,
    pub sender_id: UserId,
    pub sender_name: String,
    pub msg_type: String,
    pub content: serde_json::Value,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
    pub client_msg_id: Option<String>,
    pub sent_at: i64,
    /// A reply: the quote of the message it answers, as it was when sent (a recall of
    /// that message erases the preview here too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<crate::message::Quote>,
    /// A forwarded message: where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<crate::message::Forwarded>,
    /// Sent to a large group (read diffusion): its members' conversation rows are computed
    /// when read, so no per-member row changes and no `conversation.updated` follows.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_diffusion: bool,
}

/// A message was recalled: its content is gone, it reads as a recall notice at its seq.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecalled {
    pub message_id: MessageId,
    pub channel_id: ChannelId,
    pub seq: i64,
    pub sender_id: UserId,
    pub recalled_by: UserId,
    pub recalled_at: i64,
    /// A large group's (read diffusion): no stored conversation row changes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_diffusion: bool,
}

/// A message's sender edited it: its content and mentions as they now are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageEdited {
    pub message_id: MessageId,
    pub channel_id: ChannelId,
    pub seq: i64,
    pub sender_id: UserId,
    pub msg_type: String,
    pub content: serde_json::Value,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
    pub edit_count: i32,
    pub edited_at: i64,
    /// A large group's (read diffusion).
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_diffusion: bool,
}

/// A member deleted a message for themselves (`DELETE …/messages/{messageId}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageHidden {
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub message_id: MessageId,
    pub seq: i64,
    pub hidden_at: i64,
}

/// A member added (`added`) or took back a reaction to a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReaction {
    pub message_id: MessageId,
    pub channel_id: ChannelId,
    pub seq: i64,
    pub user_id: UserId,
    pub emoji: String,
    pub added: bool,
    pub at: i64,
    /// A large group's: pushed to members online, not put in every member's inbox.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_diffusion: bool,
}

/// A group's mute-all or slow mode changed (docs/API.md "Moderation").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelModerationChanged {
    pub channel_id: ChannelId,
    pub mute_all: bool,
    pub slow_mode_secs: i32,
    pub changed_by: UserId,
    pub changed_at: i64,
}

/// A member was muted until a time, or unmuted (`mutedUntil` null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberMuted {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub muted_until: Option<i64>,
    pub by: UserId,
    pub at: i64,
}

/// A user was banned from a group (`banned`), or unbanned. A ban of a member is
/// preceded by their removal (`channel.member_removed`, reason `banned`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberBanned {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub banned: bool,
    pub by: UserId,
    pub at: i64,
}

/// A message was pinned in its channel (`pinned`), or unpinned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePinned {
    pub message_id: MessageId,
    pub channel_id: ChannelId,
    pub seq: i64,
    pub pinned: bool,
    /// Who pinned or unpinned it.
    pub by: UserId,
    pub at: i64,
    /// A large group's: pushed to members online, not put in every member's inbox.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_diffusion: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRead {
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub read_seq: i64,
    pub read_at: i64,
    /// A one-to-one chat's other member: their row shows this read (read receipts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSettingsChanged {
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub is_pinned: bool,
    pub is_muted: bool,
    pub is_hidden: bool,
    /// The conversation was closed (DELETE /conversations/{id}).
    pub closed: bool,
    pub changed_at: i64,
}

impl DomainEvent {
    pub fn event_type(&self) -> &'static str {
        use DomainEvent::*;
        match self {
            UserProfileUpdated(_) => "user.profile_updated",
            ContactApplicationCreated(_) => "contact.application_created",
            ContactApplicationReviewed(_) => "contact.application_reviewed",
            FriendshipCreated(_) => "friendship.created",
            FriendshipUpdated(_) => "friendship.updated",
            FriendshipDeleted(_) => "friendship.deleted",
            ChannelCreated(_) => "channel.created",
            ChannelUpdated(_) => "channel.updated",
            ChannelDismissed(_) => "channel.dismissed",
            MemberAdded(_) => "channel.member_added",
            MemberRemoved(_) => "channel.member_removed",
            MemberRoleChanged(_) => "channel.member_role_changed",
            MemberUpdated(_) => "channel.member_updated",
            ChannelModerationChanged(_) => "channel.moderation_changed",
            MemberMuted(_) => "channel.member_muted",
            MemberBanned(_) => "channel.member_banned",
            ChannelApplicationCreated(_) => "channel.application_created",
            ChannelApplicationReviewed(_) => "channel.application_reviewed",
            MessageSent(_) => "message.sent",
            MessageRecalled(_) => "message.recalled",
            MessageEdited(_) => "message.edited",
            MessageHidden(_) => "message.hidden",
            MessageReaction(_) => "message.reaction",
            MessagePinned(_) => "message.pinned",
            ConversationRead(_) => "conversation.read",
            ConversationSettingsChanged(_) => "conversation.settings_changed",
        }
    }

    /// Payload schema version; bumped when a payload changes incompatibly.
    pub fn schema_version(&self) -> i32 {
        1
    }

    /// The aggregate whose order the event belongs to: (aggregate type, key). Events of
    /// one key must be consumed in order (Kafka: the message key).
    pub fn aggregate(&self) -> (&'static str, String) {
        use DomainEvent::*;
        match self {
            UserProfileUpdated(e) => ("user", e.user_id.to_string()),
            ContactApplicationCreated(e) => ("user", e.target_id.to_string()),
            ContactApplicationReviewed(e) => ("user", e.applicant_id.to_string()),
            FriendshipCreated(e) => ("channel", e.channel_id.to_string()),
            FriendshipUpdated(e) => ("user", e.user_id.to_string()),
            FriendshipDeleted(e) => ("user", e.user_id.to_string()),
            ChannelCreated(e) => ("channel", e.channel_id.to_string()),
            ChannelUpdated(e) => ("channel", e.channel_id.to_string()),
            ChannelDismissed(e) => ("channel", e.channel_id.to_string()),
            MemberAdded(e) => ("channel", e.channel_id.to_string()),
            MemberRemoved(e) => ("channel", e.channel_id.to_string()),
            MemberRoleChanged(e) => ("channel", e.channel_id.to_string()),
            MemberUpdated(e) => ("channel", e.channel_id.to_string()),
            ChannelModerationChanged(e) => ("channel", e.channel_id.to_string()),
            MemberMuted(e) => ("channel", e.channel_id.to_string()),
            MemberBanned(e) => ("channel", e.channel_id.to_string()),
            ChannelApplicationCreated(e) => ("channel", e.channel_id.to_string()),
            ChannelApplicationReviewed(e) => ("channel", e.channel_id.to_string()),
            MessageSent(e) => ("channel", e.channel_id.to_string()),
            MessageRecalled(e) => ("channel", e.channel_id.to_string()),
            MessageEdited(e) => ("channel", e.channel_id.to_string()),
            MessageHidden(e) => ("channel", e.channel_id.to_string()),
            MessageReaction(e) => ("channel", e.channel_id.to_string()),
            MessagePinned(e) => ("channel", e.channel_id.to_string()),
            ConversationRead(e) => ("channel", e.channel_id.to_string()),
            ConversationSettingsChanged(e) => ("user", e.user_id.to_string()),
        }
    }

    /// The payload alone (the outbox stores type and payload in separate columns).
    pub fn payload(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => m.remove("payload").unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        }
    }

    /// Rebuilds an event from its stored type and payload.
    pub fn from_stored(event_type: &str, payload: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::json!({"type": event_type, "payload": payload}))
    }
}

/// An outbox row: one event ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub id: EventId,
    pub event_type: &'static str,
    pub schema_version: i32,
    pub aggregate_type: &'static str,
    pub aggregate_key: String,
    pub occurred_at: i64,
    pub payload: serde_json::Value,
}

impl OutboxEvent {
    pub fn new(id: EventId, occurred_at: i64, event: &DomainEvent) -> Self {
        let (aggregate_type, aggregate_key) = event.aggregate();
        Self {
            id,
            event_type: event.event_type(),
            schema_version: event.schema_version(),
            aggregate_type,
            aggregate_key,
            occurred_at,
            payload: event.payload(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_events_round_trip() {
        let e = DomainEvent::ConversationRead(ConversationRead {
            user_id: UserId(1),
            channel_id: ChannelId(2),
            read_seq: 3,
            read_at: 4,
            peer_id: Some(UserId(5)),
        });
        let back = DomainEvent::from_stored(e.event_type(), e.payload()).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.payload()["channelId"], "2");
    }
}
