//! Channels, members and join requests on SQLite.

use hermet_domain::channel::{Channel, Member, MemberRole};
use hermet_domain::contact::ApplicationStatus;
use hermet_domain::id::{ApplicationId, ChannelId, UserId};

use rusqlite::params;

use super::statements::{exec, json_ids, qmap, qopt};
use super::{SqliteDatabase, SqliteTx};
use crate::StoreError;
use crate::ports::*;
use crate::queries::{self as q, sqlite_placeholders};
use crate::rows::*;

impl ChannelReads for SqliteDatabase {
    #[tracing::instrument(level = "debug", name = "sqlite.channels_of", skip_all)]
    async fn channels_of(
        &self,
        user: UserId,
        kind: hermet_domain::channel::ChannelType,
        after_channel: i64,
        limit: u32,
    ) -> Result<Vec<Channel>, StoreError> {
        self.read(move |c| {
            qmap(c, &q::CHANNELS_OF, params![user.get(), kind.as_str(), after_channel, limit as i64], |r| {
                channel_from(r)
            })
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.owner_of", skip_all)]
    async fn owner_of(&self, channel: ChannelId) -> Result<Option<UserId>, StoreError> {
        self.read(move |c| qopt(c, q::OWNER_OF, [channel.get()], |r| user_id_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.bans_page", skip_all)]
    async fn bans_page(&self, channel: ChannelId, after_user: i64, limit: u32) -> Result<Vec<ChannelBan>, StoreError> {
        self.read(move |c| {
            qmap(c, q::BANS_PAGE, [channel.get(), after_user, limit as i64], |r| {
                Ok(ChannelBan { user_id: UserId(r.get(0)?), banned_by: UserId(r.get(1)?), banned_at: r.get(2)? })
            })
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.channel", skip_all)]
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, StoreError> {
        self.read(move |c| qopt(c, &q::CHANNEL_BY_ID, [id.get()], |r| channel_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.member", skip_all)]
    async fn member(&self, channel: ChannelId, user: UserId) -> Result<Option<Member>, StoreError> {
        self.read(move |c| qopt(c, &q::MEMBER, [channel.get(), user.get()], |r| member_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.members_page", skip_all)]
    async fn members_page(&self, channel: ChannelId, after_user: i64, limit: u32) -> Result<Vec<Member>, StoreError> {
        self.read(move |c| qmap(c, &q::MEMBERS_PAGE, [channel.get(), after_user, limit as i64], |r| member_from(r)))
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.channel_applications", skip_all)]
    async fn channel_applications(
        &self,
        channel: ChannelId,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> Result<Vec<ChannelApplication>, StoreError> {
        self.read(move |c| {
            qmap(c, &q::CHANNEL_APPS, params![channel.get(), q::status_text(status), before_id, limit as i64], |r| {
                channel_application_from(r)
            })
        })
        .await
    }
}

impl ChannelWrites for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.set_moderation", skip_all)]
    async fn set_moderation(
        &mut self,
        channel: ChannelId,
        mute_all: bool,
        slow: i32,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |c| exec(c, q::SET_MODERATION, params![channel.get(), mute_all, slow, now]).map(|_| ())).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.set_muted_until", skip_all)]
    async fn set_muted_until(
        &mut self,
        channel: ChannelId,
        user: UserId,
        until: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |c| exec(c, q::SET_MUTED_UNTIL, params![channel.get(), user.get(), until, now]).map(|_| ())).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.ban", skip_all)]
    async fn ban(
        &mut self,
        channel: ChannelId,
        user: UserId,
        by: UserId,
        add: bool,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.run(move |c| {
            let n = if add {
                exec(c, q::BAN, params![channel.get(), user.get(), by.get(), at])?
            } else {
                exec(c, q::UNBAN, params![channel.get(), user.get()])?
            };
            Ok(n == 1)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.banned", skip_all)]
    async fn banned(&mut self, channel: ChannelId, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        let u = json_ids(users);
        self.run(move |c| {
            qmap(
                c,
                "SELECT user_id FROM channel_ban WHERE channel_id = ?1 AND user_id IN (SELECT value FROM json_each(?2)) ORDER BY user_id",
                params![channel.get(), u],
                |r| user_id_from(r),
            )
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.single_channel", skip_all)]
    async fn single_channel(&mut self, pair: &str) -> Result<Option<Channel>, StoreError> {
        let pair = pair.to_owned();
        self.run(move |c| qopt(c, &q::CHANNEL_BY_PAIR, [pair], |r| channel_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.active_members", skip_all)]
    async fn active_members(&mut self, channel: ChannelId, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        let u = json_ids(users);
        self.run(move |c| {
            qmap(
                c,
                "SELECT user_id FROM channel_member WHERE channel_id = ?1 AND user_id IN (SELECT value FROM json_each(?2)) AND left_at IS NULL",
                params![channel.get(), u],
                |r| user_id_from(r),
            )
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.insert_channel", skip_all)]
    async fn insert_channel(&mut self, ch: &NewChannel) -> Result<(), StoreError> {
        let ch = ch.clone();
        self.run(move |c| {
            exec(
                c,
                q::INSERT_CHANNEL,
                params![
                    ch.id.get(),
                    ch.channel_type.as_str(),
                    ch.name,
                    ch.avatar,
                    ch.single_pair,
                    ch.creator_id.get(),
                    ch.created_at,
                    ch.member_count,
                    ch.read_diffusion
                ],
            )
            .map(|_| ())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.insert_new_group", skip_all)]
    async fn insert_new_group(&mut self, g: &NewGroupRows<'_>) -> Result<(), StoreError> {
        self.upsert_members(g.channel, g.members, g.now).await?;
        if !g.views {
            return Ok(());
        }
        let (channel, name, avatar) = (g.channel.get(), g.name.to_owned(), g.avatar.to_owned());
        let (rows, rd, now): (Vec<(i64, i64)>, bool, i64) =
            (g.members.iter().map(|m| (m.user_id.get(), m.joined_at)).collect(), g.read_diffusion, g.now);
        // As views.rs computes them for a group with no message, read record or
        // setting; every other column takes its default.
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO user_conversation_view (user_id, channel_id, conversation_type, conversation_name,
                   conversation_avatar, conversation_info_ver, last_active_at, opened_at, read_diffusion, created_at, updated_at)
                 VALUES (?1, ?2, 'group', ?3, ?4, 1, ?5, ?5, ?6, ?7, ?7)",
            )?;
            for (user, joined) in &rows {
                stmt.execute(params![user, channel, name, avatar, joined, rd, now])?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.upsert_members", skip_all)]
    async fn upsert_members(&mut self, channel: ChannelId, members: &[NewMember], now: i64) -> Result<(), StoreError> {
        let members = members.to_vec();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO channel_member (id, channel_id, user_id, role, group_nickname, joined_at, join_seq, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?7, ?7)
                 ON CONFLICT (channel_id, user_id) DO UPDATE SET role = excluded.role, group_nickname = '',
                   joined_at = excluded.joined_at, join_seq = excluded.join_seq, left_at = NULL, left_seq = NULL,
                   left_name = NULL, left_avatar = NULL, left_info_ver = NULL, updated_at = excluded.updated_at",
            )?;
            for m in &members {
                stmt.execute(params![m.id, channel.get(), m.user_id.get(), m.role.as_str(), m.joined_at, m.join_seq, now])?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.remove_members", skip_all)]
    async fn remove_members(
        &mut self,
        channel: ChannelId,
        users: &[UserId],
        left_seq: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let users = users.to_vec();
        self.run(move |c| {
            for u in &users {
                exec(c, q::REMOVE_MEMBER, params![channel.get(), u.get(), now, left_seq])?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.set_member_role", skip_all)]
    async fn set_member_role(
        &mut self,
        channel: ChannelId,
        user: UserId,
        role: MemberRole,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |c| exec(c, q::SET_ROLE, params![channel.get(), user.get(), role.as_str(), now]).map(|_| ()))
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.set_group_nickname", skip_all)]
    async fn set_group_nickname(
        &mut self,
        channel: ChannelId,
        user: UserId,
        nickname: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let nickname = nickname.to_owned();
        self.run(move |c| exec(c, q::SET_GROUP_NICKNAME, params![channel.get(), user.get(), nickname, now]).map(|_| ()))
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.recount_members", skip_all)]
    async fn recount_members(
        &mut self,
        channel: ChannelId,
        large: LargeGroups,
        now: i64,
    ) -> Result<(i32, bool), StoreError> {
        self.run(move |c| {
            c.prepare_cached(&sqlite_placeholders(q::RECOUNT_MEMBERS))?
                .query_row(params![channel.get(), now, large.enter_at, large.leave_below], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.oldest_admin", skip_all)]
    async fn oldest_admin(&mut self, channel: ChannelId, except: UserId) -> Result<Option<UserId>, StoreError> {
        self.run(move |c| qopt(c, q::OLDEST_ADMIN, [channel.get(), except.get()], |r| user_id_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.heir", skip_all)]
    async fn heir(&mut self, channel: ChannelId, except: UserId) -> Result<Option<UserId>, StoreError> {
        self.run(move |c| qopt(c, q::HEIR, [channel.get(), except.get()], |r| user_id_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.groups_of", skip_all)]
    async fn groups_of(&mut self, user: UserId) -> Result<Vec<ChannelId>, StoreError> {
        self.run(move |c| qmap(c, q::GROUPS_OF, [user.get()], |r| channel_id_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.update_channel_info", skip_all)]
    async fn update_channel_info(
        &mut self,
        channel: ChannelId,
        name: &str,
        avatar: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let (name, avatar) = (name.to_owned(), avatar.to_owned());
        self.run(move |c| {
            c.prepare_cached(&sqlite_placeholders(q::UPDATE_CHANNEL_INFO))?
                .query_row(params![channel.get(), name, avatar, now], |r| r.get(0))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.archive_channel", skip_all)]
    async fn archive_channel(&mut self, channel: ChannelId, now: i64) -> Result<(), StoreError> {
        self.run(move |c| exec(c, q::ARCHIVE_CHANNEL, params![channel.get(), now]).map(|_| ())).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.insert_channel_application", skip_all)]
    async fn insert_channel_application(&mut self, a: &ChannelApplication) -> Result<(), StoreError> {
        let a = a.clone();
        self.run(move |c| {
            exec(
                c,
                q::INSERT_CHANNEL_APP,
                params![
                    a.id.get(),
                    a.channel_id.get(),
                    a.applicant_id.get(),
                    a.message,
                    a.status.as_str(),
                    a.reviewer_id.map(|u| u.get()),
                    a.created_at,
                    a.updated_at,
                    a.reviewed_at
                ],
            )
            .map(|_| ())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.lock_channel_application", skip_all)]
    async fn lock_channel_application(&mut self, id: ApplicationId) -> Result<Option<ChannelApplication>, StoreError> {
        self.run(move |c| qopt(c, &q::CHANNEL_APP_BY_ID, [id.get()], |r| channel_application_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.pending_channel_application", skip_all)]
    async fn pending_channel_application(
        &mut self,
        channel: ChannelId,
        applicant: UserId,
    ) -> Result<Option<ChannelApplication>, StoreError> {
        self.run(move |c| {
            qopt(c, &q::CHANNEL_APP_PENDING, [channel.get(), applicant.get()], |r| channel_application_from(r))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.update_channel_application", skip_all)]
    async fn update_channel_application(&mut self, a: &ChannelApplication) -> Result<(), StoreError> {
        let a = a.clone();
        self.run(move |c| {
            exec(
                c,
                q::UPDATE_CHANNEL_APP,
                params![
                    a.id.get(),
                    a.message,
                    a.status.as_str(),
                    a.reviewer_id.map(|u| u.get()),
                    a.updated_at,
                    a.reviewed_at
                ],
            )
            .map(|_| ())
        })
        .await
    }
}
