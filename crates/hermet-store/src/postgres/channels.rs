//! Channels, members and join requests on PostgreSQL.

use hermet_domain::channel::{Channel, Member, MemberRole};
use hermet_domain::contact::ApplicationStatus;
use hermet_domain::id::{ApplicationId, ChannelId, UserId};
use tokio_postgres::types::ToSql;

use super::statements::PgConn;
use super::statements::{exec, ids, query_map, query_opt};
use super::{PgDatabase, PgTx, pg_err};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;

impl ChannelReads for PgDatabase {
    #[tracing::instrument(level = "debug", name = "postgres.channels_of", skip_all)]
    async fn channels_of(
        &self,
        user: UserId,
        kind: hermet_domain::channel::ChannelType,
        after_channel: i64,
        limit: u32,
    ) -> Result<Vec<Channel>, StoreError> {
        let c = self.read_conn().await?;
        let params: [&(dyn ToSql + Sync); 4] = [&user.get(), &kind.as_str(), &after_channel, &(limit as i64)];
        query_map(&c, &q::CHANNELS_OF, &params, channel_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.owner_of", skip_all)]
    async fn owner_of(&self, channel: ChannelId) -> Result<Option<UserId>, StoreError> {
        let c = self.read_conn().await?;
        query_opt(&c, q::OWNER_OF, &[&channel.get()], user_id_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.bans_page", skip_all)]
    async fn bans_page(&self, channel: ChannelId, after_user: i64, limit: u32) -> Result<Vec<ChannelBan>, StoreError> {
        let c = self.read_conn().await?;
        query_map(&c, q::BANS_PAGE, &[&channel.get(), &after_user, &(limit as i64)], |r| {
            Ok(ChannelBan { user_id: UserId(r.int(0)?), banned_by: UserId(r.int(1)?), banned_at: r.int(2)? })
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "postgres.channel", skip_all)]
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, StoreError> {
        let c = self.write_conn().await?;
        query_opt(&c, &q::CHANNEL_BY_ID, &[&id.get()], channel_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.member", skip_all)]
    async fn member(&self, channel: ChannelId, user: UserId) -> Result<Option<Member>, StoreError> {
        let c = self.write_conn().await?;
        query_opt(&c, &q::MEMBER, &[&channel.get(), &user.get()], member_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.members_page", skip_all)]
    async fn members_page(&self, channel: ChannelId, after_user: i64, limit: u32) -> Result<Vec<Member>, StoreError> {
        let c = self.read_conn().await?;
        query_map(&c, &q::MEMBERS_PAGE, &[&channel.get(), &after_user, &(limit as i64)], member_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.channel_applications", skip_all)]
    async fn channel_applications(
        &self,
        channel: ChannelId,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> Result<Vec<ChannelApplication>, StoreError> {
        let c = self.write_conn().await?;
        query_map(
            &c,
            &q::CHANNEL_APPS,
            &[&channel.get(), &q::status_text(status), &before_id, &(limit as i64)],
            channel_application_from,
        )
        .await
    }
}

impl ChannelWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.set_moderation", skip_all)]
    async fn set_moderation(
        &mut self,
        channel: ChannelId,
        mute_all: bool,
        slow: i32,
        now: i64,
    ) -> Result<(), StoreError> {
        exec(self.conn()?, q::SET_MODERATION, &[&channel.get(), &mute_all, &slow, &now]).await.map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.set_muted_until", skip_all)]
    async fn set_muted_until(
        &mut self,
        channel: ChannelId,
        user: UserId,
        until: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        exec(self.conn()?, q::SET_MUTED_UNTIL, &[&channel.get(), &user.get(), &until, &now]).await.map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.ban", skip_all)]
    async fn ban(
        &mut self,
        channel: ChannelId,
        user: UserId,
        by: UserId,
        add: bool,
        at: i64,
    ) -> Result<bool, StoreError> {
        let n = if add {
            exec(self.conn()?, q::BAN, &[&channel.get(), &user.get(), &by.get(), &at]).await?
        } else {
            exec(self.conn()?, q::UNBAN, &[&channel.get(), &user.get()]).await?
        };
        Ok(n == 1)
    }

    #[tracing::instrument(level = "debug", name = "postgres.banned", skip_all)]
    async fn banned(&mut self, channel: ChannelId, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        query_map(
            self.conn()?,
            "SELECT user_id FROM channel_ban WHERE channel_id = $1 AND user_id = ANY($2::bigint[]) ORDER BY user_id",
            &[&channel.get(), &ids(users)],
            user_id_from,
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "postgres.single_channel", skip_all)]
    async fn single_channel(&mut self, pair: &str) -> Result<Option<Channel>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CHANNEL_BY_PAIR);
        query_opt(self.conn()?, &sql, &[&pair], channel_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.active_members", skip_all)]
    async fn active_members(&mut self, channel: ChannelId, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        query_map(
            self.conn()?,
            "SELECT user_id FROM channel_member WHERE channel_id = $1 AND user_id = ANY($2::bigint[]) AND left_at IS NULL",
            &[&channel.get(), &ids(users)],
            user_id_from,
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "postgres.insert_channel", skip_all)]
    async fn insert_channel(&mut self, ch: &NewChannel) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            q::INSERT_CHANNEL,
            &[
                &ch.id.get(),
                &ch.channel_type.as_str(),
                &ch.name,
                &ch.avatar,
                &ch.single_pair,
                &ch.creator_id.get(),
                &ch.created_at,
                &ch.member_count,
                &ch.read_diffusion,
            ],
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.insert_new_group", skip_all)]
    async fn insert_new_group(&mut self, g: &NewGroupRows<'_>) -> Result<(), StoreError> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;
        // COPY costs an extra round trip per table: below this, one INSERT … UNNEST each.
        const COPY_FROM: usize = 64;
        let channel = g.channel.get();
        if g.members.len() < COPY_FROM {
            // Both inserts in one round trip (pipelined on the connection, in order).
            let c = self.conn()?;
            let views = async {
                if !g.views {
                    return Ok(());
                }
                let users: Vec<i64> = g.members.iter().map(|m| m.user_id.get()).collect();
                let joined: Vec<i64> = g.members.iter().map(|m| m.joined_at).collect();
                exec(
                    c,
                    "INSERT INTO user_conversation_view (user_id, channel_id, conversation_type, conversation_name,
                       conversation_avatar, conversation_info_ver, last_active_at, opened_at, read_diffusion, created_at, updated_at)
                     SELECT x.u, $1, 'group', $2, $3, 1, x.j, x.j, $4, $5, $5
                     FROM UNNEST($6::bigint[], $7::bigint[]) AS x(u, j)",
                    &[&channel, &g.name, &g.avatar, &g.read_diffusion, &g.now, &users, &joined],
                )
                .await
                .map(|_| ())
            };
            tokio::try_join!(upsert_members_on(c, g.channel, g.members, g.now), views)?;
            return Ok(());
        }
        let c = self.conn()?;
        let sink = c
            .copy_in(
                "COPY channel_member (id, channel_id, user_id, role, group_nickname, joined_at, join_seq, created_at, updated_at)
                 FROM STDIN BINARY",
            )
            .await
            .map_err(pg_err)?;
        let types = [
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::INT8,
        ];
        let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for m in g.members {
            let row: [&(dyn ToSql + Sync); 9] =
                [&m.id, &channel, &m.user_id.get(), &m.role.as_str(), &"", &m.joined_at, &m.join_seq, &g.now, &g.now];
            w.as_mut().write(&row).await.map_err(pg_err)?;
        }
        w.finish().await.map_err(pg_err)?;
        if !g.views {
            return Ok(());
        }
        // As views.rs computes them for a group with no message, read record or
        // setting: every other column takes its default (no peer, no last message, zero
        // counts, not pinned, muted or hidden, open, version 1).
        let sink = c
            .copy_in(
                "COPY user_conversation_view (user_id, channel_id, conversation_type, conversation_name, conversation_avatar,
                 conversation_info_ver, last_active_at, opened_at, read_diffusion, created_at, updated_at) FROM STDIN BINARY",
            )
            .await
            .map_err(pg_err)?;
        let types = [
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::BOOL,
            Type::INT8,
            Type::INT8,
        ];
        let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for m in g.members {
            let row: [&(dyn ToSql + Sync); 11] = [
                &m.user_id.get(),
                &channel,
                &"group",
                &g.name,
                &g.avatar,
                &1i64,
                &m.joined_at,
                &m.joined_at,
                &g.read_diffusion,
                &g.now,
                &g.now,
            ];
            w.as_mut().write(&row).await.map_err(pg_err)?;
        }
        w.finish().await.map_err(pg_err)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.upsert_members", skip_all)]
    async fn upsert_members(&mut self, channel: ChannelId, members: &[NewMember], now: i64) -> Result<(), StoreError> {
        upsert_members_on(self.conn()?, channel, members, now).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.remove_members", skip_all)]
    async fn remove_members(
        &mut self,
        channel: ChannelId,
        users: &[UserId],
        left_seq: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            concat!(
                "UPDATE channel_member SET left_at = $3, left_seq = $4, updated_at = $3, ",
                crate::queries::left_snapshot!(),
                " WHERE channel_id = $1 AND user_id = ANY($2::bigint[]) AND left_at IS NULL"
            ),
            &[&channel.get(), &ids(users), &now, &left_seq],
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.set_member_role", skip_all)]
    async fn set_member_role(
        &mut self,
        channel: ChannelId,
        user: UserId,
        role: MemberRole,
        now: i64,
    ) -> Result<(), StoreError> {
        exec(self.conn()?, q::SET_ROLE, &[&channel.get(), &user.get(), &role.as_str(), &now]).await.map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.set_group_nickname", skip_all)]
    async fn set_group_nickname(
        &mut self,
        channel: ChannelId,
        user: UserId,
        nickname: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        exec(self.conn()?, q::SET_GROUP_NICKNAME, &[&channel.get(), &user.get(), &nickname, &now]).await.map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.recount_members", skip_all)]
    async fn recount_members(
        &mut self,
        channel: ChannelId,
        large: LargeGroups,
        now: i64,
    ) -> Result<(i32, bool), StoreError> {
        let c = self.conn()?;
        let stmt = c.prep(q::RECOUNT_MEMBERS).await.map_err(pg_err)?;
        let row =
            c.query_one(&stmt, &[&channel.get(), &now, &large.enter_at, &large.leave_below]).await.map_err(pg_err)?;
        Ok((row.get(0), row.get(1)))
    }

    #[tracing::instrument(level = "debug", name = "postgres.oldest_admin", skip_all)]
    async fn oldest_admin(&mut self, channel: ChannelId, except: UserId) -> Result<Option<UserId>, StoreError> {
        query_opt(self.conn()?, q::OLDEST_ADMIN, &[&channel.get(), &except.get()], user_id_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.heir", skip_all)]
    async fn heir(&mut self, channel: ChannelId, except: UserId) -> Result<Option<UserId>, StoreError> {
        query_opt(self.conn()?, q::HEIR, &[&channel.get(), &except.get()], user_id_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.groups_of", skip_all)]
    async fn groups_of(&mut self, user: UserId) -> Result<Vec<ChannelId>, StoreError> {
        query_map(self.conn()?, q::GROUPS_OF, &[&user.get()], channel_id_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.update_channel_info", skip_all)]
    async fn update_channel_info(
        &mut self,
        channel: ChannelId,
        name: &str,
        avatar: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let c = self.conn()?;
        let stmt = c.prep(q::UPDATE_CHANNEL_INFO).await.map_err(pg_err)?;
        Ok(c.query_one(&stmt, &[&channel.get(), &name, &avatar, &now]).await.map_err(pg_err)?.get(0))
    }

    #[tracing::instrument(level = "debug", name = "postgres.archive_channel", skip_all)]
    async fn archive_channel(&mut self, channel: ChannelId, now: i64) -> Result<(), StoreError> {
        exec(self.conn()?, q::ARCHIVE_CHANNEL, &[&channel.get(), &now]).await.map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.insert_channel_application", skip_all)]
    async fn insert_channel_application(&mut self, a: &ChannelApplication) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            q::INSERT_CHANNEL_APP,
            &[
                &a.id.get(),
                &a.channel_id.get(),
                &a.applicant_id.get(),
                &a.message,
                &a.status.as_str(),
                &a.reviewer_id.map(|u| u.get()),
                &a.created_at,
                &a.updated_at,
                &a.reviewed_at,
            ],
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.lock_channel_application", skip_all)]
    async fn lock_channel_application(&mut self, id: ApplicationId) -> Result<Option<ChannelApplication>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CHANNEL_APP_BY_ID);
        query_opt(self.conn()?, &sql, &[&id.get()], channel_application_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.pending_channel_application", skip_all)]
    async fn pending_channel_application(
        &mut self,
        channel: ChannelId,
        applicant: UserId,
    ) -> Result<Option<ChannelApplication>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CHANNEL_APP_PENDING);
        query_opt(self.conn()?, &sql, &[&channel.get(), &applicant.get()], channel_application_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.update_channel_application", skip_all)]
    async fn update_channel_application(&mut self, a: &ChannelApplication) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            q::UPDATE_CHANNEL_APP,
            &[
                &a.id.get(),
                &a.message,
                &a.status.as_str(),
                &a.reviewer_id.map(|u| u.get()),
                &a.updated_at,
                &a.reviewed_at,
            ],
        )
        .await
        .map(|_| ())
    }
}

async fn upsert_members_on(c: &PgConn, channel: ChannelId, members: &[NewMember], now: i64) -> Result<(), StoreError> {
    if members.is_empty() {
        return Ok(());
    }
    let mids: Vec<i64> = members.iter().map(|m| m.id).collect();
    let users: Vec<i64> = members.iter().map(|m| m.user_id.get()).collect();
    let roles: Vec<&str> = members.iter().map(|m| m.role.as_str()).collect();
    let seqs: Vec<i64> = members.iter().map(|m| m.join_seq).collect();
    let joined: Vec<i64> = members.iter().map(|m| m.joined_at).collect();
    exec(
        c,
        "INSERT INTO channel_member (id, channel_id, user_id, role, group_nickname, joined_at, join_seq, created_at, updated_at)
         SELECT x.id, $1, x.u, x.r, '', x.j, x.s, $7, $7
         FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[]) AS x(id, u, r, s, j)
         ON CONFLICT (channel_id, user_id) DO UPDATE SET role = excluded.role, group_nickname = '',
           joined_at = excluded.joined_at, join_seq = excluded.join_seq, left_at = NULL, left_seq = NULL,
           left_name = NULL, left_avatar = NULL, left_info_ver = NULL, updated_at = excluded.updated_at",
        &[&channel.get(), &mids, &users, &roles, &seqs, &joined, &now],
    )
    .await
    .map(|_| ())
}
