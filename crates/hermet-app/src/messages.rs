//! Messages and read state.
//!
//! A channel's `seq` is allocated under the channel row's exclusive lock, so concurrent
//! senders get distinct, gap-free, strictly increasing seqs. A sender's own message
//! advances their read position to it, so a member's unread count is exactly (visible
//! last seq − read seq). Sends are written in batches ([`group_commit`]).

use hermet_domain::channel::MemberRole;
use hermet_domain::channel::{ChannelStatus, ChannelType, Member};
use hermet_domain::error::ErrorCode;
use hermet_domain::event::{self, DomainEvent};
use hermet_domain::id::{ChannelId, MessageId, UserId};
use hermet_domain::message::{
    self, FORWARD_CHANNELS_MAX, FORWARD_MESSAGES_MAX, MENTIONS_MAX, Mentions, Message, MessageType, MessageVersion,
    PINS_MAX, Pin, Quote, REACTIONS_PER_MEMBER, ReactionCount, Recall,
};
use hermet_domain::time::now_ms;
use hermet_domain::{Error, Result};
use hermet_store::{ChannelWrites, ConversationRow, Database, Locks, MessageEdit, MessageQuery, MessageWrites};

use crate::channels::{archived, not_member};
use crate::commit::timed;
use crate::rate_limits::{Key, Limit};
use crate::{App, Principal};

mod batch;
mod group_commit;

pub use group_commit::GroupCommitSettings;
pub(crate) use group_commit::SendQueue;

pub struct SendMessage {
    pub msg_type: MessageType,
    pub content: serde_json::Value,
    pub mentions: Mentions,
    pub client_msg_id: Option<String>,
    /// The message this one replies to: one of the channel the sender can see.
    pub reply_to: Option<MessageId>,
}

/// What a forward did in one target channel: the messages sent there, in order, and the
/// refusal that stopped it, if one did (the messages before it stay sent).
pub struct Forwarded {
    pub channel_id: ChannelId,
    pub sent: Vec<SentMessage>,
    pub error: Option<Error>,
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

/// `PATCH /channels/{id}/messages/{messageId}`: the new content, and the new mentions
/// (`None`: the same users as before, those still members).
pub struct EditMessage {
    pub content: serde_json::Value,
    pub mentions: Option<Mentions>,
}

/// Read receipts of a message (`GET …/{messageId}/receipts`).
pub struct Receipts {
    /// Active members who joined before the message, the sender aside, who have read it.
    pub read_count: i64,
    /// Who they are, a page at a time; `None` in a large group (the count only).
    pub readers: Option<crate::page::Page<UserId>>,
}

/// A channel's pinned messages (`GET /channels/{id}/pins`), with their reactions and the
/// quotes of those that are replies.
pub struct Pins {
    pub items: Vec<Pin>,
    pub reactions: std::collections::HashMap<MessageId, Vec<ReactionCount>>,
    pub quotes: std::collections::HashMap<MessageId, Quote>,
}

/// `GET /messages/search`: what to find and where.
#[derive(Debug, Default)]
pub struct Search {
    pub q: String,
    pub channel: Option<ChannelId>,
    pub sender: Option<UserId>,
    /// Sent strictly before / after these times (ms).
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// One search result: the message and where the text occurs in its `content.text`.
pub struct Found {
    pub message: Message,
    /// A reply's quote, as the answered message is now.
    pub quote: Option<Quote>,
    /// `[start, end)` in characters.
    pub highlights: Vec<(usize, usize)>,
}

/// A page of history: `items` in the order asked for, with their reactions.
pub struct History {
    pub items: Vec<Message>,
    pub has_more: bool,
    /// Per message id; a message without reactions has no entry.
    pub reactions: std::collections::HashMap<MessageId, Vec<ReactionCount>>,
    /// A one-to-one chat: how far the peer has read (read receipts).
    pub peer_read_seq: Option<i64>,
    /// The quotes of the messages the page's replies answer, by their id, as they are now.
    pub quotes: std::collections::HashMap<MessageId, Quote>,
}

/// `mentions: "all"`: only in groups, and by a plain member only when
/// `limits.mention_all_by_members` allows it (sending and editing alike).
pub(crate) fn may_mention_all(single: bool, role: MemberRole, by_members: bool) -> Result<()> {
    if single {
        return Err(Error::invalid("mentions", "\"all\" is for groups; a one-to-one chat has no one else to mention"));
    }
    if role == MemberRole::Member && !by_members {
        return Err(Error::forbidden("only the group's owner and admins may mention everyone"));
    }
    Ok(())
}

/// A message id in a request that names no message the caller can read.
fn unknown_message(field: &'static str, ids: &[MessageId]) -> Error {
    Error::Refused {
        code: ErrorCode::UnknownMessage,
        message: format!("{field} names no message you can read"),
        field: Some(field),
        details: Some(Box::new(serde_json::json!({ "messageIds": ids }))),
    }
}

fn recalled() -> Error {
    recalled_at(None, None)
}

/// [`recalled`], naming the request's field and the message.
fn recalled_at(field: Option<&'static str>, id: Option<MessageId>) -> Error {
    Error::Refused {
        code: ErrorCode::MessageRecalled,
        message: "the message was recalled".into(),
        field,
        details: id.map(|id| Box::new(serde_json::json!({ "messageId": id }))),
    }
}

impl<D: Database> App<D> {
    /// `POST /channels/{id}/messages`: validated here, then written with the sends that
    /// arrive meanwhile (group commit).
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel))]
    pub async fn send_message(&self, who: Principal, channel: ChannelId, req: SendMessage) -> Result<SentMessage> {
        timed("message.send", async {
            if req.msg_type == MessageType::System {
                return Err(Error::invalid("type", "system messages are sent by the server only"));
            }
            message::validate_content(req.msg_type, &req.content)?;
            self.rate_limits(&[
                (Limit::SendsPerUser, Key::Id(who.user_id.get())),
                (Limit::SendsPerChannel, Key::Id(channel.get())),
            ])
            .await?;
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
            let quote = match req.reply_to {
                Some(id) => Some(self.quote(who, channel, id).await?),
                None => None,
            };
            self.write_send(batch::Outgoing { who, channel, req, quote, forwarded: None }).await
        })
        .await
    }

    /// The quote of message `id` of `channel` for a reply by `who`: a message they can
    /// see, not recalled (the batch refuses the send otherwise, after its retry check).
    async fn quote(
        &self,
        who: Principal,
        channel: ChannelId,
        id: MessageId,
    ) -> Result<std::result::Result<Quote, batch::Unquotable>> {
        let (_, me) = self.membership(who, channel).await?;
        let found = self.db.message(channel, id).await?;
        Ok(match found.filter(|m| m.seq > me.join_seq && m.msg_type != MessageType::System) {
            None => Err(batch::Unquotable::Unknown(id)),
            Some(m) if m.recalled.is_some() => Err(batch::Unquotable::Recalled(id)),
            Some(m) => Ok(Quote::of(&m)),
        })
    }

    /// `POST /messages/forward`: each of `message_ids` (once each; messages the caller can read, not
    /// recalled) to each of `channel_ids` (channels the caller is an active member of), as
    /// new messages marked with their origin, in the order they were sent. Checked whole
    /// before anything is sent; then each target channel gets its messages in order, and
    /// a refusal there (the peer blocked the caller, say) stops that channel only.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id))]
    pub async fn forward(
        &self,
        who: Principal,
        message_ids: Vec<MessageId>,
        channel_ids: Vec<ChannelId>,
    ) -> Result<Vec<Forwarded>> {
        /// The ids once each, in the order first given: 1 to `max`.
        fn distinct<T: Eq + std::hash::Hash + Copy>(field: &'static str, v: Vec<T>, max: usize) -> Result<Vec<T>> {
            let mut seen = std::collections::HashSet::new();
            let once: Vec<T> = v.into_iter().filter(|x| seen.insert(*x)).collect();
            if once.is_empty() || once.len() > max {
                return Err(Error::invalid(field, format!("{field} must list 1 to {max} ids")));
            }
            Ok(once)
        }
        let message_ids = distinct("messageIds", message_ids, FORWARD_MESSAGES_MAX)?;
        let channel_ids = distinct("channelIds", channel_ids, FORWARD_CHANNELS_MAX)?;
        let mut budgets = vec![(Limit::SendsPerUser, Key::Id(who.user_id.get()))];
        budgets.extend(channel_ids.iter().map(|c| (Limit::SendsPerChannel, Key::Id(c.get()))));
        self.rate_limits(&budgets).await?;
        // the messages, each readable by the caller
        let mut found = self.db.messages_by_ids(&message_ids).await?;
        let mut joined: std::collections::HashMap<ChannelId, Option<i64>> = Default::default();
        for m in &found {
            if let std::collections::hash_map::Entry::Vacant(e) = joined.entry(m.channel_id) {
                e.insert(self.membership(who, m.channel_id).await.ok().map(|(_, me)| me.join_seq));
            }
        }
        found.retain(|m| {
            joined.get(&m.channel_id).copied().flatten().is_some_and(|j| m.seq > j) && m.msg_type != MessageType::System
        });
        let unknown: Vec<MessageId> =
            message_ids.iter().copied().filter(|id| !found.iter().any(|m| m.id == *id)).collect();
        if !unknown.is_empty() {
            return Err(unknown_message("messageIds", &unknown));
        }
        if let Some(m) = found.iter().find(|m| m.recalled.is_some()) {
            return Err(recalled_at(Some("messageIds"), Some(m.id)));
        }
        found.sort_by_key(|m| (m.created_at, m.id));
        // the targets, each one the caller may send to
        for c in &channel_ids {
            self.membership(who, *c).await?;
        }
        let one_channel = |channel: ChannelId| {
            let found = &found;
            async move {
                let mut out = Forwarded { channel_id: channel, sent: Vec::new(), error: None };
                for m in found {
                    let req = SendMessage {
                        msg_type: m.msg_type,
                        content: m.content.clone(),
                        mentions: Mentions::None,
                        client_msg_id: None,
                        reply_to: None,
                    };
                    let send =
                        batch::Outgoing { who, channel, req, quote: None, forwarded: Some(message::Forwarded::of(m)) };
                    match self.write_send(send).await {
                        Ok(sent) => out.sent.push(sent),
                        Err(e) => {
                            out.error = Some(e);
                            break;
                        }
                    }
                }
                out
            }
        };
        Ok(futures::future::join_all(channel_ids.iter().map(|c| one_channel(*c))).await)
    }

    /// `PUT` (`pin`) and `DELETE /channels/{id}/pins/{messageId}`: in a group its owner
    /// and admins, in a one-to-one chat either member; at most [`PINS_MAX`] pins a
    /// channel; not a recalled message. Pinning a pinned message (or unpinning one that
    /// is not) changes nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id, message_id = %message_id))]
    pub async fn pin_message(
        &self,
        who: Principal,
        channel_id: ChannelId,
        message_id: MessageId,
        pin: bool,
    ) -> Result<()> {
        timed("message.pin", async {
            let peek = self.db.channel(channel_id).await?.ok_or(Error::NotFound("channel"))?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (channel, me, msg) = self.lock_message_of(&mut tx, who, &peek, message_id).await?;
            if channel.channel_type == ChannelType::Group && !me.role.can_manage() {
                return Err(Error::forbidden("only the group's owner and admins may pin messages"));
            }
            if pin {
                if msg.recalled.is_some() {
                    return Err(recalled());
                }
                let (pinned, this_one) = tx.pin_count(channel_id, message_id).await?;
                if pinned >= PINS_MAX && !this_one {
                    return Err(Error::Refused {
                        code: ErrorCode::TooManyPins,
                        message: format!("at most {PINS_MAX} pinned messages in a channel"),
                        field: None,
                        details: None,
                    });
                }
            }
            if tx.pin(&msg, who.user_id, pin, now).await? {
                let ev = DomainEvent::MessagePinned(event::MessagePinned {
                    message_id,
                    channel_id,
                    seq: msg.seq,
                    pinned: pin,
                    by: who.user_id,
                    at: now,
                    read_diffusion: channel.read_diffusion,
                });
                self.record(&mut tx, &[ev], now).await?;
            }
            self.commit(tx).await
        })
        .await
    }

    /// `GET /channels/{id}/pins`: the channel's pinned messages I can see (sent after I
    /// joined), newest pin first, with the quotes of those that are replies.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id))]
    pub async fn pins(&self, who: Principal, channel_id: ChannelId) -> Result<Pins> {
        let (_, me) = self.membership(who, channel_id).await?;
        let items = self.db.pins(channel_id, me.join_seq).await?;
        let quotes = self.quotes(items.iter().map(|p| &p.message)).await?;
        let ids: Vec<MessageId> = items.iter().map(|p| p.message.id).collect();
        let reactions = self.reactions_of(&ids, who.user_id).await?;
        Ok(Pins { items, reactions, quotes })
    }

    /// The reactions of `ids` as `viewer` sees them, by message.
    async fn reactions_of(
        &self,
        ids: &[MessageId],
        viewer: UserId,
    ) -> Result<std::collections::HashMap<MessageId, Vec<ReactionCount>>> {
        let mut reactions: std::collections::HashMap<MessageId, Vec<ReactionCount>> = Default::default();
        for (id, r) in self.db.reactions(ids, viewer).await? {
            reactions.entry(id).or_default().push(r);
        }
        Ok(reactions)
    }

    /// `GET /messages/search`: text messages I can see (channels I am an active member
    /// of, sent after I joined, not recalled, not deleted for me) that contain `q`,
    /// ignoring case, newest first, a page at a time.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id))]
    pub async fn search(&self, who: Principal, s: Search) -> Result<crate::page::Page<Found>> {
        let limit = hermet_domain::validate::limit(s.limit)?;
        let q = hermet_domain::validate::text("q", &s.q, message::SEARCH_MAX_CHARS, false)?;
        let q = q.as_str();
        for (field, v) in [("before", s.before), ("after", s.after)] {
            if v.is_some_and(|t| t < 0) {
                return Err(Error::invalid(field, format!("{field} must not be negative")));
            }
        }
        self.rate_limits(&[(Limit::SearchesPerUser, Key::Id(who.user_id.get()))]).await?;
        if let Some(c) = s.channel {
            self.membership(who, c).await?;
        }
        let before_id: i64 = s.cursor.as_deref().map(crate::page::decode_cursor).transpose()?.unwrap_or(i64::MAX);
        let query = hermet_store::SearchQuery {
            viewer: who.user_id,
            text: q.to_owned(),
            channel: s.channel,
            sender: s.sender,
            sent_after: s.after.unwrap_or(-1),
            sent_before: s.before.unwrap_or(i64::MAX),
            before_id,
            limit: limit + 1,
        };
        let found = timed("message.search", async { Ok(self.db.search(&query).await?) }).await?;
        let quotes = self.quotes(found.iter()).await?;
        let items = found
            .into_iter()
            .map(|m| {
                let text = m.content.get("text").and_then(|t| t.as_str()).unwrap_or("");
                let highlights = message::highlights(text, q);
                let quote = m.reply_to.and_then(|id| quotes.get(&id)).cloned();
                Found { message: m, quote, highlights }
            })
            .collect();
        Ok(crate::page::Page::from_overfetch(items, limit, |f| f.message.id.get()))
    }

    /// The quotes of the messages `page`'s replies answer, as they are now.
    async fn quotes<'a>(
        &self,
        page: impl Iterator<Item = &'a Message>,
    ) -> Result<std::collections::HashMap<MessageId, Quote>> {
        let mut ids: Vec<MessageId> = page.filter_map(|m| m.reply_to).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(self.db.messages_by_ids(&ids).await?.iter().map(|m| (m.id, Quote::of(m))).collect())
    }

    /// `GET /channels/{id}/messages`: active members only; history starts after the
    /// member's join. `afterSeq` pages forward (ascending); otherwise newest first,
    /// before `beforeSeq`.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel))]
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
        let (c, me) = self.membership(who, channel).await?;
        let descending = after_seq.is_none();
        let q = MessageQuery {
            channel_id: channel,
            viewer: who.user_id,
            after_seq: after_seq.unwrap_or(0).max(me.join_seq),
            before_seq: before_seq.unwrap_or(i64::MAX),
            descending,
            limit: limit + 1,
        };
        let mut items = self.db.messages(&q).await?;
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let ids: Vec<MessageId> = items.iter().map(|m| m.id).collect();
        let reactions = self.reactions_of(&ids, who.user_id).await?;
        let peer_read_seq = match c.peer_of(who.user_id) {
            Some(_) => self.db.conversation(who.user_id, channel).await?.map(|r| r.peer_read_seq),
            None => None,
        };
        let quotes = self.quotes(items.iter()).await?;
        Ok(History { items, has_more, reactions, peer_read_seq, quotes })
    }

    /// `POST /channels/{id}/read`: moves my read position forward (never back, never past
    /// the last message); my unread and mention counts become exact for it.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id, seq))]
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
                peer_id: peek.peer_of(who.user_id),
            });
            self.record(&mut tx, &[ev], now).await?;
            self.commit(tx).await?;
            self.db.conversation(who.user_id, channel_id).await?.ok_or(Error::NotFound("conversation"))
        })
        .await
    }

    /// `POST /channels/{id}/messages/{messageId}/recall`: the sender within
    /// `limits.recall_window_secs` of sending, or a group's owner or an admin at any time.
    /// The message stays at its seq as a recall notice; its content, preview and mentions
    /// are erased, in the message's event in the log too. Recalling a recalled message
    /// answers it again and changes nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id, message_id = %message_id))]
    pub async fn recall_message(
        &self,
        who: Principal,
        channel_id: ChannelId,
        message_id: MessageId,
    ) -> Result<Message> {
        timed("message.recall", async {
            let peek = self.db.channel(channel_id).await?.ok_or(Error::NotFound("channel"))?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (channel, me, mut msg) = self.lock_message_of(&mut tx, who, &peek, message_id).await?;
            if msg.recalled.is_some() {
                return Ok(msg);
            }
            let manager = channel.channel_type == ChannelType::Group && me.role.can_manage();
            if !manager {
                if msg.sender_id != who.user_id {
                    return Err(Error::forbidden(
                        "only the sender, or a group's owner or an admin, may recall a message",
                    ));
                }
                let window = self.settings.limits.recall_window_secs;
                if now - msg.created_at > (window as i64).saturating_mul(1000) {
                    return Err(Error::Refused {
                        code: ErrorCode::RecallWindowPassed,
                        message: format!("a message may be recalled by its sender within {window} s of sending"),
                        field: None,
                        details: None,
                    });
                }
            }
            tx.recall_message(msg.id, who.user_id, now).await?;
            let ev = DomainEvent::MessageRecalled(event::MessageRecalled {
                message_id: msg.id,
                channel_id,
                seq: msg.seq,
                sender_id: msg.sender_id,
                recalled_by: who.user_id,
                recalled_at: now,
                read_diffusion: channel.read_diffusion,
            });
            self.record(&mut tx, &[ev], now).await?;
            self.commit(tx).await?;
            msg.msg_type = MessageType::Recalled;
            msg.content = serde_json::json!({});
            msg.mentions.clear();
            msg.mention_all = false;
            msg.recalled = Some(Recall { by: who.user_id, at: now });
            msg.edited_at = None;
            msg.edit_count = 0;
            Ok(msg)
        })
        .await
    }

    /// `PATCH /channels/{id}/messages/{messageId}`: the sender, within
    /// `limits.edit_window_secs` of sending; not a recalled message. The version it
    /// replaces is kept (`versions`); mentions are those of the edit (a mention added
    /// counts, one removed stops counting); the preview follows when it is the last
    /// message.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id, message_id = %message_id))]
    pub async fn edit_message(
        &self,
        who: Principal,
        channel_id: ChannelId,
        message_id: MessageId,
        req: EditMessage,
    ) -> Result<Message> {
        timed("message.edit", async {
            if let Some(Mentions::Users(u)) = &req.mentions
                && u.len() > MENTIONS_MAX
            {
                return Err(Error::invalid("mentions", format!("at most {MENTIONS_MAX} mentions")));
            }
            self.rate_limits(&[(Limit::SendsPerUser, Key::Id(who.user_id.get()))]).await?;
            let peek = self.db.channel(channel_id).await?.ok_or(Error::NotFound("channel"))?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (channel, me, mut msg) = self.lock_message_of(&mut tx, who, &peek, message_id).await?;
            if msg.recalled.is_some() {
                return Err(recalled());
            }
            if msg.sender_id != who.user_id {
                return Err(Error::forbidden("only its sender may edit a message"));
            }
            let window = self.settings.limits.edit_window_secs;
            if now - msg.created_at > (window as i64).saturating_mul(1000) {
                return Err(Error::Refused {
                    code: ErrorCode::EditWindowPassed,
                    message: format!("a message may be edited by its sender within {window} s of sending"),
                    field: None,
                    details: None,
                });
            }
            message::validate_content(msg.msg_type, &req.content).map_err(|e| match e {
                // a rule of the stored message's type, which the request cannot show
                Error::Validation { field, message } if field == "content.text" => Error::Refused {
                    code: ErrorCode::ContentNotOfType,
                    message,
                    field: Some("content.text"),
                    details: None,
                },
                other => other,
            })?;
            let single = channel.channel_type == ChannelType::Single;
            let (wanted, mention_all) = match req.mentions {
                None => (msg.mentions.clone(), msg.mention_all),
                Some(Mentions::None) => (Vec::new(), false),
                Some(Mentions::All) => {
                    may_mention_all(single, me.role, self.settings.limits.mention_all_by_members)?;
                    (Vec::new(), true)
                }
                Some(Mentions::Users(ids)) => (ids, false),
            };
            let mut wanted: Vec<_> = wanted.into_iter().filter(|u| *u != who.user_id).collect();
            wanted.sort_unstable();
            wanted.dedup();
            let mut mentions = if wanted.is_empty() { wanted } else { tx.active_members(channel_id, &wanted).await? };
            mentions.sort_unstable();
            tx.edit_message(&MessageEdit {
                before: &msg,
                content: &req.content,
                mentions: &mentions,
                mention_all,
                at: now,
            })
            .await?;
            msg.content = req.content;
            msg.mentions = mentions;
            msg.mention_all = mention_all;
            msg.edited_at = Some(now);
            msg.edit_count += 1;
            let ev = DomainEvent::MessageEdited(event::MessageEdited {
                message_id: msg.id,
                channel_id,
                seq: msg.seq,
                sender_id: msg.sender_id,
                msg_type: msg.msg_type.as_str().into(),
                content: msg.content.clone(),
                mentions: msg.mentions.clone(),
                mention_all,
                edit_count: msg.edit_count,
                edited_at: now,
                read_diffusion: channel.read_diffusion,
            });
            self.record(&mut tx, &[ev], now).await?;
            self.commit(tx).await?;
            Ok(msg)
        })
        .await
    }

    /// `DELETE /channels/{id}/messages/{messageId}`: deletes a message for me only: it
    /// leaves my history and my conversation's preview; unread and mention counts go by
    /// my read position as before. Deleting it again changes nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id, message_id = %message_id))]
    pub async fn delete_message_for_me(
        &self,
        who: Principal,
        channel_id: ChannelId,
        message_id: MessageId,
    ) -> Result<()> {
        timed("message.hide", async {
            let peek = self.db.channel(channel_id).await?.ok_or(Error::NotFound("channel"))?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (_, _, msg) = self.lock_message_of(&mut tx, who, &peek, message_id).await?;
            if tx.hide_message(who.user_id, &msg, now).await? {
                let ev = DomainEvent::MessageHidden(event::MessageHidden {
                    user_id: who.user_id,
                    channel_id,
                    message_id,
                    seq: msg.seq,
                    hidden_at: now,
                });
                self.record(&mut tx, &[ev], now).await?;
            }
            self.commit(tx).await
        })
        .await
    }

    /// `PUT` (`add`) and `DELETE /channels/{id}/messages/{messageId}/reactions/{emoji}`:
    /// any member who can see the message, at most [`REACTIONS_PER_MEMBER`] reactions each
    /// on one message; not on a recalled message. No count of any conversation changes.
    /// Returns the message's reactions as they now are.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id, message_id = %message_id))]
    pub async fn react(
        &self,
        who: Principal,
        channel_id: ChannelId,
        message_id: MessageId,
        emoji: &str,
        add: bool,
    ) -> Result<Vec<ReactionCount>> {
        timed("message.react", async {
            let emoji = hermet_domain::validate::reaction("emoji", emoji)?;
            self.rate_limits(&[(Limit::SendsPerUser, Key::Id(who.user_id.get()))]).await?;
            let peek = self.db.channel(channel_id).await?.ok_or(Error::NotFound("channel"))?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (channel, _, msg) = self.lock_message_of(&mut tx, who, &peek, message_id).await?;
            if msg.recalled.is_some() {
                return Err(recalled());
            }
            if add {
                // one already given is not refused: adding it changes nothing
                let (given, this_one) = tx.reactions_by(message_id, who.user_id, &emoji).await?;
                if given >= REACTIONS_PER_MEMBER && !this_one {
                    return Err(Error::Refused {
                        code: ErrorCode::TooManyReactions,
                        message: format!("at most {REACTIONS_PER_MEMBER} reactions of yours on one message"),
                        field: None,
                        details: None,
                    });
                }
            }
            if tx.react(message_id, who.user_id, &emoji, add, now).await? {
                let ev = DomainEvent::MessageReaction(event::MessageReaction {
                    message_id,
                    channel_id,
                    seq: msg.seq,
                    user_id: who.user_id,
                    emoji,
                    added: add,
                    at: now,
                    read_diffusion: channel.read_diffusion,
                });
                self.record(&mut tx, &[ev], now).await?;
            }
            self.commit(tx).await?;
            Ok(self.db.reactions(&[message_id], who.user_id).await?.into_iter().map(|(_, r)| r).collect())
        })
        .await
    }

    /// `GET /channels/{id}/messages/{messageId}/receipts`: members who can see the message.
    /// Derived from read positions (no row per reader): a member has read a message when
    /// their read position reached its seq.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id, message_id = %message_id))]
    pub async fn receipts(
        &self,
        who: Principal,
        channel_id: ChannelId,
        message_id: MessageId,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Receipts> {
        let limit = hermet_domain::validate::limit(limit)?;
        let after: i64 = cursor.map(crate::page::decode_cursor).transpose()?.unwrap_or(0);
        let (c, msg) = self.visible_message(who, channel_id, message_id).await?;
        let list = (!c.read_diffusion).then_some((UserId(after), limit + 1));
        let (read_count, readers) = self.db.receipts(channel_id, msg.seq, msg.sender_id, list).await?;
        let readers = list.map(|_| crate::page::Page::from_overfetch(readers, limit, |u| u.get()));
        Ok(Receipts { read_count, readers })
    }

    /// `GET /channels/{id}/messages/{messageId}/versions`: every version of a message,
    /// oldest first, the current one last; members who can see the message. A recalled
    /// message has none left but its notice.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel_id, message_id = %message_id))]
    pub async fn message_versions(
        &self,
        who: Principal,
        channel_id: ChannelId,
        message_id: MessageId,
    ) -> Result<Vec<MessageVersion>> {
        let (_, msg) = self.visible_message(who, channel_id, message_id).await?;
        let mut versions = self.db.message_versions(message_id).await?;
        versions.push(MessageVersion {
            version: msg.edit_count + 1,
            content: msg.content,
            mentions: msg.mentions,
            mention_all: msg.mention_all,
            written_at: msg.edited_at.unwrap_or(msg.created_at),
        });
        Ok(versions)
    }

    /// The channel and its message `message_id`, read by an active member who can see it
    /// (403 otherwise; 404 for a message of another channel or from before they joined).
    async fn visible_message(
        &self,
        who: Principal,
        channel_id: ChannelId,
        message_id: MessageId,
    ) -> Result<(hermet_domain::channel::Channel, Message)> {
        let (channel, me) = self.membership(who, channel_id).await?;
        let msg = self
            .db
            .message(channel_id, message_id)
            .await?
            .filter(|m| m.seq > me.join_seq)
            .ok_or(Error::NotFound("message"))?;
        Ok((channel, msg))
    }

    /// Locks a message for a change by `who` (recall, edit), after what it depends on in
    /// the canonical order: the pair's users (single chats), the channel (shared), my
    /// membership (exclusive), then the message. 404 for a message of another channel or
    /// from before I joined.
    async fn lock_message_of(
        &self,
        tx: &mut D::Tx,
        who: Principal,
        peek: &hermet_domain::channel::Channel,
        message_id: MessageId,
    ) -> Result<(hermet_domain::channel::Channel, Member, Message)> {
        if let Some(peer) = peek.peer_of(who.user_id) {
            tx.lock_users(&[who.user_id, peer], true).await?;
        }
        let channel = tx.lock_channel(peek.id, false).await?.ok_or(Error::NotFound("channel"))?;
        let me = tx.lock_member(peek.id, who.user_id).await?.filter(Member::is_active).ok_or_else(not_member)?;
        if channel.status != ChannelStatus::Active {
            return Err(archived());
        }
        let msg = tx
            .lock_message(peek.id, message_id)
            .await?
            .filter(|m| m.seq > me.join_seq)
            .ok_or(Error::NotFound("message"))?;
        Ok((channel, me, msg))
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
