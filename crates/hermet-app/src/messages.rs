//! Messages and read state.
//!
//! A channel's `seq` is allocated under the channel row's exclusive lock, so concurrent
//! senders get distinct, gap-free, strictly increasing seqs. A sender's own message
//! advances their read position to it, so a member's unread count is exactly (visible
//! last seq − read seq).
//!
//! **Group commit.** Sends that arrive while others are being written wait in one queue
//! and go out together: one transaction of set-based statements (locks, messages,
//! mentions, read positions, the refresh of every affected conversation row, the
//! outbox) and one commit, so one WAL flush, for the whole batch. Each send is still
//! validated on its own against the rows the batch locked, and gets its own answer or
//! error; if the transaction fails as a whole (a `clientMsgId` raced by a send outside
//! the batch, a deadlock, a lost connection), every send of it is retried alone. A batch
//! starts as soon as a slot is free (`group_commit.concurrency` in flight), never on a
//! timer, so a lone send waits for nothing; under load the queue that builds up while
//! the slots are busy is the batch (docs/ARCHITECTURE.md "Group commit").

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use hermet_domain::channel::{ChannelStatus, Member};
use hermet_domain::event::{self, DomainEvent};
use hermet_domain::id::{ChannelId, MessageId, UserId};
use hermet_domain::message::{self, MENTIONS_MAX, Mentions, Message, MessageType};
use hermet_domain::time::now_ms;
use hermet_domain::{Error, Result};
use hermet_store::{
    ConversationRow, Database, Locks, LogCursor, MessageQuery, MessageWrites, SendBatchLocked, SendBatchLocks,
    StoreError,
};
use tokio::sync::{Semaphore, oneshot};

use crate::cache::ChannelKind;
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

/// The `[group_commit]` settings: how concurrent message sends share transactions.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupCommitSettings {
    /// Most sends one transaction carries; 1 commits every send alone.
    pub max_batch: usize,
    /// Batches written at once, each on its own connection of the write pool.
    pub concurrency: usize,
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        Self { max_batch: 64, concurrency: 2 }
    }
}

impl GroupCommitSettings {
    pub fn problems(&self, max_connections: usize) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=1_000).contains(&self.max_batch) {
            p.push("group_commit.max_batch: must be 1 to 1000".into());
        }
        if self.concurrency == 0 || self.concurrency > max_connections {
            p.push(format!("group_commit.concurrency: must be 1 to database.max_connections ({max_connections})"));
        }
        p
    }
}

/// Sends waiting for a batch, and the slots batches run in.
pub(crate) struct SendQueue {
    waiting: Mutex<VecDeque<Job>>,
    slots: Arc<Semaphore>,
    max_batch: usize,
}

impl SendQueue {
    pub(crate) fn new(s: &GroupCommitSettings) -> Self {
        Self {
            waiting: Mutex::new(VecDeque::new()),
            slots: Arc::new(Semaphore::new(s.concurrency.max(1))),
            max_batch: s.max_batch.max(1),
        }
    }

    fn push(&self, job: Job) {
        let mut q = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        q.push_back(job);
        metrics::gauge!("message_sends_waiting").set(q.len() as f64);
    }

    fn take(&self) -> Vec<Job> {
        let mut q = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let n = q.len().min(self.max_batch);
        let jobs = q.drain(..n).collect();
        metrics::gauge!("message_sends_waiting").set(q.len() as f64);
        jobs
    }
}

/// One send, validated, waiting for its batch.
struct Outgoing {
    who: Principal,
    channel: ChannelId,
    req: SendMessage,
}

struct Job {
    send: Outgoing,
    reply: oneshot::Sender<Result<SentMessage>>,
}

/// Why a batch's transaction failed as a whole.
enum Failure {
    /// A `clientMsgId` was committed by a send outside the batch meanwhile.
    Raced,
    Error(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        if e.is_unique("message_sender_client_msg") { Failure::Raced } else { Failure::Error(e.into()) }
    }
}

/// What validating one send of a batch decided.
enum Decision {
    /// A retry of a message already stored.
    Existing(SentMessage),
    /// A message of this batch (index into its messages): new, or a retry of one
    /// accepted earlier in the batch.
    InBatch(usize),
}

/// A batch's slot: freed when the batch is done, or when its task unwinds from a panic,
/// and then the queue is dispatched again, so the sends behind it are never stranded.
struct SlotGuard<D: Database> {
    app: App<D>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<D: Database> Drop for SlotGuard<D> {
    fn drop(&mut self) {
        drop(self.slot.take());
        // Not while the runtime itself is being torn down (there is nothing to spawn on).
        if tokio::runtime::Handle::try_current().is_ok() {
            self.app.dispatch_sends();
        }
    }
}

/// A batch's outcome: one answer per send, and the log cursor to wait for (async mode).
type BatchOutcome = (Vec<Result<SentMessage>>, Option<LogCursor>);

impl<D: Database> App<D> {
    /// `POST /channels/{id}/messages`: validated here, then written with the sends that
    /// arrive meanwhile (group commit).
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
            let (reply, answer) = oneshot::channel();
            self.sends.push(Job { send: Outgoing { who, channel, req }, reply });
            self.dispatch_sends();
            // The batch runs in its own task, so a caller that goes away (a closed
            // connection) cancels nothing half-way; only a panic drops the answer.
            answer.await.unwrap_or(Err(Error::Unavailable("the message may not have been sent; retry it")))
        })
        .await
    }

    /// Starts a batch in every free slot while sends are waiting. A finished batch calls
    /// this again, so a send queued while every slot was busy is never left behind.
    fn dispatch_sends(&self) {
        while let Ok(slot) = self.sends.slots.clone().try_acquire_owned() {
            let jobs = self.sends.take();
            if jobs.is_empty() {
                return;
            }
            let app = self.clone();
            let slot = SlotGuard { app: self.clone(), slot: Some(slot) };
            tokio::spawn(async move {
                let (replies, sends): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.reply, j.send)).unzip();
                let (results, cursor) = app.send_batch(&sends).await;
                drop(slot);
                if let Some(c) = cursor {
                    app.read_your_writes(c).await;
                }
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            });
        }
    }

    /// One transaction for all of `sends`; if it fails as a whole, each send alone.
    async fn send_batch(&self, sends: &[Outgoing]) -> BatchOutcome {
        metrics::histogram!("message_send_batch_size").record(sends.len() as f64);
        let all: Vec<&Outgoing> = sends.iter().collect();
        if let [one] = all[..] {
            return self.send_alone(one).await;
        }
        match self.try_batch(&all).await {
            Ok(done) => done,
            Err(e) => {
                if let Failure::Error(e) = &e {
                    tracing::warn!(error = %e, size = sends.len(), "batch of sends failed; sending each alone");
                }
                metrics::counter!("message_send_batch_splits_total").increment(1);
                let alone = futures::future::join_all(all.iter().map(|s| self.send_alone(s))).await;
                let cursor = alone.iter().filter_map(|(_, c)| *c).max();
                (alone.into_iter().flat_map(|(r, _)| r).collect(), cursor)
            }
        }
    }

    /// A send in a transaction of its own; a raced `clientMsgId` is read back once.
    async fn send_alone(&self, send: &Outgoing) -> BatchOutcome {
        for _ in 0..2 {
            match self.try_batch(&[send]).await {
                Ok(done) => return done,
                Err(Failure::Raced) => continue,
                Err(Failure::Error(e)) => return (vec![Err(e)], None),
            }
        }
        (vec![Err(Error::Unavailable("concurrent retries of this message; try again"))], None)
    }

    /// Validates each send against the rows the batch locked and writes the accepted
    /// ones in one transaction. `Err` only when the transaction failed as a whole.
    async fn try_batch(&self, sends: &[&Outgoing]) -> std::result::Result<BatchOutcome, Failure> {
        // The channels' kinds before taking a connection for the transaction (never hold
        // one connection while waiting for another from the same pool).
        let mut results: Vec<Option<Result<SentMessage>>> = (0..sends.len()).map(|_| None).collect();
        let mut kinds: Vec<Option<ChannelKind>> = Vec::with_capacity(sends.len());
        for (i, s) in sends.iter().enumerate() {
            match self.channel_kind(s.channel).await {
                Ok(k) => kinds.push(Some(k)),
                Err(e) => {
                    results[i] = Some(Err(e));
                    kinds.push(None);
                }
            }
        }
        let locks = batch_locks(sends, &kinds);
        if locks.channels.is_empty() {
            return Ok((results.into_iter().flatten().collect(), None));
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let locked = tx.lock_for_sends(&locks).await?;
        let mut batch = Batch::new(&locked);
        let mut decisions: Vec<Option<Decision>> = Vec::with_capacity(sends.len());
        for (i, (s, kind)) in sends.iter().zip(&kinds).enumerate() {
            let Some(kind) = kind else {
                decisions.push(None);
                continue;
            };
            match batch.decide(self, s, kind, now) {
                Ok(d) => decisions.push(Some(d)),
                Err(e) => {
                    results[i] = Some(Err(e));
                    decisions.push(None);
                }
            }
        }
        let mut cursor = None;
        if !batch.messages.is_empty() {
            tx.append_messages(&batch.messages, now).await?;
            self.record(&mut tx, &batch.events, now).await?;
            cursor = self.commit_touching(tx).await?;
            if cursor.is_some() {
                self.wake_consumers();
            }
        }
        let answers = results
            .into_iter()
            .zip(decisions)
            .map(|(r, d)| match (r, d) {
                (Some(r), _) => r,
                (None, Some(Decision::Existing(sent))) => Ok(sent),
                (None, Some(Decision::InBatch(k))) => Ok((&batch.messages[k]).into()),
                (None, None) => Err(Error::internal(anyhow::anyhow!("a send of the batch was not decided"))),
            })
            .collect();
        Ok((answers, cursor))
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

/// What a batch locks: every send's channel and membership; for one-to-one chats both
/// users and both friendships; group senders' nicknames; client ids; mentioned pairs.
fn batch_locks(sends: &[&Outgoing], kinds: &[Option<ChannelKind>]) -> SendBatchLocks {
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
struct Batch<'a> {
    users: HashMap<UserId, &'a str>,
    channels: HashMap<ChannelId, &'a hermet_domain::channel::Channel>,
    friendships: HashMap<(UserId, UserId), &'a hermet_domain::contact::Friendship>,
    members: HashMap<(ChannelId, UserId), &'a Member>,
    sent: HashMap<(UserId, &'a str), &'a Message>,
    mentioned: HashSet<(ChannelId, UserId)>,
    /// The last seq allocated per channel.
    seqs: HashMap<ChannelId, i64>,
    /// (sender, clientMsgId) → index of the accepted message.
    accepted: HashMap<(UserId, String), usize>,
    messages: Vec<Message>,
    events: Vec<DomainEvent>,
}

impl<'a> Batch<'a> {
    fn new(l: &'a SendBatchLocked) -> Self {
        Self {
            users: l.users.iter().map(|u| (u.id, u.nickname.as_str())).collect(),
            channels: l.channels.iter().map(|c| (c.id, c)).collect(),
            friendships: l.friendships.iter().map(|f| ((f.user_id, f.friend_id), f)).collect(),
            members: l.members.iter().map(|m| ((m.channel_id, m.user_id), m)).collect(),
            sent: l.sent.iter().filter_map(|m| Some(((m.sender_id, m.client_msg_id.as_deref()?), m))).collect(),
            mentioned: l.mentioned.iter().copied().collect(),
            seqs: l.channels.iter().map(|c| (c.id, c.last_seq)).collect(),
            accepted: HashMap::new(),
            messages: Vec::new(),
            events: Vec::new(),
        }
    }

    /// One send, checked in the order a send alone would check it, against the locked
    /// rows and the messages accepted before it in this batch.
    fn decide<D: Database>(&mut self, app: &App<D>, s: &Outgoing, kind: &ChannelKind, now: i64) -> Result<Decision> {
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
                    return Err(Error::Conflict {
                        code: "client_msg_id_reused",
                        message: "this clientMsgId was already used for a message in another channel".into(),
                        field: Some("clientMsgId"),
                    });
                }
                return Ok(d);
            }
        }
        if channel.status != ChannelStatus::Active {
            return Err(Error::Conflict {
                code: "channel_archived",
                message: "this group has been dismissed; no further messages".into(),
                field: None,
            });
        }
        let member = self
            .members
            .get(&(s.channel, me))
            .filter(|m| m.is_active())
            .ok_or_else(|| Error::forbidden("you are not a member of this channel"))?;
        if let Some(peer) = kind.peer_of(me) {
            match (self.friendships.get(&(me, peer)), self.friendships.get(&(peer, me))) {
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
        let (mentions, mention_all) = match &s.req.mentions {
            Mentions::None => (Vec::new(), false),
            Mentions::All => (Vec::new(), true),
            Mentions::Users(ids) => {
                let mut m: Vec<UserId> =
                    ids.iter().copied().filter(|u| *u != me && self.mentioned.contains(&(s.channel, *u))).collect();
                m.sort_unstable();
                m.dedup();
                (m, false)
            }
        };
        let sender_name = match member.group_nickname.as_str() {
            "" => self.users.get(&me).copied().unwrap_or_default().to_owned(),
            nickname => nickname.to_owned(),
        };
        let seq = self.seqs.entry(s.channel).or_insert(channel.last_seq);
        *seq += 1;
        let msg = Message {
            id: app.next_id()?,
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
            read_diffusion: channel.read_diffusion,
        }));
        if let Some(cmid) = &msg.client_msg_id {
            self.accepted.insert((me, cmid.clone()), self.messages.len());
        }
        self.messages.push(msg);
        Ok(Decision::InBatch(self.messages.len() - 1))
    }
}
