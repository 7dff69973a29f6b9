//! The storage ports. Reads that need no transaction are methods of [`Database`]
//! (served by a read pool or replica); every write goes through a [`Transaction`].

use std::future::Future;

use hermet_domain::event::OutboxEvent;
use hermet_domain::id::{SessionId, UserId};
use hermet_domain::user::{Account, NewUser, User, UserStatus};

use crate::{MigrationReport, StoreError};

pub type StoreResult<T> = Result<T, StoreError>;

/// A connection pool to one database, cloned cheaply into every handler.
pub trait Database:
    UserReads
    + SessionReads
    + ImReads
    + ConsistencyReads
    + EventLog
    + PipelineReads
    + InboxReads
    + Clone
    + Send
    + Sync
    + 'static
{
    type Tx: Transaction;

    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;
    /// Applies pending migrations; a no-op when the schema is up to date.
    fn migrate(&self) -> impl Future<Output = StoreResult<MigrationReport>> + Send;
    /// One round trip to the database (readiness probe).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    fn pool_status(&self) -> Vec<PoolStatus>;
    /// Closes the pools: waiting and future requests fail, open connections close.
    fn close(&self);
    /// Returns the secret stored under `name`, storing `candidate` first if there is
    /// none (the first node to start wins; all nodes then agree).
    fn server_secret(&self, name: &str, candidate: String) -> impl Future<Output = StoreResult<String>> + Send;
}

/// A database transaction. Commit makes every write visible at once; dropping it
/// without commit rolls everything back.
pub trait Transaction:
    UserWrites
    + SessionWrites
    + OutboxWrites
    + Locks
    + ChannelWrites
    + ContactWrites
    + ProjectionWrites
    + OffsetWrites
    + PipelineWrites
    + InboxWrites
    + Send
{
    /// Commits; returns the log cursor of the last event this transaction appended to the
    /// outbox, if any (so the caller can wait for its projection).
    fn commit(self) -> impl Future<Output = StoreResult<Option<LogCursor>>> + Send;
    /// What this transaction changed that read caches may hold: filled as it writes,
    /// taken by the caller before commit and invalidated after it.
    fn touched(&mut self) -> &mut Touched;
}

/// Owners and keys whose cached reads a transaction made stale (`hermet_app::cache`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Owners of conversation rows written (or whose computed rows changed).
    pub list_owners: Vec<UserId>,
    /// Channels whose members' computed rows changed (large groups) or were refreshed.
    pub channels: Vec<ChannelId>,
    /// Sessions revoked or rotated.
    pub sessions: Vec<SessionId>,
    /// Users whose status or accounts changed.
    pub accounts: Vec<UserId>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        *self == Touched::default()
    }
}

#[derive(Debug, Clone)]
pub struct PoolStatus {
    pub pool: &'static str,
    pub size: usize,
    pub available: usize,
    pub max_size: usize,
    pub waiting: usize,
}

// ───────────────────────────── users ─────────────────────────────

/// A user search: exact e-mail or mobile, or a nickname prefix; live users only.
#[derive(Debug, Clone)]
pub struct UserSearch {
    pub email: Option<String>,
    pub mobile: Option<String>,
    /// Lower-cased nickname prefix (see `hermet_domain::user::search_key`).
    pub prefix: String,
    /// Keyset position: the (search name, id) of the last row of the previous page.
    pub after: Option<(String, i64)>,
    pub limit: u32,
}

pub trait UserReads {
    fn user_by_id(&self, id: UserId) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    /// The user holding a live account and their password hash (`None` when the account
    /// cannot sign in with a password).
    fn user_by_account(
        &self,
        account: &Account,
    ) -> impl Future<Output = StoreResult<Option<(User, Option<String>)>>> + Send;
    fn search_users(&self, q: &UserSearch) -> impl Future<Output = StoreResult<Vec<(String, User)>>> + Send;
}

pub trait UserWrites {
    /// Inserts users in one set-based statement. A taken account fails with a unique
    /// violation of `users_email_live` or `users_mobile_live`.
    fn insert_users(&mut self, users: &[NewUser]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads a user and locks the row until commit.
    fn lock_user(&mut self, id: UserId) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    /// Writes the profile fields, `profile_ver` and `updated_at` of `user`.
    fn update_profile(&mut self, user: &User) -> impl Future<Output = StoreResult<()>> + Send;
    fn set_user_status(
        &mut self,
        id: UserId,
        status: UserStatus,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

// ───────────────────────────── sessions ─────────────────────────────

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: i64,
    pub expires_at: i64,
    pub user_agent: String,
    pub refresh_hash: String,
}

/// What authenticating a request needs to know, in one read.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub session_revoked: bool,
    pub session_expires_at: i64,
    pub user_status: UserStatus,
    pub email: Option<String>,
    pub mobile: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub rotated_at: Option<i64>,
    pub session_revoked: bool,
    pub session_expires_at: i64,
    pub user_status: UserStatus,
}

pub trait SessionReads {
    fn auth_context(&self, session: SessionId) -> impl Future<Output = StoreResult<Option<AuthContext>>> + Send;
}

pub trait SessionWrites {
    fn insert_sessions(&mut self, sessions: &[NewSession]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Finds a refresh token by hash and locks its session row until commit.
    fn lock_refresh_token(
        &mut self,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<RefreshTokenRecord>>> + Send;
    /// Marks `old_hash` rotated, records `new_hash` as the session's live token and
    /// moves the session's expiry to `expires_at` (sliding expiry).
    fn rotate_refresh_token(
        &mut self,
        session: SessionId,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn revoke_session(
        &mut self,
        session: SessionId,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Revokes every live session of a user; returns how many.
    fn revoke_user_sessions(
        &mut self,
        user: UserId,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

// ───────────────────────────── outbox ─────────────────────────────

pub trait OutboxWrites {
    /// Appends events to the outbox in the current transaction.
    fn append_events(&mut self, events: &[OutboxEvent]) -> impl Future<Output = StoreResult<()>> + Send;
}

/// A position in the outbox log: (transaction id, position). Consumers read the log in
/// this order; on PostgreSQL only rows of finished transactions are read (see the schema),
/// on SQLite the transaction id is always 0.
pub type LogCursor = (i64, i64);

/// An event as read back from the outbox log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub cursor: LogCursor,
    pub event_id: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// The outbox read as a log (the embedded transport).
pub trait EventLog {
    /// Where `consumer` stands; (0, 0) before its first event.
    fn consumer_offset(&self, consumer: &str) -> impl Future<Output = StoreResult<LogCursor>> + Send;
    /// The cursor just before the first event written at or after `ms` (replay by time).
    fn cursor_before_time(&self, ms: i64) -> impl Future<Output = StoreResult<LogCursor>> + Send;
    /// The cursor of the newest event in the log ((0, 0) when empty).
    fn log_head(&self) -> impl Future<Output = StoreResult<LogCursor>> + Send;
    /// Every offset row whose name starts with `prefix` (a Kafka consumer's partitions).
    fn consumer_offsets(&self, prefix: &str) -> impl Future<Output = StoreResult<Vec<(String, LogCursor)>>> + Send;
    /// Events after `after`, in log order, at most `limit`.
    fn read_events(&self, after: LogCursor, limit: u32) -> impl Future<Output = StoreResult<Vec<StoredEvent>>> + Send;
}

pub trait OffsetWrites {
    /// Moves `consumer` from `from` to `to`, in the transaction that applied those events.
    /// Compare-and-set: returns false (and changes nothing) when the stored offset is no
    /// longer `from` (a replay moved it), so the caller drops its batch.
    fn advance_offset(
        &mut self,
        consumer: &str,
        from: LogCursor,
        to: LogCursor,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Sets `consumer`'s offset unconditionally (replay).
    fn set_offset(&mut self, consumer: &str, at: LogCursor, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
}

// ───────────────────────────── event pipeline ─────────────────────────────

/// An outbox row as the Kafka relay publishes it.
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    pub position: i64,
    pub event_id: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub aggregate_key: String,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// Where the relay put an outbox row on Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub position: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// An event a consumer gave up on (seed 000 §5.2).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    pub consumer: String,
    pub event_id: i64,
    pub event_type: String,
    /// The payload as received (it may not be valid JSON).
    pub payload: String,
    /// Where it came from: `outbox TX:POS` or `kafka TOPIC/PARTITION@OFFSET`.
    pub source: String,
    pub error: String,
    pub attempts: i32,
    /// `pending`; `replay` (asked for, waiting for its consumer); `replayed`; `discarded`.
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct DeadLetterChange {
    pub status: String,
    pub payload: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub consumer: String,
    pub event_id: i64,
    pub event_type: String,
    pub payload: String,
    pub source: String,
    pub error: String,
    pub attempts: i32,
}

pub trait PipelineReads {
    /// Unpublished outbox rows in position order (the Kafka relay).
    fn unpublished(&self, limit: u32) -> impl Future<Output = StoreResult<Vec<OutboxRecord>>> + Send;
    /// Unpublished rows and the creation time of the oldest.
    fn outbox_backlog(&self) -> impl Future<Output = StoreResult<(i64, Option<i64>)>> + Send;
    /// Where the outbox row at `position` was published, once it was.
    fn publication(&self, position: i64) -> impl Future<Output = StoreResult<Option<Publication>>> + Send;
    /// Outbox rows `consumer` has not applied yet on the Kafka transport (unpublished, or
    /// published at or after its offset for that partition). Tools and tests.
    fn undrained_on_kafka(&self, consumer: &str) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Events in the log after `after` (a consumer's lag on the embedded log).
    fn events_after(&self, after: LogCursor) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Dead letters with `status` (any when empty) and id above `after`, oldest first.
    fn dead_letters(
        &self,
        status: &str,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<DeadLetter>>> + Send;
    fn dead_letter(&self, id: i64) -> impl Future<Output = StoreResult<Option<DeadLetter>>> + Send;
    fn pending_dead_letters(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Dead letters of Kafka consumers not yet copied to their `<topic>.dlq`, oldest first.
    fn dead_letters_to_publish(&self, limit: u32) -> impl Future<Output = StoreResult<Vec<DeadLetter>>> + Send;
    /// (channel, member, is owner or admin) for the active members of `channels`
    /// (notification audiences).
    fn channel_audience(
        &self,
        channels: &[ChannelId],
    ) -> impl Future<Output = StoreResult<Vec<(ChannelId, UserId, bool)>>> + Send;
    /// (user, owner) for every owner whose contact list shows one of `users`.
    fn contact_owners(&self, users: &[UserId]) -> impl Future<Output = StoreResult<Vec<(UserId, UserId)>>> + Send;
    /// Groups created in `[since, until)` that have no `channel.created` event in the
    /// outbox (compensation, seed 000 §5.3 方案1).
    fn groups_without_created_event(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ChannelId>>> + Send;
    /// Groups created in `[since, until)` where an active member has no conversation row.
    fn groups_without_views(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ChannelId>>> + Send;
}

pub trait PipelineWrites {
    /// Records where the relay published these rows, and when.
    fn mark_published(&mut self, rows: &[Publication], now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`; false when
    /// another holder's lease is still valid.
    fn take_lease(
        &mut self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Stores a dead letter; the same (consumer, event) again updates the error and adds
    /// its attempts.
    fn insert_dead_letter(&mut self, d: &NewDeadLetter, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes at most `limit` outbox rows created before `before` and at or behind
    /// `floor` in log order (and published, if `published_only`); returns how many.
    fn prune_outbox(
        &mut self,
        before: i64,
        floor: LogCursor,
        published_only: bool,
        limit: u32,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Records that these dead letters, as of their `updated_at`, reached `<topic>.dlq`.
    fn mark_dead_letters_published(
        &mut self,
        letters: &[(i64, i64)],
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Moves a dead letter from status `from` to `change.status` (optionally replacing its
    /// payload or error); false when it was not in `from`.
    fn update_dead_letter(
        &mut self,
        id: i64,
        from: &str,
        change: &DeadLetterChange,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

// ───────────────────────────── realtime ─────────────────────────────

/// An entry of a user's inbox: the event the user was notified of at cursor `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    pub seq: i64,
    pub event_id: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    /// When the event was recorded (its outbox time).
    pub occurred_at: i64,
}

/// The realtime gateway's reads: per-user cursors and catch-up (docs/PROTOCOL.md).
pub trait InboxReads {
    /// The user's latest cursor (0 if the user was never notified).
    fn inbox_head(&self, user: UserId) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Inbox entries after cursor `after`, in cursor order, at most `limit`. Entries whose
    /// event has left the outbox (retention) are missing: callers check continuity.
    fn inbox_after(
        &self,
        user: UserId,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<InboxEntry>>> + Send;
    /// The conversation rows of `users` in `channel` (pushed as `conversation.updated`).
    fn channel_conversations(
        &self,
        channel: ChannelId,
        users: &[UserId],
    ) -> impl Future<Output = StoreResult<Vec<ConversationRow>>> + Send;
    /// The user's conversation rows changed at or after `since`, oldest change first.
    fn conversations_changed(
        &self,
        user: UserId,
        since: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ConversationRow>>> + Send;
}

pub trait InboxWrites {
    /// Appends event `event_id` to the inboxes of `users` (distinct, ascending): each
    /// user's cursor moves on by one. Returns (user, new cursor) for each.
    fn append_inbox(
        &mut self,
        users: &[UserId],
        event_id: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<(UserId, i64)>>> + Send;
    /// Deletes at most `limit` inbox entries that are older than `before` or more than
    /// `keep` behind their user's cursor; returns how many.
    fn prune_inbox(&mut self, before: i64, keep: i64, limit: u32) -> impl Future<Output = StoreResult<u64>> + Send;
}

// ───────────────────────────── IM core ─────────────────────────────

use hermet_domain::channel::{Channel, ChannelType, Member, MemberRole};
use hermet_domain::contact::{ApplicationStatus, ContactApplication, Friendship};
use hermet_domain::id::{ApplicationId, ChannelId, MessageId};
use hermet_domain::message::Message;
use hermet_domain::projection::Refresh;

#[derive(Debug, Clone)]
pub struct NewChannel {
    pub id: ChannelId,
    pub channel_type: ChannelType,
    pub name: String,
    pub avatar: String,
    pub creator_id: UserId,
    pub single_pair: Option<String>,
    pub created_at: i64,
    /// Members it is created with (a group's creation writes them in the same command).
    pub member_count: i32,
    pub read_diffusion: bool,
}

#[derive(Debug, Clone)]
pub struct NewMember {
    pub id: i64,
    pub user_id: UserId,
    pub role: MemberRole,
    pub join_seq: i64,
    pub joined_at: i64,
}

/// The rows of a group being created: its members and, when `views` (dual-write), each
/// member's conversation row.
#[derive(Debug, Clone)]
pub struct NewGroupRows<'a> {
    pub channel: ChannelId,
    pub name: &'a str,
    pub avatar: &'a str,
    pub members: &'a [NewMember],
    pub views: bool,
    pub read_diffusion: bool,
    pub now: i64,
}

/// When a group uses read diffusion (docs/ARCHITECTURE.md "Large groups"): from `enter_at`
/// active members on, until it falls below `leave_below` (hysteresis, so a group that
/// hovers at the threshold does not rewrite its members' rows on every join and leave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargeGroups {
    pub enter_at: i64,
    pub leave_below: i64,
}

impl LargeGroups {
    /// Enter at `threshold`, leave 10% below it.
    pub fn with_threshold(threshold: usize) -> Self {
        let t = threshold as i64;
        Self { enter_at: t, leave_below: t - t / 10 }
    }
}

/// A user row as commands need it: status and display name.
#[derive(Debug, Clone)]
pub struct UserBrief {
    pub id: UserId,
    pub status: UserStatus,
    pub nickname: String,
    pub avatar: String,
}

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
            read_diffusion
        );
        d
    }
}

/// A row of `user_contact_view`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRow {
    pub user_id: UserId,
    pub contact_id: UserId,
    pub contact_nickname: String,
    pub contact_avatar: String,
    pub contact_info_ver: i64,
    pub remark_name: String,
    pub sort_name: String,
    pub initial: String,
    pub group_name: String,
    pub tags: serde_json::Value,
    pub is_starred: bool,
    pub is_blocked: bool,
    pub source: String,
    pub added_at: i64,
    pub deleted_at: Option<i64>,
}

impl ContactRow {
    pub fn diff(&self, other: &Self) -> Vec<&'static str> {
        let mut d = Vec::new();
        macro_rules! cmp { ($($f:ident),*) => { $( if self.$f != other.$f { d.push(stringify!($f)); } )* } }
        cmp!(
            contact_nickname,
            contact_avatar,
            contact_info_ver,
            remark_name,
            sort_name,
            initial,
            group_name,
            tags,
            is_starred,
            is_blocked,
            source,
            added_at,
            deleted_at
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

/// `GET /contacts`: keyset position is (starred, sort name, contact id).
#[derive(Debug, Clone)]
pub struct ContactQuery {
    pub user_id: UserId,
    pub group: Option<String>,
    pub initial: Option<String>,
    pub after: Option<(bool, String, i64)>,
    pub limit: u32,
}

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

/// A join request to a group.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelApplication {
    pub id: ApplicationId,
    pub channel_id: ChannelId,
    pub applicant_id: UserId,
    pub message: String,
    pub status: ApplicationStatus,
    pub reviewer_id: Option<UserId>,
    pub created_at: i64,
    pub updated_at: i64,
    pub reviewed_at: Option<i64>,
}

pub trait ImReads {
    fn channel(&self, id: ChannelId) -> impl Future<Output = StoreResult<Option<Channel>>> + Send;
    fn member(&self, channel: ChannelId, user: UserId) -> impl Future<Output = StoreResult<Option<Member>>> + Send;
    /// Active members ordered by user id, after `after_user`.
    fn members_page(
        &self,
        channel: ChannelId,
        after_user: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Member>>> + Send;
    fn messages(&self, q: &MessageQuery) -> impl Future<Output = StoreResult<Vec<Message>>> + Send;
    fn friendship(&self, user: UserId, friend: UserId) -> impl Future<Output = StoreResult<Option<Friendship>>> + Send;
    /// Applications where `user` is the target (`incoming`) or the applicant.
    fn contact_applications(
        &self,
        user: UserId,
        incoming: bool,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ContactApplication>>> + Send;
    fn channel_applications(
        &self,
        channel: ChannelId,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ChannelApplication>>> + Send;
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
    fn contacts(&self, q: &ContactQuery) -> impl Future<Output = StoreResult<Vec<ContactRow>>> + Send;
    fn contact(&self, user: UserId, contact: UserId) -> impl Future<Output = StoreResult<Option<ContactRow>>> + Send;
}

/// Rows as computed from the write side, and as stored.
pub type ExpectedAndStored<T> = (Vec<T>, Vec<T>);

/// What the consistency checker and the rebuild read: the read models as stored and as
/// computed from the write side, for a batch of owners.
pub trait ConsistencyReads {
    /// Ids of all users after `after`, ascending (batches of owners).
    fn user_ids_after(&self, after: i64, limit: u32) -> impl Future<Output = StoreResult<Vec<UserId>>> + Send;
    fn expected_conversations(
        &self,
        owners: &[UserId],
    ) -> impl Future<Output = StoreResult<Vec<ConversationRow>>> + Send;
    fn stored_conversations(&self, owners: &[UserId])
    -> impl Future<Output = StoreResult<Vec<ConversationRow>>> + Send;
    fn expected_contacts(&self, owners: &[UserId]) -> impl Future<Output = StoreResult<Vec<ContactRow>>> + Send;
    fn stored_contacts(&self, owners: &[UserId]) -> impl Future<Output = StoreResult<Vec<ContactRow>>> + Send;
    /// Conversation reverse-index rows (peer, owner, channel) owned by `owners`, expected and stored.
    fn reverse_conversations(
        &self,
        owners: &[UserId],
    ) -> impl Future<Output = StoreResult<ExpectedAndStored<(i64, i64, i64)>>> + Send;
    /// Contact reverse-index rows (contact, owner) owned by `owners`, expected and stored.
    fn reverse_contacts(
        &self,
        owners: &[UserId],
    ) -> impl Future<Output = StoreResult<ExpectedAndStored<(i64, i64)>>> + Send;
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

pub trait ChannelWrites {
    fn single_channel(&mut self, pair: &str) -> impl Future<Output = StoreResult<Option<Channel>>> + Send;
    /// Those of `users` who are active members of `channel`.
    fn active_members(
        &mut self,
        channel: ChannelId,
        users: &[UserId],
    ) -> impl Future<Output = StoreResult<Vec<UserId>>> + Send;
    fn insert_channel(&mut self, c: &NewChannel) -> impl Future<Output = StoreResult<()>> + Send;
    /// A brand-new group's members and, with `views`, their conversation rows as the
    /// refresh computes them for a group without messages or settings (the consistency
    /// checker holds the two to the same definition). PostgreSQL: binary COPY, the
    /// database's fastest bulk path; SQLite: one prepared insert per row.
    fn insert_new_group(&mut self, g: &NewGroupRows<'_>) -> impl Future<Output = StoreResult<()>> + Send;
    /// Inserts members in one set-based statement; a former member joins again (join
    /// seq and time reset, role as given).
    fn upsert_members(
        &mut self,
        channel: ChannelId,
        members: &[NewMember],
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Marks members as left at `left_seq`.
    fn remove_members(
        &mut self,
        channel: ChannelId,
        users: &[UserId],
        left_seq: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn set_member_role(
        &mut self,
        channel: ChannelId,
        user: UserId,
        role: MemberRole,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn set_group_nickname(
        &mut self,
        channel: ChannelId,
        user: UserId,
        nickname: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Recounts active members into `channel.member_count` and sets the group's
    /// `read_diffusion` from it: on from `large.enter_at` members, off below
    /// `large.leave_below`, unchanged between (single channels: off). Returns the count and
    /// the mode.
    fn recount_members(
        &mut self,
        channel: ChannelId,
        large: LargeGroups,
        now: i64,
    ) -> impl Future<Output = StoreResult<(i32, bool)>> + Send;
    /// The active admin who joined first (ownership passes to them when the owner leaves).
    fn oldest_admin(
        &mut self,
        channel: ChannelId,
        except: UserId,
    ) -> impl Future<Output = StoreResult<Option<UserId>>> + Send;
    /// Sets name and avatar and bumps `channel_info_ver`; returns the new version.
    fn update_channel_info(
        &mut self,
        channel: ChannelId,
        name: &str,
        avatar: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    fn archive_channel(&mut self, channel: ChannelId, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
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
    fn insert_channel_application(&mut self, a: &ChannelApplication) -> impl Future<Output = StoreResult<()>> + Send;
    fn lock_channel_application(
        &mut self,
        id: ApplicationId,
    ) -> impl Future<Output = StoreResult<Option<ChannelApplication>>> + Send;
    fn pending_channel_application(
        &mut self,
        channel: ChannelId,
        applicant: UserId,
    ) -> impl Future<Output = StoreResult<Option<ChannelApplication>>> + Send;
    fn update_channel_application(&mut self, a: &ChannelApplication) -> impl Future<Output = StoreResult<()>> + Send;
}

pub trait ContactWrites {
    /// Inserts or revives friendships (a deleted one becomes live again with new values).
    fn upsert_friendships(&mut self, rows: &[Friendship], now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    fn update_friendship(&mut self, f: &Friendship, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    fn pending_contact_application(
        &mut self,
        applicant: UserId,
        target: UserId,
    ) -> impl Future<Output = StoreResult<Option<ContactApplication>>> + Send;
    fn insert_contact_application(&mut self, a: &ContactApplication) -> impl Future<Output = StoreResult<()>> + Send;
    fn lock_contact_application(
        &mut self,
        id: ApplicationId,
    ) -> impl Future<Output = StoreResult<Option<ContactApplication>>> + Send;
    fn update_contact_application(&mut self, a: &ContactApplication) -> impl Future<Output = StoreResult<()>> + Send;
}

pub trait ProjectionWrites {
    /// Recomputes the read-model rows named by `refresh` from the write side (one
    /// set-based statement per kind of row).
    fn apply_refresh(&mut self, refresh: &Refresh, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes read-model rows of `owners` that the write side no longer backs.
    fn delete_orphans(&mut self, owners: &[UserId]) -> impl Future<Output = StoreResult<u64>> + Send;
}
