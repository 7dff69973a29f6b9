//! Channels (single chats and groups), their members and join requests.

use std::future::Future;

use hermet_domain::channel::{Channel, ChannelType, Member, MemberRole};
use hermet_domain::contact::ApplicationStatus;
use hermet_domain::id::{ApplicationId, ChannelId, UserId};

use super::StoreResult;

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

/// A user banned from a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBan {
    pub user_id: UserId,
    pub banned_by: UserId,
    pub banned_at: i64,
}

pub trait ChannelReads {
    fn channel(&self, id: ChannelId) -> impl Future<Output = StoreResult<Option<Channel>>> + Send;
    fn member(&self, channel: ChannelId, user: UserId) -> impl Future<Output = StoreResult<Option<Member>>> + Send;
    /// The channels of `kind` `user` is an active member of (hidden and closed
    /// conversations and dismissed groups included), by id, after `after_channel`.
    fn channels_of(
        &self,
        user: UserId,
        kind: hermet_domain::channel::ChannelType,
        after_channel: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Channel>>> + Send;
    /// Active members ordered by user id, after `after_user`.
    fn members_page(
        &self,
        channel: ChannelId,
        after_user: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Member>>> + Send;
    /// The owner of a group (`None` for a one-to-one channel, or a dismissed group's
    /// owner who left).
    fn owner_of(&self, channel: ChannelId) -> impl Future<Output = StoreResult<Option<UserId>>> + Send;
    /// Users banned from `channel`, by user id, after `after_user`.
    fn bans_page(
        &self,
        channel: ChannelId,
        after_user: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ChannelBan>>> + Send;
    fn channel_applications(
        &self,
        channel: ChannelId,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ChannelApplication>>> + Send;
}

pub trait ChannelWrites {
    /// Sets a group's mute-all and slow mode.
    fn set_moderation(
        &mut self,
        channel: ChannelId,
        mute_all: bool,
        slow_mode_secs: i32,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Mutes a member until a time (`None`: not muted).
    fn set_muted_until(
        &mut self,
        channel: ChannelId,
        user: UserId,
        until: Option<i64>,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Bans (`add`) or unbans `user`; returns whether it changed anything.
    fn ban(
        &mut self,
        channel: ChannelId,
        user: UserId,
        by: UserId,
        add: bool,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Those of `users` banned from `channel`.
    fn banned(&mut self, channel: ChannelId, users: &[UserId])
    -> impl Future<Output = StoreResult<Vec<UserId>>> + Send;
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
    /// Who inherits a group whose owner's account is deleted: the active admin who
    /// joined first, else the active member who joined first.
    fn heir(&mut self, channel: ChannelId, except: UserId) -> impl Future<Output = StoreResult<Option<UserId>>> + Send;
    /// The active groups `user` is an active member of, by id (the order locks take).
    fn groups_of(&mut self, user: UserId) -> impl Future<Output = StoreResult<Vec<ChannelId>>> + Send;
    /// Sets name and avatar and bumps `channel_info_ver`; returns the new version.
    fn update_channel_info(
        &mut self,
        channel: ChannelId,
        name: &str,
        avatar: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    fn archive_channel(&mut self, channel: ChannelId, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
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
