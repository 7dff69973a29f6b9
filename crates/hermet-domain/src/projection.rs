//! Projections: which read-model rows an event changes.
//!
//! Every read-model row is a function of the write side: a conversation view row of
//! (user, channel) is computed from the channel, the membership, the read record, the
//! conversation settings, the peer's profile and the friendship remark, and the last
//! visible message; a contact view row from the friendship and the contact's profile;
//! reverse-index rows from single-channel memberships and friendships. So projecting an
//! event means *refreshing* the rows it affects from the write side, with one set-based
//! statement per kind of row (the drivers' `apply_refresh`). This is idempotent and
//! insensitive to redelivery and replay by construction: refreshing a row twice yields
//! the same row. The same computation serves the rebuild and the consistency checker.
//!
//! In dual-write mode a command applies its events' refresh inside its own transaction;
//! an asynchronous consumer applies the union of a batch's refreshes in one transaction.

use crate::event::DomainEvent;
use crate::id::{ChannelId, UserId};

/// Rows to recompute from the write side. Empty vectors mean nothing of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Conversation views of every member (past and present) of these channels.
    pub channels: Vec<ChannelId>,
    /// These (owner, channel) conversation views.
    pub conversations: Vec<(UserId, ChannelId)>,
    /// The profile-derived columns of conversation views whose peer is this user
    /// (through `conversation_reverse_index`; nothing else in them follows a profile).
    pub peers: Vec<UserId>,
    /// These (owner, contact) contact views.
    pub contacts: Vec<(UserId, UserId)>,
    /// The profile-derived columns of contact views listing this user (through
    /// `contact_reverse_index`).
    pub contact_of: Vec<UserId>,
    /// Conversation reverse-index rows of these (single) channels.
    pub reverse_channels: Vec<ChannelId>,
    /// Contact reverse-index rows of these (owner, contact) pairs.
    pub reverse_contacts: Vec<(UserId, UserId)>,
    /// Every read-model row owned by these users (rebuild and repair).
    pub owners: Vec<UserId>,
}

impl Refresh {
    pub fn is_empty(&self) -> bool {
        *self == Refresh::default()
    }

    /// Adds another refresh (batching several events into one set of statements).
    pub fn merge(&mut self, other: Refresh) {
        self.channels.extend(other.channels);
        self.conversations.extend(other.conversations);
        self.peers.extend(other.peers);
        self.contacts.extend(other.contacts);
        self.contact_of.extend(other.contact_of);
        self.reverse_channels.extend(other.reverse_channels);
        self.reverse_contacts.extend(other.reverse_contacts);
        self.owners.extend(other.owners);
        self.dedup();
    }

    fn dedup(&mut self) {
        fn d<T: Ord>(v: &mut Vec<T>) {
            v.sort_unstable();
            v.dedup();
        }
        d(&mut self.channels);
        d(&mut self.conversations);
        d(&mut self.peers);
        d(&mut self.contacts);
        d(&mut self.contact_of);
        d(&mut self.reverse_channels);
        d(&mut self.reverse_contacts);
        d(&mut self.owners);
    }
}

/// The read-model rows `event` changes.
pub fn project(event: &DomainEvent) -> Refresh {
    use DomainEvent::*;
    let mut r = Refresh::default();
    match event {
        UserProfileUpdated(e) => {
            r.peers.push(e.user_id);
            r.contact_of.push(e.user_id);
        }
        FriendshipCreated(e) => {
            r.channels.push(e.channel_id);
            r.reverse_channels.push(e.channel_id);
            r.contacts.extend([(e.user_id, e.friend_id), (e.friend_id, e.user_id)]);
            r.reverse_contacts.extend([(e.user_id, e.friend_id), (e.friend_id, e.user_id)]);
        }
        FriendshipUpdated(e) => {
            r.contacts.push((e.user_id, e.friend_id));
            r.conversations.extend(e.channel_id.map(|c| (e.user_id, c)));
        }
        FriendshipDeleted(e) => {
            r.contacts.push((e.user_id, e.friend_id));
            r.conversations.extend(e.channel_id.map(|c| (e.user_id, c)));
        }
        ChannelCreated(e) => {
            r.channels.push(e.channel_id);
            if e.channel_type == "single" {
                r.reverse_channels.push(e.channel_id);
            }
        }
        ChannelUpdated(e) => r.channels.push(e.channel_id),
        ChannelDismissed(e) => r.channels.push(e.channel_id),
        MemberAdded(e) if e.diffusion_changed => r.channels.push(e.channel_id),
        MemberAdded(e) => r.conversations.extend(e.user_ids.iter().map(|u| (*u, e.channel_id))),
        MemberRemoved(e) if e.diffusion_changed => r.channels.push(e.channel_id),
        MemberRemoved(e) => r.conversations.extend(e.user_ids.iter().map(|u| (*u, e.channel_id))),
        // A large group's message changes no stored row: its members' rows are computed
        // when read (the sender's read position and mention rows are write side).
        MessageSent(e) if e.read_diffusion => {}
        MessageSent(e) => r.channels.push(e.channel_id),
        ConversationRead(e) => r.conversations.push((e.user_id, e.channel_id)),
        ConversationSettingsChanged(e) => r.conversations.push((e.user_id, e.channel_id)),
        // Roles, group nicknames and applications are not part of any read model.
        MemberRoleChanged(_)
        | MemberUpdated(_)
        | ContactApplicationCreated(_)
        | ContactApplicationReviewed(_)
        | ChannelApplicationCreated(_)
        | ChannelApplicationReviewed(_) => {}
    }
    r.dedup();
    r
}

/// The union of the refreshes of several events.
pub fn project_all<'a>(events: impl IntoIterator<Item = &'a DomainEvent>) -> Refresh {
    let mut r = Refresh::default();
    for e in events {
        r.merge(project(e));
    }
    r
}
