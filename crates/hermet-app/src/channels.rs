//! Group channels: creation in one transaction (`000_70dd81066eae5b2b.txt`), info,
//! dismissal, members, roles, join requests.

use std::collections::HashSet;
use std::time::Instant;

use hermet_domain::channel::{Channel, ChannelStatus, ChannelType, Member, MemberRole, SLOW_MODE_MAX_SECS};
use hermet_domain::contact::{APPLICATION_MESSAGE_MAX, ApplicationStatus};
use hermet_domain::event::{self, DomainEvent};
use hermet_domain::id::{ApplicationId, ChannelId, UserId};
use hermet_domain::time::now_ms;
use hermet_domain::{Error, ErrorCode, Result, validate};
use hermet_store::{
    ChannelApplication, ChannelWrites, Database, Locks, NewChannel, NewGroupRows, NewMember, Transaction,
};

use crate::commit::timed;
use crate::contacts::{already_reviewed, conflict_pending};
use crate::page::{Page, decode_cursor};
use crate::rate_limits::{Key, Limit};
use crate::{App, Principal};

pub const CHANNEL_NAME_MAX: usize = 64;

pub(crate) fn not_member() -> Error {
    Error::forbidden("you are not a member of this channel")
}

/// A channel as a member sees it (`GET /channels/{id}`).
#[derive(Debug, Clone)]
pub struct ChannelView {
    pub channel: Channel,
    pub my_role: MemberRole,
    /// A group's owner.
    pub owner_id: Option<UserId>,
    /// A one-to-one chat's other member.
    pub peer: Option<hermet_domain::user::User>,
}

/// A member with their profile's nickname and avatar (`GET /channels/{id}/members`).
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member: Member,
    pub nickname: String,
    pub avatar: String,
}

/// `PATCH /channels/{id}`: what to change (`None`: keep).
#[derive(Debug, Default)]
pub struct ChannelPatch {
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub mute_all: Option<bool>,
    /// As sent; 0 to [`SLOW_MODE_MAX_SECS`].
    pub slow_mode_secs: Option<i64>,
}

/// Latest `mutedUntil` accepted: the last millisecond of year 9999.
const MUTED_UNTIL_MAX: i64 = 253_402_300_799_999;

/// Whether a member of role `me` may remove, mute or ban one of role `target`: the owner
/// anyone else, an admin plain members.
fn outranks(me: MemberRole, target: MemberRole) -> bool {
    match me {
        MemberRole::Owner => target != MemberRole::Owner,
        MemberRole::Admin => target == MemberRole::Member,
        MemberRole::Member => false,
    }
}

fn must_manage() -> Error {
    Error::forbidden("only the group's owner or an admin may do this")
}

pub(crate) fn archived() -> Error {
    Error::Refused {
        code: ErrorCode::ChannelArchived,
        message: "this group has been dismissed".into(),
        field: None,
        details: None,
    }
}

fn not_group() -> Error {
    Error::Refused {
        code: ErrorCode::NotAGroup,
        message: "this is a one-to-one channel, not a group".into(),
        field: None,
        details: None,
    }
}

/// Rejects duplicate ids, naming them.
fn unique_ids(field: &'static str, ids: &[UserId]) -> Result<()> {
    let mut seen = HashSet::with_capacity(ids.len());
    let dup: Vec<String> = ids.iter().filter(|u| !seen.insert(**u)).map(|u| u.to_string()).collect();
    if dup.is_empty() {
        return Ok(());
    }
    Err(Error::Refused {
        code: ErrorCode::DuplicateMembers,
        message: format!("{field} repeats these ids: {}", preview_ids(&dup)),
        field: Some(field),
        details: Some(Box::new(serde_json::json!({ "duplicate": dup }))),
    })
}

fn preview_ids(ids: &[String]) -> String {
    let mut s = ids.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if ids.len() > 10 {
        s.push_str(&format!(" and {} more", ids.len() - 10));
    }
    s
}

impl<D: Database> App<D> {
    /// Checks that every id names an active user; a 422 lists those that do not.
    async fn require_active_users(&self, tx: &mut D::Tx, field: &'static str, ids: &[UserId]) -> Result<()> {
        let found = tx.inactive_users(ids).await?;
        if found.is_empty() {
            return Ok(());
        }
        let bad: std::collections::HashMap<UserId, bool> = found.iter().map(|(u, s)| (*u, s.is_none())).collect();
        // in request order
        let unknown: Vec<String> = ids.iter().filter(|u| bad.get(u) == Some(&true)).map(|u| u.to_string()).collect();
        let inactive: Vec<String> = ids.iter().filter(|u| bad.get(u) == Some(&false)).map(|u| u.to_string()).collect();
        let mut parts = Vec::new();
        if !unknown.is_empty() {
            parts.push(format!("unknown users: {}", preview_ids(&unknown)));
        }
        if !inactive.is_empty() {
            parts.push(format!("deleted or disabled users: {}", preview_ids(&inactive)));
        }
        Err(Error::Refused {
            code: ErrorCode::InvalidMembers,
            message: format!("{field} names {}", parts.join("; ")),
            field: Some(field),
            details: Some(Box::new(serde_json::json!({ "unknown": unknown, "inactive": inactive }))),
        })
    }

    /// `POST /channels/groups`: channel, members, one conversation view per member and the
    /// `channel.created` outbox event in one transaction, with set-based SQL throughout.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, members = member_ids.len() + 1))]
    pub async fn create_group(
        &self,
        who: Principal,
        name: &str,
        avatar: Option<&str>,
        member_ids: Vec<UserId>,
    ) -> Result<Channel> {
        let start = Instant::now();
        let result = timed("channel.create", self.create_group_inner(who, name, avatar, member_ids)).await;
        let status = if result.is_ok() { "success" } else { "failure" };
        metrics::histogram!("channel_creation_duration_seconds").record(start.elapsed().as_secs_f64());
        metrics::counter!("channel_creation_total", "status" => status).increment(1);
        if let Ok(c) = &result {
            tracing::info!(channel_id = %c.id, member_count = c.member_count, duration_ms = start.elapsed().as_millis() as u64, "channel created");
        }
        result
    }

    async fn create_group_inner(
        &self,
        who: Principal,
        name: &str,
        avatar: Option<&str>,
        member_ids: Vec<UserId>,
    ) -> Result<Channel> {
        let name = validate::display_name("name", name, CHANNEL_NAME_MAX, false)?;
        let avatar = validate::avatar("avatar", avatar.unwrap_or(""))?;
        unique_ids("memberIds", &member_ids)?;
        self.rate_limit(Limit::GroupCreationsPerUser, Key::Id(who.user_id.get())).await?;
        let mut all: Vec<UserId> = vec![who.user_id];
        all.extend(member_ids.into_iter().filter(|u| *u != who.user_id));
        let max = self.settings.limits.max_group_members;
        if all.len() > max {
            return Err(Error::invalid(
                "memberIds",
                format!("a group has at most {max} members including its creator"),
            ));
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        self.require_active_users(&mut tx, "memberIds", &all).await?;
        let id: ChannelId = self.next_id()?;
        let large = self.settings.limits.large_groups();
        // A new group's count and mode are known: no recount (it would scan the members).
        let count = all.len() as i32;
        let read_diffusion = i64::from(count) >= large.enter_at;
        tx.insert_channel(&NewChannel {
            id,
            channel_type: ChannelType::Group,
            name: name.clone(),
            avatar: avatar.clone(),
            creator_id: who.user_id,
            single_pair: None,
            created_at: now,
            member_count: count,
            read_diffusion,
        })
        .await?;
        let row_ids = self.ids.next_many(all.len()).map_err(Error::internal)?;
        let members: Vec<NewMember> = all
            .iter()
            .zip(row_ids)
            .map(|(u, rid)| NewMember {
                id: rid,
                user_id: *u,
                role: if *u == who.user_id { MemberRole::Owner } else { MemberRole::Member },
                join_seq: 0,
                joined_at: now,
            })
            .collect();
        // Dual-write: the members' conversation rows are written with the members (COPY on
        // PostgreSQL), as the refresh would compute them for a group without messages.
        let dual_write = self.sync_mode() == crate::SyncMode::DualWrite;
        tx.insert_new_group(&NewGroupRows {
            channel: id,
            name: &name,
            avatar: &avatar,
            members: &members,
            views: dual_write,
            read_diffusion,
            now,
        })
        .await?;
        tx.touched().list_owners.extend(members.iter().map(|m| m.user_id));
        let ev = DomainEvent::ChannelCreated(event::ChannelCreated {
            channel_id: id,
            channel_type: "group".into(),
            channel_name: name.clone(),
            avatar: avatar.clone(),
            creator_id: who.user_id,
            member_ids: all,
            created_at: now,
        });
        self.record_written(&mut tx, &[ev], now).await?;
        self.commit(tx).await?;
        Ok(Channel {
            id,
            channel_type: ChannelType::Group,
            name,
            avatar,
            status: ChannelStatus::Active,
            channel_info_ver: 1,
            member_count: count,
            last_seq: 0,
            last_message_at: None,
            read_diffusion,
            creator_id: who.user_id,
            single_pair: None,
            created_at: now,
            updated_at: now,
            mute_all: false,
            slow_mode_secs: 0,
        })
    }

    /// The caller's active membership of an existing channel (404 / 403 otherwise).
    pub(crate) async fn membership(&self, who: Principal, id: ChannelId) -> Result<(Channel, Member)> {
        let channel = self.db.channel(id).await?.ok_or(Error::NotFound("channel"))?;
        let member = self.db.member(id, who.user_id).await?.filter(Member::is_active).ok_or_else(not_member)?;
        Ok((channel, member))
    }

    /// `GET /channels?type=`: the groups (or one-to-one chats) I am an active member of,
    /// whatever their conversations show (hidden, closed) and dismissed groups too, by id.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id))]
    pub async fn my_channels(
        &self,
        who: Principal,
        kind: ChannelType,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Channel>> {
        let limit = validate::limit(limit)?;
        let after: i64 = cursor.map(decode_cursor).transpose()?.unwrap_or(0);
        let items = self.db.channels_of(who.user_id, kind, after, limit + 1).await?;
        Ok(Page::from_overfetch(items, limit, |c| c.id.get()))
    }

    /// `GET /channels/{id}`: members only; with my role, the group's owner, or the peer of
    /// a one-to-one chat.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id))]
    pub async fn channel(&self, who: Principal, id: ChannelId) -> Result<ChannelView> {
        let (channel, me) = self.membership(who, id).await?;
        let (owner_id, peer) = match channel.peer_of(who.user_id) {
            Some(peer) => (None, self.db.users_by_ids(&[peer]).await?.into_iter().next()),
            None => (self.db.owner_of(id).await?, None),
        };
        Ok(ChannelView { channel, my_role: me.role, owner_id, peer })
    }

    /// Locks a group for a change by a manager (owner or admin).
    async fn lock_group(&self, tx: &mut D::Tx, who: Principal, id: ChannelId) -> Result<(Channel, Member)> {
        let channel = tx.lock_channel(id, true).await?.ok_or(Error::NotFound("channel"))?;
        let member = tx.lock_member(id, who.user_id).await?.filter(Member::is_active).ok_or_else(not_member)?;
        if channel.channel_type != ChannelType::Group {
            return Err(not_group());
        }
        if channel.status != ChannelStatus::Active {
            return Err(archived());
        }
        Ok((channel, member))
    }

    /// `PATCH /channels/{id}`: owner/admin; bumps `channel_info_ver`; every member's
    /// conversation shows the new name and avatar.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id))]
    pub async fn update_channel(&self, who: Principal, id: ChannelId, patch: ChannelPatch) -> Result<Channel> {
        timed("channel.update", async {
            let ChannelPatch { name, avatar, mute_all, slow_mode_secs } = patch;
            let name = name.map(|n| validate::display_name("name", &n, CHANNEL_NAME_MAX, false)).transpose()?;
            let avatar = avatar.map(|a| validate::avatar("avatar", &a)).transpose()?;
            let slow_mode_secs = slow_mode_secs
                .map(|s| {
                    i32::try_from(s).ok().filter(|s| (0..=SLOW_MODE_MAX_SECS).contains(s)).ok_or_else(|| {
                        Error::invalid("slowModeSecs", format!("slowModeSecs must be 0 (off) to {SLOW_MODE_MAX_SECS}"))
                    })
                })
                .transpose()?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (mut channel, me) = self.lock_group(&mut tx, who, id).await?;
            if !me.role.can_manage() {
                return Err(must_manage());
            }
            let mute_all = mute_all.unwrap_or(channel.mute_all);
            let slow_mode_secs = slow_mode_secs.unwrap_or(channel.slow_mode_secs);
            let mut events = Vec::new();
            if (mute_all, slow_mode_secs) != (channel.mute_all, channel.slow_mode_secs) {
                tx.set_moderation(id, mute_all, slow_mode_secs, now).await?;
                channel.mute_all = mute_all;
                channel.slow_mode_secs = slow_mode_secs;
                channel.updated_at = now;
                events.push(DomainEvent::ChannelModerationChanged(event::ChannelModerationChanged {
                    channel_id: id,
                    mute_all,
                    slow_mode_secs,
                    changed_by: who.user_id,
                    changed_at: now,
                }));
            }
            let new_name = name.unwrap_or_else(|| channel.name.clone());
            let new_avatar = avatar.unwrap_or_else(|| channel.avatar.clone());
            if new_name == channel.name && new_avatar == channel.avatar {
                if !events.is_empty() {
                    self.record(&mut tx, &events, now).await?;
                    self.commit(tx).await?;
                }
                return Ok(channel);
            }
            let ver = tx.update_channel_info(id, &new_name, &new_avatar, now).await?;
            events.push(DomainEvent::ChannelUpdated(event::ChannelUpdated {
                channel_id: id,
                name: new_name.clone(),
                avatar: new_avatar.clone(),
                channel_info_ver: ver,
                updated_by: who.user_id,
                updated_at: now,
            }));
            self.record(&mut tx, &events, now).await?;
            self.commit(tx).await?;
            channel.name = new_name;
            channel.avatar = new_avatar;
            channel.channel_info_ver = ver;
            channel.updated_at = now;
            Ok(channel)
        })
        .await
    }

    /// `POST /channels/{id}/dismiss`: the owner dismisses the group: archived, every
    /// conversation closed, no further messages.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id))]
    pub async fn dismiss_channel(&self, who: Principal, id: ChannelId) -> Result<()> {
        timed("channel.dismiss", async {
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (_, me) = self.lock_group(&mut tx, who, id).await?;
            if me.role != MemberRole::Owner {
                return Err(Error::forbidden("only the owner may dismiss the group"));
            }
            self.dismiss_locked(&mut tx, id, who, now).await?;
            self.commit(tx).await?;
            Ok(())
        })
        .await
    }

    /// `GET /channels/{id}/members`: active members by user id.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id))]
    pub async fn members(
        &self,
        who: Principal,
        id: ChannelId,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<MemberView>> {
        let limit = validate::limit(limit)?;
        self.membership(who, id).await?;
        let after: i64 = cursor.map(decode_cursor).transpose()?.unwrap_or(0);
        let members = self.db.members_page(id, after, limit + 1).await?;
        let ids: Vec<UserId> = members.iter().map(|m| m.user_id).collect();
        let users = self.profiles_by_id(&ids).await?;
        let items = members
            .into_iter()
            .map(|member| {
                let (nickname, avatar) =
                    users.get(&member.user_id).map(|u| (u.nickname.clone(), u.avatar.clone())).unwrap_or_default();
                MemberView { member, nickname, avatar }
            })
            .collect();
        Ok(Page::from_overfetch(items, limit, |m: &MemberView| m.member.user_id.get()))
    }

    /// Adds members to a locked group (shared by add and join-request acceptance).
    async fn add_members_locked(
        &self,
        tx: &mut D::Tx,
        who: Principal,
        channel: &Channel,
        users: &[UserId],
        now: i64,
    ) -> Result<i32> {
        self.require_active_users(tx, "userIds", users).await?;
        let banned = tx.banned(channel.id, users).await?;
        if !banned.is_empty() {
            let ids: Vec<String> = banned.iter().map(|u| u.to_string()).collect();
            return Err(Error::Refused {
                code: ErrorCode::BannedUsers,
                message: format!("banned from this group: {}", preview_ids(&ids)),
                field: Some("userIds"),
                details: Some(Box::new(serde_json::json!({ "bannedUsers": ids }))),
            });
        }
        let already = tx.active_members(channel.id, users).await?;
        if !already.is_empty() {
            let ids: Vec<String> = already.iter().map(|u| u.to_string()).collect();
            return Err(Error::Refused {
                code: ErrorCode::AlreadyMembers,
                message: format!("already members: {}", preview_ids(&ids)),
                field: Some("userIds"),
                details: Some(Box::new(serde_json::json!({ "alreadyMembers": ids }))),
            });
        }
        let max = self.settings.limits.max_group_members;
        if channel.member_count as usize + users.len() > max {
            return Err(Error::Refused {
                code: ErrorCode::GroupFull,
                message: format!("a group has at most {max} members"),
                field: Some("userIds"),
                details: None,
            });
        }
        let row_ids = self.ids.next_many(users.len()).map_err(Error::internal)?;
        let members: Vec<NewMember> = users
            .iter()
            .zip(row_ids)
            .map(|(u, rid)| NewMember {
                id: rid,
                user_id: *u,
                role: MemberRole::Member,
                join_seq: channel.last_seq,
                joined_at: now,
            })
            .collect();
        tx.upsert_members(channel.id, &members, now).await?;
        let (count, read_diffusion) = tx.recount_members(channel.id, self.settings.limits.large_groups(), now).await?;
        let ev = DomainEvent::MemberAdded(event::MemberAdded {
            channel_id: channel.id,
            user_ids: users.to_vec(),
            added_by: who.user_id,
            join_seq: channel.last_seq,
            joined_at: now,
            diffusion_changed: read_diffusion != channel.read_diffusion,
        });
        self.record(tx, &[ev], now).await?;
        Ok(count)
    }

    /// `POST /channels/{id}/members`: owner/admin. New members see history from now on.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id, users = users.len()))]
    pub async fn add_members(&self, who: Principal, id: ChannelId, users: Vec<UserId>) -> Result<i32> {
        timed("channel.add_members", async {
            if users.is_empty() {
                return Err(Error::invalid("userIds", "userIds must name at least one user"));
            }
            unique_ids("userIds", &users)?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (channel, me) = self.lock_group(&mut tx, who, id).await?;
            if !me.role.can_manage() {
                return Err(must_manage());
            }
            let count = self.add_members_locked(&mut tx, who, &channel, &users, now).await?;
            self.commit(tx).await?;
            Ok(count)
        })
        .await
    }

    /// An account being deleted leaves every group it is in, in channel order (the order
    /// locks take), with reason `account_deleted`: an owner's ownership passes to the
    /// [`heir`](hermet_store::ChannelWrites::heir), and a group with no one else is
    /// dismissed. One group at a time: an account is in a bounded number of groups, and
    /// deleting one is rare.
    pub(crate) async fn remove_from_all_groups(
        &self,
        tx: &mut D::Tx,
        by: Principal,
        user: UserId,
        now: i64,
    ) -> Result<()> {
        for id in tx.groups_of(user).await? {
            let Some(channel) = tx.lock_channel(id, true).await? else { continue };
            let Some(member) = tx.lock_member(id, user).await?.filter(Member::is_active) else { continue };
            if member.role == MemberRole::Owner {
                let Some(heir) = tx.heir(id, user).await? else {
                    self.dismiss_locked(tx, id, by, now).await?;
                    continue;
                };
                self.hand_over(tx, id, heir, by, now).await?;
            }
            self.remove_locked(tx, by, &channel, user, "account_deleted", now).await?;
        }
        Ok(())
    }

    /// Archives a locked group: every conversation closed, no further messages.
    async fn dismiss_locked(&self, tx: &mut D::Tx, id: ChannelId, by: Principal, now: i64) -> Result<()> {
        tx.archive_channel(id, now).await?;
        let ev = DomainEvent::ChannelDismissed(event::ChannelDismissed {
            channel_id: id,
            dismissed_by: by.user_id,
            dismissed_at: now,
        });
        self.record(tx, &[ev], now).await
    }

    /// Makes `heir` the owner of a locked group whose owner goes.
    async fn hand_over(&self, tx: &mut D::Tx, id: ChannelId, heir: UserId, by: Principal, now: i64) -> Result<()> {
        tx.set_member_role(id, heir, MemberRole::Owner, now).await?;
        let ev = DomainEvent::MemberRoleChanged(event::MemberRoleChanged {
            channel_id: id,
            user_id: heir,
            role: "owner".into(),
            changed_by: by.user_id,
            changed_at: now,
        });
        self.record(tx, &[ev], now).await
    }

    async fn remove_locked(
        &self,
        tx: &mut D::Tx,
        who: Principal,
        channel: &Channel,
        user: UserId,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        tx.remove_members(channel.id, &[user], channel.last_seq, now).await?;
        let (_, read_diffusion) = tx.recount_members(channel.id, self.settings.limits.large_groups(), now).await?;
        let ev = DomainEvent::MemberRemoved(event::MemberRemoved {
            channel_id: channel.id,
            user_ids: vec![user],
            removed_by: who.user_id,
            reason: reason.into(),
            left_seq: channel.last_seq,
            left_at: now,
            diffusion_changed: read_diffusion != channel.read_diffusion,
        });
        self.record(tx, &[ev], now).await
    }

    /// `DELETE /channels/{id}/members/{userId}`: owner removes anyone but themselves;
    /// an admin removes plain members. The removed member's conversation is closed.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id, member_id = %user))]
    pub async fn remove_member(&self, who: Principal, id: ChannelId, user: UserId) -> Result<()> {
        timed("channel.remove_member", async {
            if user == who.user_id {
                return Err(Error::Refused {
                    code: ErrorCode::UseLeave,
                    message: "to leave a group use POST /channels/{id}/leave".into(),
                    field: None,
                    details: None,
                });
            }
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (channel, me) = self.lock_group(&mut tx, who, id).await?;
            if !me.role.can_manage() {
                return Err(must_manage());
            }
            let target = tx.lock_member(id, user).await?.filter(Member::is_active).ok_or(Error::NotFound("member"))?;
            if !outranks(me.role, target.role) {
                return Err(Error::forbidden("you may not remove this member"));
            }
            self.remove_locked(&mut tx, who, &channel, user, "removed", now).await?;
            self.commit(tx).await?;
            Ok(())
        })
        .await
    }

    /// `POST /channels/{id}/leave`. When the owner leaves, ownership passes to the admin
    /// who joined first; with no admin the owner must transfer ownership (or dismiss).
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id))]
    pub async fn leave_channel(&self, who: Principal, id: ChannelId) -> Result<()> {
        timed("channel.leave", async {
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (channel, me) = self.lock_group(&mut tx, who, id).await?;
            if me.role == MemberRole::Owner {
                let heir = tx.oldest_admin(id, who.user_id).await?.ok_or(Error::Refused {
                    code: ErrorCode::OwnerMustTransfer,
                    message:
                        "the owner must transfer ownership (or make someone admin) before leaving, or dismiss the group"
                            .into(),
                    field: None,
                    details: None,
                })?;
                self.hand_over(&mut tx, id, heir, who, now).await?;
            }
            self.remove_locked(&mut tx, who, &channel, who.user_id, "left", now).await?;
            self.commit(tx).await?;
            Ok(())
        })
        .await
    }

    /// `PATCH /channels/{id}/members/{userId}`: `role` (owner only; `owner` transfers
    /// ownership, the old owner becomes admin) and/or `groupNickname` (the member's own).
    /// Neither: the member as it is (for any active member of the group), nothing written.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id, member_id = %user))]
    pub async fn update_member(
        &self,
        who: Principal,
        id: ChannelId,
        user: UserId,
        role: Option<MemberRole>,
        nickname: Option<String>,
        muted_until: Option<Option<i64>>,
    ) -> Result<Member> {
        timed("channel.update_member", async {
            if let Some(Some(t)) = muted_until
                && !(0..=MUTED_UNTIL_MAX).contains(&t)
            {
                return Err(Error::invalid(
                    "mutedUntil",
                    "mutedUntil must be a time in milliseconds since 1970, or null",
                ));
            }
            let nickname = nickname
                .map(|n| validate::display_name("groupNickname", &n, validate::NICKNAME_MAX, true))
                .transpose()?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (_, me) = self.lock_group(&mut tx, who, id).await?;
            let mut target = if user == who.user_id {
                me.clone()
            } else {
                tx.lock_member(id, user).await?.filter(Member::is_active).ok_or(Error::NotFound("member"))?
            };
            if role.is_none() && nickname.is_none() && muted_until.is_none() {
                // an empty patch: the member as it is, nothing written
                return Ok(target);
            }
            let mut events = Vec::new();
            if let Some(until) = muted_until {
                if !outranks(me.role, target.role) || user == who.user_id {
                    return Err(Error::forbidden(
                        "the owner mutes admins and members, an admin mutes members; nobody mutes themselves",
                    ));
                }
                let until = until.filter(|t| *t > now);
                if until != target.muted_until.filter(|t| *t > now) {
                    tx.set_muted_until(id, user, until, now).await?;
                    target.muted_until = until;
                    events.push(DomainEvent::MemberMuted(event::MemberMuted {
                        channel_id: id,
                        user_id: user,
                        muted_until: until,
                        by: who.user_id,
                        at: now,
                    }));
                }
            }
            if let Some(n) = nickname {
                if user != who.user_id {
                    return Err(Error::forbidden("members set their own group nickname"));
                }
                tx.set_group_nickname(id, user, &n, now).await?;
                target.group_nickname = n.clone();
                events.push(DomainEvent::MemberUpdated(event::MemberUpdated {
                    channel_id: id,
                    user_id: user,
                    group_nickname: n,
                    updated_at: now,
                }));
            }
            if let Some(r) = role {
                if me.role != MemberRole::Owner {
                    return Err(Error::forbidden("only the owner changes roles"));
                }
                if user == who.user_id {
                    return Err(Error::Refused {
                        code: ErrorCode::CannotChangeOwnRole,
                        message: "the owner transfers ownership by making another member owner".into(),
                        field: Some("role"),
                        details: None,
                    });
                }
                if r == MemberRole::Owner {
                    tx.set_member_role(id, who.user_id, MemberRole::Admin, now).await?;
                    events.push(DomainEvent::MemberRoleChanged(event::MemberRoleChanged {
                        channel_id: id,
                        user_id: who.user_id,
                        role: "admin".into(),
                        changed_by: who.user_id,
                        changed_at: now,
                    }));
                }
                tx.set_member_role(id, user, r, now).await?;
                target.role = r;
                events.push(DomainEvent::MemberRoleChanged(event::MemberRoleChanged {
                    channel_id: id,
                    user_id: user,
                    role: r.as_str().into(),
                    changed_by: who.user_id,
                    changed_at: now,
                }));
            }
            self.record(&mut tx, &events, now).await?;
            self.commit(tx).await?;
            Ok(target)
        })
        .await
    }

    /// `POST` (`ban`) and `DELETE /channels/{id}/bans/{userId}`: the owner bans anyone but
    /// themselves, an admin plain members and users who are not members. A member banned
    /// is removed (reason `banned`); a banned user cannot be added, apply or be accepted
    /// until unbanned. Banning a banned user (or unbanning one who is not) changes nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id, target = %user, ban))]
    pub async fn ban(&self, who: Principal, id: ChannelId, user: UserId, ban: bool) -> Result<()> {
        timed("channel.ban", async {
            if user == who.user_id {
                return Err(Error::forbidden("you may not ban yourself"));
            }
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (channel, me) = self.lock_group(&mut tx, who, id).await?;
            if !me.role.can_manage() {
                return Err(must_manage());
            }
            if ban {
                if tx.lock_users(&[user], false).await?.is_empty() {
                    return Err(Error::NotFound("user"));
                }
                if let Some(target) = tx.lock_member(id, user).await?.filter(Member::is_active) {
                    if !outranks(me.role, target.role) {
                        return Err(Error::forbidden("you may not ban this member"));
                    }
                    self.remove_locked(&mut tx, who, &channel, user, "banned", now).await?;
                }
            }
            if tx.ban(id, user, who.user_id, ban, now).await? {
                let ev = DomainEvent::MemberBanned(event::MemberBanned {
                    channel_id: id,
                    user_id: user,
                    banned: ban,
                    by: who.user_id,
                    at: now,
                });
                self.record(&mut tx, &[ev], now).await?;
            }
            self.commit(tx).await
        })
        .await
    }

    /// `GET /channels/{id}/bans`: owner/admin; by user id.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id))]
    pub async fn bans(
        &self,
        who: Principal,
        id: ChannelId,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<hermet_store::ChannelBan>> {
        let limit = validate::limit(limit)?;
        let (channel, me) = self.membership(who, id).await?;
        if channel.channel_type != ChannelType::Group {
            return Err(not_group());
        }
        if !me.role.can_manage() {
            return Err(must_manage());
        }
        let after: i64 = cursor.map(decode_cursor).transpose()?.unwrap_or(0);
        let items = self.db.bans_page(id, after, limit + 1).await?;
        Ok(Page::from_overfetch(items, limit, |b| b.user_id.get()))
    }

    /// `POST /channels/{id}/applications`: ask to join a group; a repeat refreshes it.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id))]
    pub async fn apply_to_channel(&self, who: Principal, id: ChannelId, message: &str) -> Result<ChannelApplication> {
        timed("channel.apply", async {
            let message = validate::text("message", message, APPLICATION_MESSAGE_MAX, true)?;
            self.rate_limit(Limit::ApplicationsPerUser, Key::Id(who.user_id.get())).await?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let channel = tx.lock_channel(id, false).await?.ok_or(Error::NotFound("channel"))?;
            if channel.channel_type != ChannelType::Group {
                return Err(not_group());
            }
            if channel.status != ChannelStatus::Active {
                return Err(archived());
            }
            if !tx.banned(id, &[who.user_id]).await?.is_empty() {
                return Err(Error::Refused {
                    code: ErrorCode::Banned,
                    message: "you are banned from this group".into(),
                    field: None,
                    details: None,
                });
            }
            if tx.lock_member(id, who.user_id).await?.is_some_and(|m| m.is_active()) {
                return Err(Error::Refused {
                    code: ErrorCode::AlreadyMember,
                    message: "you are already a member of this group".into(),
                    field: None,
                    details: None,
                });
            }
            let app = match tx.pending_channel_application(id, who.user_id).await? {
                Some(mut a) => {
                    a.message = message;
                    a.updated_at = now;
                    tx.update_channel_application(&a).await?;
                    a
                }
                None => {
                    let a = ChannelApplication {
                        id: self.next_id()?,
                        channel_id: id,
                        applicant_id: who.user_id,
                        message,
                        status: ApplicationStatus::Pending,
                        reviewer_id: None,
                        created_at: now,
                        updated_at: now,
                        reviewed_at: None,
                    };
                    tx.insert_channel_application(&a)
                        .await
                        .map_err(|e| conflict_pending(e, "channel_application_pending"))?;
                    a
                }
            };
            let ev = DomainEvent::ChannelApplicationCreated(event::ChannelApplicationCreated {
                application_id: app.id,
                channel_id: id,
                applicant_id: who.user_id,
                message: app.message.clone(),
                created_at: now,
            });
            self.record(&mut tx, &[ev], now).await?;
            self.commit(tx).await?;
            Ok(app)
        })
        .await
    }

    /// `GET /channels/{id}/applications`: owner/admin.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id))]
    pub async fn channel_applications(
        &self,
        who: Principal,
        id: ChannelId,
        status: Option<ApplicationStatus>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<ChannelApplication>> {
        let limit = validate::limit(limit)?;
        let (_, me) = self.membership(who, id).await?;
        if !me.role.can_manage() {
            return Err(must_manage());
        }
        let before: i64 = cursor.map(decode_cursor).transpose()?.unwrap_or(i64::MAX);
        let items = self.db.channel_applications(id, status, before, limit + 1).await?;
        Ok(Page::from_overfetch(items, limit, |a| a.id.get()))
    }

    /// `POST /channels/{id}/applications/{appId}/accept|reject`: owner/admin.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %id, application_id = %app_id, accept))]
    pub async fn review_channel_application(
        &self,
        who: Principal,
        id: ChannelId,
        app_id: ApplicationId,
        accept: bool,
    ) -> Result<ChannelApplication> {
        timed("channel.review_application", async {
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let (channel, me) = self.lock_group(&mut tx, who, id).await?;
            if !me.role.can_manage() {
                return Err(must_manage());
            }
            let mut app = tx
                .lock_channel_application(app_id)
                .await?
                .filter(|a| a.channel_id == id)
                .ok_or(Error::NotFound("application"))?;
            if app.status != ApplicationStatus::Pending {
                return Err(already_reviewed());
            }
            if accept {
                self.add_members_locked(&mut tx, who, &channel, &[app.applicant_id], now).await?;
            }
            app.status = if accept { ApplicationStatus::Approved } else { ApplicationStatus::Rejected };
            app.reviewer_id = Some(who.user_id);
            app.updated_at = now;
            app.reviewed_at = Some(now);
            tx.update_channel_application(&app).await?;
            let ev = DomainEvent::ChannelApplicationReviewed(event::ChannelApplicationReviewed {
                application_id: app.id,
                channel_id: id,
                applicant_id: app.applicant_id,
                reviewer_id: who.user_id,
                status: app.status.as_str().into(),
                reviewed_at: now,
            });
            self.record(&mut tx, &[ev], now).await?;
            self.commit(tx).await?;
            Ok(app)
        })
        .await
    }
}
