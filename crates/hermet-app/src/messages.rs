//! Messages and read state.
//!
//! A channel's `seq` is allocated by incrementing `channel.last_seq` under the channel
//! row's exclusive lock, so concurrent senders get distinct, gap-free, strictly
//! increasing seqs. A sender's own message advances their read position to it, so a
//! member's unread count is exactly (visible last seq − read seq).

use hermet_domain::channel::{ChannelStatus, ChannelType, Member};
use hermet_domain::event::{self, DomainEvent};
use hermet_domain::id::{ChannelId, MessageId, UserId};
use hermet_domain::message::{self, MENTIONS_MAX, Mentions, Message, MessageType};
use hermet_domain::time::now_ms;
use hermet_domain::{Error, Result};
use hermet_store::{ChannelWrites, ConversationRow, Database, Locks, MessageQuery, SendLocks};

use crate::record::timed;
use crate::{App, Principal};

pub struct SendMessage {
    pub msg_type: MessageType,
    pub content: serde_json::Value,
    pub mentions: Mentions,
    pub client_msg_id: Option<String>,
}

/// The answer to a send (the same again for a retried `clientMsgId`).
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub message_id: MessageId,
    pub seq: i64,
    pub sent_at: i64,
}

impl From<&Message> for SentMessage {
    fn from(m: &Message) -> Self {
        Self { message_id: m.id, seq: m.seq, sent_at: m.created_at }
    }
}

/// A page of history: `items` in the order asked for.
pub struct History {
    pub items: Vec<Message>,
    pub has_more: bool,
}

enum Attempt {
    Done(SentMessage),
    /// Another request with the same clientMsgId committed first: read it and answer.
    Raced,
}

impl<D: Database> App<D> {
    /// `POST /channels/{id}/messages`.
    pub async fn send_message(&self, who: Principal, channel: ChannelId, req: SendMessage) -> Result<SentMessage> {
        timed("message.send", async {
            if req.msg_type == MessageType::System {
                return Err(Error::invalid("type", "system messages are sent by the server only"));
            }
            message::validate_content(req.msg_type, &req.content)?;
            if let Some(id) = &req.client_msg_id {
                let n = id.chars().count();
                if n == 0 || n > message::CLIENT_MSG_ID_MAX || id.chars().any(char::is_control) {
                    return Err(Error::invalid(
                        "clientMsgId",
                        format!("clientMsgId must be 1 to {} characters", message::CLIENT_MSG_ID_MAX),
                    ));
                }
            }
            if let Mentions::Users(u) = &req.mentions
                && u.len() > MENTIONS_MAX
            {
                return Err(Error::invalid("mentions", format!("at most {MENTIONS_MAX} mentions")));
            }
            match self.try_send(who, channel, &req).await? {
                Attempt::Done(sent) => Ok(sent),
                Attempt::Raced => match self.try_send(who, channel, &req).await? {
                    Attempt::Done(sent) => Ok(sent),
                    Attempt::Raced => Err(Error::Unavailable("concurrent retries of this message; try again")),
                },
            }
        })
        .await
    }

    async fn try_send(&self, who: Principal, channel_id: ChannelId, req: &SendMessage) -> Result<Attempt> {
        // Read the channel's kind before taking a connection for the transaction (never
        // hold one connection while waiting for another from the same pool).
        let peek = self.channel_kind(channel_id).await?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        // Lock order: users → channel → friendship → member, in one round trip.
        let peer = peek.peer_of(who.user_id);
        let mut lock_ids = vec![who.user_id];
        lock_ids.extend(peer);
        let locks = SendLocks {
            users: lock_ids,
            lock_users: peek.channel_type == ChannelType::Single,
            channel: channel_id,
            sender: who.user_id,
            peer,
        };
        let locked = tx.lock_for_send(&locks).await?;
        let users = locked.users;
        let channel = locked.channel.ok_or(Error::NotFound("channel"))?;
        if let Some(cmid) = &req.client_msg_id
            && let Some(existing) = tx.message_by_client_id(who.user_id, cmid).await?
        {
            if existing.channel_id != channel_id {
                return Err(Error::Conflict {
                    code: "client_msg_id_reused",
                    message: "this clientMsgId was already used for a message in another channel".into(),
                    field: Some("clientMsgId"),
                });
            }
            return Ok(Attempt::Done((&existing).into()));
        }
        if channel.status != ChannelStatus::Active {
            return Err(Error::Conflict {
                code: "channel_archived",
                message: "this group has been dismissed; no further messages".into(),
                field: None,
            });
        }
        let me = locked
            .member
            .filter(Member::is_active)
            .ok_or_else(|| Error::forbidden("you are not a member of this channel"))?;
        if let Some((mine, theirs)) = locked.friendships {
            match (mine, theirs) {
                (Some(m), Some(t)) if m.is_live() && t.is_live() => {
                    if t.is_blocked {
                        return Err(Error::Forbidden("this user has blocked you; the message was not sent".into()));
                    }
                }
                _ => {
                    return Err(Error::Unprocessable {
                        code: "not_friends",
                        message: "you are no longer friends with this user; send a friend application first".into(),
                        field: None,
                        details: None,
                    });
                }
            }
        }
        let (mentions, mention_all) = match &req.mentions {
            Mentions::None => (Vec::new(), false),
            Mentions::All => (Vec::new(), true),
            Mentions::Users(ids) => {
                let others: Vec<UserId> = ids.iter().copied().filter(|u| *u != who.user_id).collect();
                let mut members = tx.active_members(channel_id, &others).await?;
                members.sort_unstable();
                members.dedup();
                (members, false)
            }
        };
        let sender_name = if me.group_nickname.is_empty() {
            match users.iter().find(|u| u.id == who.user_id) {
                Some(u) => u.nickname.clone(),
                None => {
                    tx.lock_users(&[who.user_id], false).await?.first().map(|u| u.nickname.clone()).unwrap_or_default()
                }
            }
        } else {
            me.group_nickname.clone()
        };
        let mut msg = Message {
            id: self.next_id()?,
            channel_id,
            seq: 0,
            sender_id: who.user_id,
            sender_name,
            msg_type: req.msg_type,
            content: req.content.clone(),
            mentions,
            mention_all,
            client_msg_id: req.client_msg_id.clone(),
            created_at: now,
        };
        // Seq, message, mentions and the sender's read position (their own message).
        let seq = match tx.append_message(&msg, &message::preview(msg.msg_type, &msg.content), now).await {
            Ok(seq) => seq,
            Err(e) if e.is_unique("message_sender_client_msg") => return Ok(Attempt::Raced),
            Err(e) => return Err(e.into()),
        };
        msg.seq = seq;
        let ev = DomainEvent::MessageSent(event::MessageSent {
            message_id: msg.id,
            channel_id,
            channel_type: channel.channel_type.as_str().into(),
            seq,
            sender_id: who.user_id,
            sender_name: msg.sender_name.clone(),
            msg_type: msg.msg_type.as_str().into(),
            content: msg.content.clone(),
            mentions: msg.mentions.clone(),
            mention_all,
            client_msg_id: msg.client_msg_id.clone(),
            sent_at: now,
            read_diffusion: channel.read_diffusion,
        });
        self.record(&mut tx, &[ev], now).await?;
        self.commit(tx).await?;
        Ok(Attempt::Done((&msg).into()))
    }

    /// `GET /channels/{id}/messages`: active members only; history starts after the
    /// member's join. `afterSeq` pages forward (ascending); otherwise newest first,
    /// before `beforeSeq`.
    pub async fn messages(
        &self,
        who: Principal,
        channel: ChannelId,
        before_seq: Option<i64>,
        after_seq: Option<i64>,
        limit: Option<u32>,
    ) -> Result<History> {
        let limit = hermet_domain::validate::limit(limit)?;
        for (field, v) in [("beforeSeq", before_seq), ("afterSeq", after_seq)] {
            if v.is_some_and(|s| s < 0) {
                return Err(Error::invalid(field, format!("{field} must not be negative")));
            }
        }
        let (_, me) = self.membership(who, channel).await?;
        let descending = after_seq.is_none();
        let q = MessageQuery {
            channel_id: channel,
            after_seq: after_seq.unwrap_or(0).max(me.join_seq),
            before_seq: before_seq.unwrap_or(i64::MAX),
            descending,
            limit: limit + 1,
        };
        let mut items = self.db.messages(&q).await?;
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(History { items, has_more })
    }

    /// `POST /channels/{id}/read`: moves my read position forward (never back, never past
    /// the last message); my unread and mention counts become exact for it.
    pub async fn mark_read(&self, who: Principal, channel_id: ChannelId, seq: i64) -> Result<ConversationRow> {
        timed("conversation.read", async {
            if seq < 0 {
                return Err(Error::invalid("seq", "seq must not be negative"));
            }
            let peek = self.db.channel(channel_id).await?.ok_or(Error::NotFound("conversation"))?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let channel = self.lock_for_conversation(&mut tx, who, &peek).await?;
            let read = tx.advance_read(who.user_id, channel_id, seq.min(channel.last_seq), now).await?;
            let ev = DomainEvent::ConversationRead(event::ConversationRead {
                user_id: who.user_id,
                channel_id,
                read_seq: read,
                read_at: now,
            });
            self.record(&mut tx, &[ev], now).await?;
            self.commit(tx).await?;
            self.db.conversation(who.user_id, channel_id).await?.ok_or(Error::NotFound("conversation"))
        })
        .await
    }

    /// Locks what a change to my own conversation row of a channel depends on: the peer
    /// (single chats), the channel (shared), my membership (exclusive).
    pub(crate) async fn lock_for_conversation(
        &self,
        tx: &mut D::Tx,
        who: Principal,
        peek: &hermet_domain::channel::Channel,
    ) -> Result<hermet_domain::channel::Channel> {
        let channel_id = peek.id;
        if let Some(peer) = peek.peer_of(who.user_id) {
            tx.lock_users(&[who.user_id, peer], true).await?;
        }
        let channel = tx.lock_channel(channel_id, false).await?.ok_or(Error::NotFound("conversation"))?;
        tx.lock_member(channel_id, who.user_id)
            .await?
            .filter(Member::is_active)
            .ok_or(Error::NotFound("conversation"))?;
        Ok(channel)
    }
}
