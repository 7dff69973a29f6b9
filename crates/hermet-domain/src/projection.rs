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
    /// Only the message-derived columns (last message, activity time, unread and mention
    /// counts, hidden and closed) of the conversation views of every member of these
    /// channels: what a message changes. A channel also in `channels` is refreshed whole.
    pub message_channels: Vec<ChannelId>,
    /// Only the message-derived columns of these (owner, channel) conversation views:
    /// what a read changes. A pair also refreshed whole (in `conversations`, or its
    /// channel in `channels`) is left to that.
    pub message_conversations: Vec<(UserId, ChannelId)>,
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
        self.message_channels.extend(other.message_channels);
        self.message_conversations.extend(other.message_conversations);
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
        d(&mut self.message_channels);
        d(&mut self.conversations);
        d(&mut self.message_conversations);
        let (whole, pairs) = (&self.channels, &self.conversations);
        self.message_channels.retain(|c| whole.binary_search(c).is_err());
        self.message_conversations.retain(|p| whole.binary_search(&p.1).is_err() && pairs.binary_search(p).is_err());
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
        MessageSent(e) => r.message_channels.push(e.channel_id),
        // A recall changes the last message (when it was the last) and mention counts,
        // also of former members whose history ends after it (the message step keys
        // active members only), and of a large group's former members: every row of the
        // channel, of which only those that differ are written.
        MessageRecalled(e) => r.channels.push(e.channel_id),
        // An edit changes the preview (when it is the last message) and mention counts:
        // the same rows as a recall.
        MessageEdited(e) => r.channels.push(e.channel_id),
        // Only the preview of the member's own row can change.
        MessageHidden(e) => r.message_conversations.push((e.user_id, e.channel_id)),
        ConversationRead(e) => {
            r.message_conversations.push((e.user_id, e.channel_id));
            r.message_conversations.extend(e.peer_id.map(|p| (p, e.channel_id)));
        }
        ConversationSettingsChanged(e) => r.conversations.push((e.user_id, e.channel_id)),
        // Roles, group nicknames, applications, reactions, pins and moderation are not part
        // of any read model.
        MessageReaction(_)
        | MessagePinned(_)
        | ChannelModerationChanged(_)
        | MemberMuted(_)
        | MemberBanned(_)
        | MemberRoleChanged(_)
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

#[cfg(test)]
mod tests {
    //! Given an event, when it is projected, then exactly these rows are refreshed: a
    //! `when(events).then_expect(refresh)` helper in the style of cqrs-es'
    //! `TestFramework`, no database.

    use super::*;
    use crate::event::*;
    use crate::id::{ApplicationId, MessageId};

    const ALICE: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CAROL: UserId = UserId(3);
    const CHAT: ChannelId = ChannelId(10);
    const GROUP: ChannelId = ChannelId(20);

    /// The refresh the events projected to, to compare with what is expected.
    struct Projected(Refresh);

    fn when(events: impl IntoIterator<Item = DomainEvent>) -> Projected {
        let events: Vec<DomainEvent> = events.into_iter().collect();
        Projected(project_all(&events))
    }

    impl Projected {
        fn then_expect(self, expected: Refresh) {
            assert_eq!(self.0, expected);
        }

        fn then_expect_nothing(self) {
            assert!(self.0.is_empty(), "expected no refresh, got {:?}", self.0);
        }
    }

    fn message(channel: ChannelId, read_diffusion: bool) -> DomainEvent {
        DomainEvent::MessageSent(MessageSent {
            message_id: MessageId(100),
            channel_id: channel,
            channel_type: "group".into(),
            seq: 1,
            sender_id: ALICE,
            sender_name: "alice".into(),
            msg_type: "text".into(),
            content: serde_json::json!({"text": "hi"}),
            mentions: vec![],
            mention_all: false,
            client_msg_id: None,
            sent_at: 1,
            reply_to: None,
            forwarded_from: None,
            read_diffusion,
        })
    }

    fn added(users: Vec<UserId>, diffusion_changed: bool) -> DomainEvent {
        DomainEvent::MemberAdded(MemberAdded {
            channel_id: GROUP,
            user_ids: users,
            added_by: ALICE,
            join_seq: 0,
            joined_at: 1,
            diffusion_changed,
        })
    }

    fn removed(users: Vec<UserId>, diffusion_changed: bool) -> DomainEvent {
        DomainEvent::MemberRemoved(MemberRemoved {
            channel_id: GROUP,
            user_ids: users,
            removed_by: ALICE,
            reason: "removed".into(),
            left_seq: 3,
            left_at: 1,
            diffusion_changed,
        })
    }

    fn created(channel: ChannelId, channel_type: &str) -> DomainEvent {
        DomainEvent::ChannelCreated(ChannelCreated {
            channel_id: channel,
            channel_type: channel_type.into(),
            channel_name: String::new(),
            avatar: String::new(),
            creator_id: ALICE,
            member_ids: vec![ALICE, BOB],
            created_at: 1,
        })
    }

    fn friendship_updated(channel: Option<ChannelId>) -> DomainEvent {
        DomainEvent::FriendshipUpdated(FriendshipUpdated {
            user_id: ALICE,
            friend_id: BOB,
            channel_id: channel,
            remark_name: "b".into(),
            group_name: String::new(),
            tags: vec![],
            is_starred: false,
            is_blocked: false,
            changed: vec!["remarkName".into()],
            updated_at: 1,
        })
    }

    #[test]
    fn a_message_in_a_small_group_refreshes_the_message_columns_of_every_members_row() {
        when([message(GROUP, false)]).then_expect(Refresh { message_channels: vec![GROUP], ..Refresh::default() });
    }

    #[test]
    fn a_row_refreshed_whole_is_not_refreshed_again_for_its_message_columns() {
        let mut r = Refresh {
            message_channels: vec![GROUP, CHAT],
            message_conversations: vec![(BOB, GROUP), (BOB, CHAT), (CAROL, CHAT)],
            ..Refresh::default()
        };
        r.merge(Refresh { channels: vec![GROUP], conversations: vec![(BOB, CHAT)], ..Refresh::default() });
        assert_eq!(r.message_channels, [CHAT]);
        assert_eq!(r.message_conversations, [(CAROL, CHAT)]);
    }

    #[test]
    fn a_message_in_a_large_group_refreshes_no_stored_row() {
        when([message(GROUP, true)]).then_expect_nothing();
    }

    #[test]
    fn a_profile_update_refreshes_the_rows_that_show_the_profile() {
        let e = DomainEvent::UserProfileUpdated(UserProfileUpdated {
            user_id: BOB,
            profile_ver: 2,
            nickname: "bob".into(),
            avatar: String::new(),
            gender: "unknown".into(),
            region: String::new(),
            birthday: None,
            tagline: String::new(),
            changed: vec!["nickname".into()],
            updated_at: 1,
        });
        when([e]).then_expect(Refresh { peers: vec![BOB], contact_of: vec![BOB], ..Refresh::default() });
    }

    #[test]
    fn added_members_get_their_own_rows() {
        when([added(vec![CAROL, BOB], false)])
            .then_expect(Refresh { conversations: vec![(BOB, GROUP), (CAROL, GROUP)], ..Refresh::default() });
    }

    #[test]
    fn removed_members_get_their_own_rows() {
        when([removed(vec![BOB], false)])
            .then_expect(Refresh { conversations: vec![(BOB, GROUP)], ..Refresh::default() });
    }

    #[test]
    fn a_membership_change_across_the_threshold_refreshes_the_whole_channel() {
        let whole = Refresh { channels: vec![GROUP], ..Refresh::default() };
        when([added(vec![CAROL], true)]).then_expect(whole.clone());
        when([removed(vec![CAROL], true)]).then_expect(whole);
    }

    #[test]
    fn a_new_group_refreshes_its_channel_and_a_new_chat_also_its_reverse_index() {
        when([created(GROUP, "group")]).then_expect(Refresh { channels: vec![GROUP], ..Refresh::default() });
        when([created(CHAT, "single")]).then_expect(Refresh {
            channels: vec![CHAT],
            reverse_channels: vec![CHAT],
            ..Refresh::default()
        });
    }

    #[test]
    fn channel_updates_and_dismissal_refresh_the_channel() {
        let update = DomainEvent::ChannelUpdated(ChannelUpdated {
            channel_id: GROUP,
            name: "g".into(),
            avatar: String::new(),
            channel_info_ver: 2,
            updated_by: ALICE,
            updated_at: 1,
        });
        let dismissal =
            DomainEvent::ChannelDismissed(ChannelDismissed { channel_id: GROUP, dismissed_by: ALICE, dismissed_at: 1 });
        let whole = Refresh { channels: vec![GROUP], ..Refresh::default() };
        when([update]).then_expect(whole.clone());
        when([dismissal]).then_expect(whole);
    }

    #[test]
    fn reading_and_settings_refresh_the_readers_row_only() {
        let read = DomainEvent::ConversationRead(ConversationRead {
            user_id: BOB,
            channel_id: GROUP,
            read_seq: 4,
            read_at: 1,
            peer_id: None,
        });
        let settings = DomainEvent::ConversationSettingsChanged(ConversationSettingsChanged {
            user_id: BOB,
            channel_id: GROUP,
            is_pinned: true,
            is_muted: false,
            is_hidden: false,
            closed: false,
            changed_at: 1,
        });
        when([read]).then_expect(Refresh { message_conversations: vec![(BOB, GROUP)], ..Refresh::default() });
        when([settings]).then_expect(Refresh { conversations: vec![(BOB, GROUP)], ..Refresh::default() });
    }

    #[test]
    fn a_one_to_one_read_refreshes_the_peers_row_too() {
        let read = DomainEvent::ConversationRead(ConversationRead {
            user_id: BOB,
            channel_id: CHAT,
            read_seq: 4,
            read_at: 1,
            peer_id: Some(ALICE),
        });
        when([read])
            .then_expect(Refresh { message_conversations: vec![(ALICE, CHAT), (BOB, CHAT)], ..Refresh::default() });
    }

    #[test]
    fn lifecycle_events_refresh_every_row_of_the_channel_but_reactions_none() {
        let recall = DomainEvent::MessageRecalled(MessageRecalled {
            message_id: MessageId(100),
            channel_id: GROUP,
            seq: 1,
            sender_id: ALICE,
            recalled_by: ALICE,
            recalled_at: 2,
            read_diffusion: true,
        });
        let hidden = DomainEvent::MessageHidden(MessageHidden {
            user_id: BOB,
            channel_id: GROUP,
            message_id: MessageId(100),
            seq: 1,
            hidden_at: 2,
        });
        let reaction = DomainEvent::MessageReaction(MessageReaction {
            message_id: MessageId(100),
            channel_id: GROUP,
            seq: 1,
            user_id: BOB,
            emoji: "👍".into(),
            added: true,
            at: 2,
            read_diffusion: false,
        });
        // former members of a large group store their rows: a recall refreshes them too
        when([recall]).then_expect(Refresh { channels: vec![GROUP], ..Refresh::default() });
        when([hidden]).then_expect(Refresh { message_conversations: vec![(BOB, GROUP)], ..Refresh::default() });
        when([reaction]).then_expect_nothing();
    }

    #[test]
    fn a_new_friendship_refreshes_the_chat_both_contacts_and_their_reverse_rows() {
        let e = DomainEvent::FriendshipCreated(FriendshipCreated {
            user_id: ALICE,
            friend_id: BOB,
            channel_id: CHAT,
            source: "search".into(),
            added_at: 1,
        });
        when([e]).then_expect(Refresh {
            channels: vec![CHAT],
            reverse_channels: vec![CHAT],
            contacts: vec![(ALICE, BOB), (BOB, ALICE)],
            reverse_contacts: vec![(ALICE, BOB), (BOB, ALICE)],
            ..Refresh::default()
        });
    }

    #[test]
    fn a_friendship_change_refreshes_the_owners_contact_and_chat_rows() {
        let own = Refresh { contacts: vec![(ALICE, BOB)], conversations: vec![(ALICE, CHAT)], ..Refresh::default() };
        when([friendship_updated(Some(CHAT))]).then_expect(own.clone());
        when([friendship_updated(None)]).then_expect(Refresh { contacts: vec![(ALICE, BOB)], ..Refresh::default() });
        let deleted = DomainEvent::FriendshipDeleted(FriendshipDeleted {
            user_id: ALICE,
            friend_id: BOB,
            channel_id: Some(CHAT),
            deleted_at: 1,
        });
        when([deleted]).then_expect(own);
    }

    #[test]
    fn roles_nicknames_and_applications_are_in_no_read_model() {
        let events = [
            DomainEvent::MemberRoleChanged(MemberRoleChanged {
                channel_id: GROUP,
                user_id: BOB,
                role: "admin".into(),
                changed_by: ALICE,
                changed_at: 1,
            }),
            DomainEvent::MemberUpdated(MemberUpdated {
                channel_id: GROUP,
                user_id: BOB,
                group_nickname: "b".into(),
                updated_at: 1,
            }),
            DomainEvent::ContactApplicationCreated(ContactApplicationCreated {
                application_id: ApplicationId(7),
                applicant_id: ALICE,
                target_id: BOB,
                message: String::new(),
                source: "search".into(),
                created_at: 1,
            }),
            DomainEvent::ContactApplicationReviewed(ContactApplicationReviewed {
                application_id: ApplicationId(7),
                applicant_id: ALICE,
                target_id: BOB,
                status: "approved".into(),
                reviewed_at: 1,
            }),
            DomainEvent::ChannelApplicationCreated(ChannelApplicationCreated {
                application_id: ApplicationId(8),
                channel_id: GROUP,
                applicant_id: CAROL,
                message: String::new(),
                created_at: 1,
            }),
            DomainEvent::ChannelApplicationReviewed(ChannelApplicationReviewed {
                application_id: ApplicationId(8),
                channel_id: GROUP,
                applicant_id: CAROL,
                reviewer_id: ALICE,
                status: "rejected".into(),
                reviewed_at: 1,
            }),
        ];
        for e in events {
            when([e]).then_expect_nothing();
        }
    }

    #[test]
    fn a_batch_projects_to_the_deduplicated_union_of_its_events() {
        when([message(GROUP, false), message(GROUP, false), added(vec![BOB], false), message(CHAT, false)])
            .then_expect(Refresh {
                message_channels: vec![CHAT, GROUP],
                conversations: vec![(BOB, GROUP)],
                ..Refresh::default()
            });
    }
}
