//! Deciding a batch of sends: what the batch locks ([`batch_locks`]), and each send's
//! answer from the locked rows and the sends before it ([`Batch::decide`]), with no
//! database, so the rules of a send are tested on their own below.

use std::collections::{HashMap, HashSet};

use hermet_domain::channel::{ChannelStatus, Member};
use hermet_domain::event::{self, DomainEvent};
use hermet_domain::id::{ChannelId, IdGenerator, UserId};
use hermet_domain::message::{Forwarded, Mentions, Message, Quote};
use hermet_domain::user::UserStatus;
use hermet_domain::{Error, ErrorCode, Result};
use hermet_store::{SendBatchLocked, SendBatchLocks, UserBrief};

use super::{SendMessage, SentMessage};
use crate::Principal;
use crate::cache::ChannelKind;

/// One send, validated, waiting for its batch.
pub(super) struct Outgoing {
    pub who: Principal,
    pub channel: ChannelId,
    pub req: SendMessage,
    /// A reply's quote of the message it answers, read when the send was validated, or
    /// why it may not be answered (refused after a retry's check: a retried reply answers
    /// as before even when its message was recalled since).
    pub quote: Option<std::result::Result<Quote, Unquotable>>,
    /// A forward's origin.
    pub forwarded: Option<Forwarded>,
}

/// Why a message may not be answered.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unquotable {
    /// Not one the sender can see in the channel.
    Unknown(hermet_domain::id::MessageId),
    Recalled(hermet_domain::id::MessageId),
}

impl Unquotable {
    fn error(self) -> Error {
        match self {
            Unquotable::Unknown(id) => super::unknown_message("replyTo", &[id]),
            Unquotable::Recalled(id) => super::recalled_at(Some("replyTo"), Some(id)),
        }
    }
}

/// What validating one send of a batch decided.
pub(super) enum Decision {
    /// A retry of a message already stored.
    Existing(SentMessage),
    /// A message of this batch (index into its messages): new, or a retry of one
    /// accepted earlier in the batch.
    InBatch(usize),
}

/// What a batch locks: every send's channel and membership; for one-to-one chats both
/// users and both friendships; group senders' nicknames; client ids; mentioned pairs.
pub(super) fn batch_locks(sends: &[&Outgoing], kinds: &[Option<ChannelKind>]) -> SendBatchLocks {
    let mut l = SendBatchLocks::default();
    for (s, kind) in sends.iter().zip(kinds) {
        let Some(kind) = kind else { continue };
        let me = s.who.user_id;
        match kind.peer_of(me) {
            Some(peer) => {
                l.share_users.extend([me, peer]);
                l.friendships.extend([(me, peer), (peer, me)]);
            }
            None => l.read_users.push(me),
        }
        l.channels.push(s.channel);
        l.members.push((s.channel, me));
        if let Some(id) = &s.req.client_msg_id {
            l.client_ids.push((me, id.clone()));
        }
        if let Mentions::Users(ids) = &s.req.mentions {
            l.mentioned.extend(ids.iter().filter(|u| **u != me).map(|u| (s.channel, *u)));
        }
    }
    fn canonical<T: Ord>(v: &mut Vec<T>) {
        v.sort_unstable();
        v.dedup();
    }
    canonical(&mut l.share_users);
    canonical(&mut l.read_users);
    l.read_users.retain(|u| l.share_users.binary_search(u).is_err());
    canonical(&mut l.channels);
    canonical(&mut l.friendships);
    canonical(&mut l.members);
    canonical(&mut l.client_ids);
    canonical(&mut l.mentioned);
    l
}

/// A batch being decided: the locked rows by key, and the messages accepted so far.
pub(super) struct Batch<'a> {
    users: HashMap<UserId, &'a UserBrief>,
    /// Plain members may mention everyone (`limits.mention_all_by_members`).
    mention_all_by_members: bool,
    channels: HashMap<ChannelId, &'a hermet_domain::channel::Channel>,
    friendships: HashMap<(UserId, UserId), &'a hermet_domain::contact::Friendship>,
    members: HashMap<(ChannelId, UserId), &'a Member>,
    sent: HashMap<(UserId, &'a str), &'a Message>,
    mentioned: HashSet<(ChannelId, UserId)>,
    /// The last seq allocated per channel.
    seqs: HashMap<ChannelId, i64>,
    /// (sender, clientMsgId) → index of the accepted message.
    accepted: HashMap<(UserId, String), usize>,
    /// Sends accepted in slow mode, by (channel, sender): when.
    slow_sent: HashMap<(ChannelId, UserId), i64>,
    /// Their pairs, to record on the member rows.
    pub slow_sends: Vec<(ChannelId, UserId)>,
    pub messages: Vec<Message>,
    pub events: Vec<DomainEvent>,
}

impl<'a> Batch<'a> {
    pub(super) fn new(l: &'a SendBatchLocked, mention_all_by_members: bool) -> Self {
        Self {
            users: l.users.iter().map(|u| (u.id, u)).collect(),
            mention_all_by_members,
            channels: l.channels.iter().map(|c| (c.id, c)).collect(),
            friendships: l.friendships.iter().map(|f| ((f.user_id, f.friend_id), f)).collect(),
            members: l.members.iter().map(|m| ((m.channel_id, m.user_id), m)).collect(),
            sent: l.sent.iter().filter_map(|m| Some(((m.sender_id, m.client_msg_id.as_deref()?), m))).collect(),
            mentioned: l.mentioned.iter().copied().collect(),
            seqs: l.channels.iter().map(|c| (c.id, c.last_seq)).collect(),
            accepted: HashMap::new(),
            slow_sent: HashMap::new(),
            slow_sends: Vec::new(),
            messages: Vec::new(),
            events: Vec::new(),
        }
    }

    /// One send, checked in the order a send alone would check it, against the locked
    /// rows and the messages accepted before it in this batch: a function of those and
    /// of `peer`, the other member when the channel is a one-to-one chat (new messages
    /// take their ids from `ids`).
    pub(super) fn decide(
        &mut self,
        s: &Outgoing,
        peer: Option<UserId>,
        now: i64,
        ids: &IdGenerator,
    ) -> Result<Decision> {
        let me = s.who.user_id;
        let channel = *self.channels.get(&s.channel).ok_or(Error::NotFound("channel"))?;
        if let Some(cmid) = &s.req.client_msg_id {
            let earlier = match self.sent.get(&(me, cmid.as_str())) {
                Some(m) => Some((m.channel_id, Decision::Existing((*m).into()))),
                None => {
                    self.accepted.get(&(me, cmid.clone())).map(|&k| (self.messages[k].channel_id, Decision::InBatch(k)))
                }
            };
            if let Some((in_channel, d)) = earlier {
                if in_channel != s.channel {
                    return Err(Error::Refused {
                        code: ErrorCode::ClientMsgIdReused,
                        message: "this clientMsgId was already used for a message in another channel".into(),
                        field: Some("clientMsgId"),
                        details: None,
                    });
                }
                return Ok(d);
            }
        }
        let quote = match &s.quote {
            None => None,
            Some(Ok(q)) => Some(q.clone()),
            Some(Err(why)) => return Err(why.error()),
        };
        if channel.status != ChannelStatus::Active {
            return Err(Error::Refused {
                code: ErrorCode::ChannelArchived,
                message: "this group has been dismissed; no further messages".into(),
                field: None,
                details: None,
            });
        }
        let member = self
            .members
            .get(&(s.channel, me))
            .filter(|m| m.is_active())
            .ok_or_else(|| Error::forbidden("you are not a member of this channel"))?;
        if let Some(peer) = peer {
            if self.users.get(&peer).is_none_or(|u| u.status != UserStatus::Active) {
                return Err(Error::Refused {
                    code: ErrorCode::RecipientInactive,
                    message: "this account was disabled or deleted; the message was not sent".into(),
                    field: None,
                    details: None,
                });
            }
            match (self.friendships.get(&(me, peer)), self.friendships.get(&(peer, me))) {
                (Some(m), Some(t)) if m.is_live() && t.is_live() => {
                    if t.is_blocked {
                        return Err(Error::Forbidden("this user has blocked you; the message was not sent".into()));
                    }
                }
                _ => {
                    return Err(Error::Refused {
                        code: ErrorCode::NotFriends,
                        message: "you are no longer friends with this user; send a friend application first".into(),
                        field: None,
                        details: None,
                    });
                }
            }
        }
        let managing = member.role.can_manage();
        if member.is_muted(now) {
            return Err(Error::Refused {
                code: ErrorCode::MemberMuted,
                message: "you are muted in this group".into(),
                field: None,
                details: Some(Box::new(serde_json::json!({ "mutedUntil": member.muted_until }))),
            });
        }
        if channel.mute_all && !managing {
            return Err(Error::Refused {
                code: ErrorCode::ChannelMuted,
                message: "everyone is muted in this group but its owner and admins".into(),
                field: None,
                details: None,
            });
        }
        let slow = channel.slow_mode_secs > 0 && !managing;
        if slow {
            let interval = i64::from(channel.slow_mode_secs) * 1000;
            let last = self.slow_sent.get(&(s.channel, me)).copied().or(member.slow_sent_at);
            if let Some(last) = last
                && now - last < interval
            {
                let wait = (last + interval - now + 999) / 1000;
                return Err(Error::Refused {
                    code: ErrorCode::SlowMode,
                    message: format!("slow mode: one message per {} s; send again in {wait} s", channel.slow_mode_secs),
                    field: None,
                    details: Some(Box::new(serde_json::json!({ "retryAfterSecs": wait }))),
                });
            }
        }
        let (mentions, mention_all) = match &s.req.mentions {
            Mentions::None => (Vec::new(), false),
            Mentions::All => {
                super::may_mention_all(peer.is_some(), member.role, self.mention_all_by_members)?;
                (Vec::new(), true)
            }
            Mentions::Users(ids) => {
                let mut m: Vec<UserId> =
                    ids.iter().copied().filter(|u| *u != me && self.mentioned.contains(&(s.channel, *u))).collect();
                m.sort_unstable();
                m.dedup();
                (m, false)
            }
        };
        let sender_name = match member.group_nickname.as_str() {
            "" => self.users.get(&me).map(|u| u.nickname.clone()).unwrap_or_default(),
            nickname => nickname.to_owned(),
        };
        if slow && self.slow_sent.insert((s.channel, me), now).is_none() {
            self.slow_sends.push((s.channel, me));
        }
        let seq = self.seqs.entry(s.channel).or_insert(channel.last_seq);
        *seq += 1;
        let msg = Message {
            id: ids.next().map_err(Error::internal)?,
            channel_id: s.channel,
            seq: *seq,
            sender_id: me,
            sender_name,
            msg_type: s.req.msg_type,
            content: s.req.content.clone(),
            mentions,
            mention_all,
            client_msg_id: s.req.client_msg_id.clone(),
            created_at: now,
            recalled: None,
            edited_at: None,
            edit_count: 0,
            reply_to: quote.as_ref().map(|q| q.message_id),
            forwarded_from: s.forwarded.clone(),
        };
        self.events.push(DomainEvent::MessageSent(event::MessageSent {
            message_id: msg.id,
            channel_id: s.channel,
            channel_type: channel.channel_type.as_str().into(),
            seq: msg.seq,
            sender_id: me,
            sender_name: msg.sender_name.clone(),
            msg_type: msg.msg_type.as_str().into(),
            content: msg.content.clone(),
            mentions: msg.mentions.clone(),
            mention_all,
            client_msg_id: msg.client_msg_id.clone(),
            sent_at: now,
            reply_to: quote,
            forwarded_from: msg.forwarded_from.clone(),
            read_diffusion: channel.read_diffusion,
        }));
        if let Some(cmid) = &msg.client_msg_id {
            self.accepted.insert((me, cmid.clone()), self.messages.len());
        }
        self.messages.push(msg);
        Ok(Decision::InBatch(self.messages.len() - 1))
    }
}

#[cfg(test)]
mod tests {
    //! Given the rows a batch locked, when its sends are decided in order, then each gets
    //! this answer: a `given(..).when(..).then_expect(..)` helper in the style of
    //! cqrs-es' `TestFramework`, no database.

    use hermet_domain::channel::{Channel, ChannelType, MemberRole};
    use hermet_domain::contact::{FriendSource, Friendship};
    use hermet_domain::id::{MessageId, SessionId};
    use hermet_domain::message::MessageType;
    use hermet_domain::user::UserStatus;
    use hermet_store::UserBrief;

    use super::*;

    const ALICE: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CAROL: UserId = UserId(3);
    const GROUP: ChannelId = ChannelId(20);
    const CHAT: ChannelId = ChannelId(10);
    const NOW: i64 = 1_000;

    /// The rows a batch locked.
    struct World(SendBatchLocked);

    fn given() -> World {
        let users = [(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")]
            .map(|(id, nickname)| UserBrief {
                id,
                status: UserStatus::Active,
                nickname: nickname.into(),
                avatar: String::new(),
            })
            .into();
        World(SendBatchLocked { users, ..SendBatchLocked::default() })
    }

    fn channel(id: ChannelId, channel_type: ChannelType, last_seq: i64, single_pair: Option<String>) -> Channel {
        Channel {
            id,
            channel_type,
            name: String::new(),
            avatar: String::new(),
            status: ChannelStatus::Active,
            channel_info_ver: 1,
            member_count: 2,
            last_seq,
            last_message_at: None,
            read_diffusion: false,
            creator_id: ALICE,
            single_pair,
            created_at: 0,
            updated_at: 0,
            mute_all: false,
            slow_mode_secs: 0,
        }
    }

    fn member(channel_id: ChannelId, user_id: UserId) -> Member {
        Member {
            channel_id,
            user_id,
            role: MemberRole::Member,
            group_nickname: String::new(),
            joined_at: 0,
            left_at: None,
            join_seq: 0,
            left_seq: None,
            muted_until: None,
            slow_sent_at: None,
        }
    }

    fn friendship(user_id: UserId, friend_id: UserId) -> Friendship {
        Friendship {
            user_id,
            friend_id,
            remark_name: String::new(),
            source: FriendSource::Search,
            tags: vec![],
            group_name: String::new(),
            is_starred: false,
            is_blocked: false,
            added_at: 0,
            deleted_at: None,
        }
    }

    impl World {
        /// A group with these members, its last message at `last_seq`.
        fn group(mut self, last_seq: i64, members: &[UserId]) -> Self {
            self.0.channels.push(channel(GROUP, ChannelType::Group, last_seq, None));
            self.0.members.extend(members.iter().map(|u| member(GROUP, *u)));
            self
        }

        /// Alice and Bob's one-to-one chat, as friends.
        fn chat(mut self) -> Self {
            let pair = format!("{}:{}", ALICE.get(), BOB.get());
            self.0.channels.push(channel(CHAT, ChannelType::Single, 0, Some(pair)));
            self.0.members.extend([member(CHAT, ALICE), member(CHAT, BOB)]);
            self.0.friendships.extend([friendship(ALICE, BOB), friendship(BOB, ALICE)]);
            self
        }

        fn archived(mut self) -> Self {
            self.0.channels.iter_mut().filter(|c| c.id == GROUP).for_each(|c| c.status = ChannelStatus::Archived);
            self
        }

        fn left(mut self, user: UserId) -> Self {
            self.0.members.iter_mut().filter(|m| m.user_id == user).for_each(|m| m.left_at = Some(1));
            self
        }

        fn role_in_group(mut self, user: UserId, role: MemberRole) -> Self {
            self.0
                .members
                .iter_mut()
                .filter(|m| m.channel_id == GROUP && m.user_id == user)
                .for_each(|m| m.role = role);
            self
        }

        fn account(mut self, user: UserId, status: UserStatus) -> Self {
            self.0.users.iter_mut().filter(|u| u.id == user).for_each(|u| u.status = status);
            self
        }

        fn nickname_in_group(mut self, user: UserId, nickname: &str) -> Self {
            self.0
                .members
                .iter_mut()
                .filter(|m| m.channel_id == GROUP && m.user_id == user)
                .for_each(|m| m.group_nickname = nickname.into());
            self
        }

        /// A change to the group's member `user`'s row.
        fn member_of_group(mut self, user: UserId, change: impl Fn(&mut Member)) -> Self {
            self.0.members.iter_mut().filter(|m| m.channel_id == GROUP && m.user_id == user).for_each(change);
            self
        }

        /// A change to the group's row.
        fn group_is(mut self, change: impl Fn(&mut Channel)) -> Self {
            self.0.channels.iter_mut().filter(|c| c.id == GROUP).for_each(change);
            self
        }

        /// `by`'s side of the friendship blocks the other.
        fn blocked_by(mut self, by: UserId) -> Self {
            self.0.friendships.iter_mut().filter(|f| f.user_id == by).for_each(|f| f.is_blocked = true);
            self
        }

        /// `by` deleted the friendship on their side.
        fn unfriended_by(mut self, by: UserId) -> Self {
            self.0.friendships.iter_mut().filter(|f| f.user_id == by).for_each(|f| f.deleted_at = Some(1));
            self
        }

        /// A message already stored with this client id.
        fn stored(mut self, channel_id: ChannelId, client_msg_id: &str) -> Self {
            self.0.sent.push(Message {
                id: MessageId(77),
                channel_id,
                seq: 3,
                sender_id: ALICE,
                sender_name: "alice".into(),
                msg_type: MessageType::Text,
                content: serde_json::json!({"text": "earlier"}),
                mentions: vec![],
                mention_all: false,
                client_msg_id: Some(client_msg_id.into()),
                created_at: 500,
                recalled: None,
                edited_at: None,
                edit_count: 0,
                reply_to: None,
                forwarded_from: None,
            });
            self
        }

        /// Decides `sends` in order, as a batch does once its rows are locked.
        fn when(mut self, sends: Vec<Outgoing>) -> Decided {
            // The store reports the mentioned pairs whose user is an active member.
            self.0.mentioned =
                self.0.members.iter().filter(|m| m.is_active()).map(|m| (m.channel_id, m.user_id)).collect();
            let ids = IdGenerator::new(1).unwrap();
            let mut batch = Batch::new(&self.0, false);
            let decisions: Vec<Result<Decision>> = sends
                .iter()
                .map(|s| {
                    let peer = batch.channels.get(&s.channel).and_then(|c| c.peer_of(s.who.user_id));
                    batch.decide(s, peer, NOW, &ids)
                })
                .collect();
            Decided { decisions, messages: batch.messages, events: batch.events, slow_sends: batch.slow_sends }
        }
    }

    fn send(who: UserId, channel: ChannelId) -> Outgoing {
        Outgoing {
            who: Principal { user_id: who, session_id: SessionId(who.get()), is_admin: false, lists_generation: None },
            channel,
            req: SendMessage {
                msg_type: MessageType::Text,
                content: serde_json::json!({"text": "hi"}),
                mentions: Mentions::None,
                client_msg_id: None,
                reply_to: None,
            },
            quote: None,
            forwarded: None,
        }
    }

    impl Outgoing {
        fn client_id(mut self, id: &str) -> Self {
            self.req.client_msg_id = Some(id.into());
            self
        }

        fn mentioning(mut self, mentions: Mentions) -> Self {
            self.req.mentions = mentions;
            self
        }
    }

    /// What one send was answered.
    #[derive(Debug, PartialEq)]
    enum Answer {
        /// The batch's message at this index (new, or retried within the batch).
        InBatch(usize),
        /// The stored message with this id.
        Stored(MessageId),
        /// Refused with this HTTP status and error code.
        Refused(u16, &'static str),
    }
    use Answer::*;

    struct Decided {
        decisions: Vec<Result<Decision>>,
        messages: Vec<Message>,
        events: Vec<DomainEvent>,
        slow_sends: Vec<(ChannelId, UserId)>,
    }

    impl Decided {
        fn then_expect(self, expected: &[Answer]) -> Self {
            let answers: Vec<Answer> = self
                .decisions
                .iter()
                .map(|d| match d {
                    Ok(Decision::InBatch(k)) => InBatch(*k),
                    Ok(Decision::Existing(sent)) => Stored(sent.message_id),
                    Err(e) => Refused(e.status(), e.code().as_str()),
                })
                .collect();
            assert_eq!(answers, expected);
            assert_eq!(self.messages.len(), self.events.len(), "one message.sent per new message");
            self
        }

        /// (channel, seq) of each new message, in order.
        fn then_messages(self, expected: &[(ChannelId, i64)]) -> Self {
            let got: Vec<(ChannelId, i64)> = self.messages.iter().map(|m| (m.channel_id, m.seq)).collect();
            assert_eq!(got, expected);
            self
        }
    }

    #[test]
    fn new_sends_take_the_next_seqs_of_their_channels() {
        let d = given()
            .group(5, &[ALICE, BOB])
            .chat()
            .nickname_in_group(BOB, "bobby")
            .when(vec![send(ALICE, GROUP), send(BOB, GROUP), send(ALICE, CHAT)])
            .then_expect(&[InBatch(0), InBatch(1), InBatch(2)])
            .then_messages(&[(GROUP, 6), (GROUP, 7), (CHAT, 1)]);
        let names: Vec<&str> = d.messages.iter().map(|m| m.sender_name.as_str()).collect();
        assert_eq!(names, ["alice", "bobby", "alice"], "a group nickname wins over the profile's");
        assert!(d.messages.iter().all(|m| m.created_at == NOW));
        let DomainEvent::MessageSent(e) = &d.events[2] else { panic!("expected message.sent") };
        assert_eq!((e.channel_id, e.seq, e.channel_type.as_str()), (CHAT, 1, "single"));
    }

    #[test]
    fn a_retry_of_a_stored_client_id_answers_the_stored_message() {
        given()
            .group(5, &[ALICE, BOB])
            .stored(GROUP, "m1")
            .when(vec![send(ALICE, GROUP).client_id("m1")])
            .then_expect(&[Stored(MessageId(77))])
            .then_messages(&[]);
    }

    #[test]
    fn a_retry_within_the_batch_answers_the_earlier_send() {
        given()
            .group(5, &[ALICE, BOB])
            .when(vec![
                send(ALICE, GROUP).client_id("m1"),
                send(BOB, GROUP).client_id("m1"),
                send(ALICE, GROUP).client_id("m1"),
            ])
            .then_expect(&[InBatch(0), InBatch(1), InBatch(0)])
            .then_messages(&[(GROUP, 6), (GROUP, 7)]);
    }

    #[test]
    fn a_client_id_used_in_another_channel_is_a_conflict() {
        let reused = Refused(409, "client_msg_id_reused");
        given()
            .group(5, &[ALICE, BOB])
            .chat()
            .stored(CHAT, "m1")
            .when(vec![send(ALICE, GROUP).client_id("m1")])
            .then_expect(&[reused]);
        given()
            .group(5, &[ALICE, BOB])
            .chat()
            .when(vec![send(ALICE, CHAT).client_id("m2"), send(ALICE, GROUP).client_id("m2")])
            .then_expect(&[InBatch(0), Refused(409, "client_msg_id_reused")]);
    }

    #[test]
    fn an_archived_group_takes_no_messages() {
        given()
            .group(5, &[ALICE, BOB])
            .archived()
            .when(vec![send(ALICE, GROUP)])
            .then_expect(&[Refused(409, "channel_archived")])
            .then_messages(&[]);
    }

    #[test]
    fn only_active_members_send_and_a_refused_send_takes_no_seq() {
        given()
            .group(5, &[ALICE, BOB, CAROL])
            .left(CAROL)
            .role_in_group(BOB, MemberRole::Admin)
            .when(vec![send(ALICE, GROUP), send(CAROL, GROUP), send(BOB, GROUP)])
            .then_expect(&[InBatch(0), Refused(403, "forbidden"), InBatch(1)])
            .then_messages(&[(GROUP, 6), (GROUP, 7)]);
        given().group(5, &[ALICE]).when(vec![send(BOB, GROUP)]).then_expect(&[Refused(403, "forbidden")]);
    }

    #[test]
    fn a_channel_the_batch_did_not_lock_is_not_found() {
        given().when(vec![send(ALICE, GROUP)]).then_expect(&[Refused(404, "not_found")]);
    }

    #[test]
    fn a_blocked_sender_is_forbidden_and_the_blocker_may_still_send() {
        given()
            .chat()
            .blocked_by(BOB)
            .when(vec![send(ALICE, CHAT), send(BOB, CHAT)])
            .then_expect(&[Refused(403, "forbidden"), InBatch(0)])
            .then_messages(&[(CHAT, 1)]);
    }

    #[test]
    fn former_friends_cannot_chat() {
        for by in [ALICE, BOB] {
            given()
                .chat()
                .unfriended_by(by)
                .when(vec![send(ALICE, CHAT), send(BOB, CHAT)])
                .then_expect(&[Refused(422, "not_friends"), Refused(422, "not_friends")]);
        }
    }

    #[test]
    fn mentions_keep_only_the_other_active_members_once_each() {
        let d = given()
            .group(5, &[ALICE, BOB, CAROL])
            .left(CAROL)
            .role_in_group(BOB, MemberRole::Admin)
            .when(vec![
                send(ALICE, GROUP).mentioning(Mentions::Users(vec![BOB, CAROL, ALICE, BOB, UserId(99)])),
                send(BOB, GROUP).mentioning(Mentions::All),
            ])
            .then_expect(&[InBatch(0), InBatch(1)]);
        assert_eq!((d.messages[0].mentions.clone(), d.messages[0].mention_all), (vec![BOB], false));
        assert_eq!((d.messages[1].mentions.clone(), d.messages[1].mention_all), (vec![], true));
        let DomainEvent::MessageSent(e) = &d.events[0] else { panic!("expected message.sent") };
        assert_eq!(e.mentions, vec![BOB]);
    }

    #[test]
    fn only_the_owner_and_admins_mention_everyone_and_only_in_groups() {
        given()
            .group(5, &[ALICE, BOB, CAROL])
            .role_in_group(ALICE, MemberRole::Owner)
            .role_in_group(BOB, MemberRole::Admin)
            .chat()
            .when(vec![
                send(ALICE, GROUP).mentioning(Mentions::All),
                send(BOB, GROUP).mentioning(Mentions::All),
                send(CAROL, GROUP).mentioning(Mentions::All),
                send(ALICE, CHAT).mentioning(Mentions::All),
            ])
            .then_expect(&[InBatch(0), InBatch(1), Refused(403, "forbidden"), Refused(400, "validation_failed")]);
    }

    #[test]
    fn nothing_is_sent_to_a_disabled_or_deleted_account() {
        for status in [UserStatus::Disabled, UserStatus::Deleted] {
            given()
                .chat()
                .account(BOB, status)
                .when(vec![send(ALICE, CHAT)])
                .then_expect(&[Refused(422, "recipient_inactive")]);
        }
    }

    #[test]
    fn a_muted_member_is_refused_until_the_time_passes() {
        given()
            .group(1, &[ALICE, BOB])
            .member_of_group(BOB, |m| m.muted_until = Some(NOW + 1))
            .member_of_group(ALICE, |m| m.muted_until = Some(NOW))
            .when(vec![send(BOB, GROUP), send(ALICE, GROUP)])
            .then_expect(&[Refused(403, "member_muted"), InBatch(0)]);
    }

    #[test]
    fn mute_all_leaves_the_managers_their_voice() {
        given()
            .group(1, &[ALICE, BOB])
            .group_is(|c| c.mute_all = true)
            .member_of_group(ALICE, |m| m.role = MemberRole::Admin)
            .when(vec![send(BOB, GROUP), send(ALICE, GROUP)])
            .then_expect(&[Refused(403, "channel_muted"), InBatch(0)]);
    }

    #[test]
    fn slow_mode_counts_the_sends_of_the_batch_and_the_last_recorded() {
        let d = given()
            .group(1, &[ALICE, BOB, CAROL])
            .group_is(|c| c.slow_mode_secs = 10)
            .member_of_group(CAROL, |m| m.slow_sent_at = Some(NOW - 9_999))
            .member_of_group(BOB, |m| m.slow_sent_at = Some(NOW - 10_000))
            .when(vec![send(ALICE, GROUP), send(ALICE, GROUP), send(BOB, GROUP), send(CAROL, GROUP)])
            .then_expect(&[InBatch(0), Refused(429, "slow_mode"), InBatch(1), Refused(429, "slow_mode")]);
        assert_eq!(d.slow_sends, [(GROUP, ALICE), (GROUP, BOB)], "recorded for the accepted sends");
    }
}
