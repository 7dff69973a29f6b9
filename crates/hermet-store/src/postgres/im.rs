//! The IM core on PostgreSQL: channels, members, messages, friendships, applications,
//! read models (queries and refreshes) and the consistency reads.

use std::sync::LazyLock;

use hermet_domain::channel::{Channel, Member, MemberRole};
use hermet_domain::contact::{ApplicationStatus, ContactApplication, Friendship};
use hermet_domain::id::{ApplicationId, ChannelId, UserId};
use hermet_domain::message::Message;
use hermet_domain::projection::Refresh;
use hermet_domain::user::{UserStatus, search_key};
use tokio_postgres::types::ToSql;

use super::{PgDatabase, PgTx, Prep, pg_err};
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;
use crate::{StoreError, views};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) async fn query_map<T>(
    c: &deadpool_postgres::Object,
    sql: &str,
    params: Params<'_>,
    f: fn(&tokio_postgres::Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let stmt = c.prep(sql).await.map_err(pg_err)?;
    let rows = c.query(&stmt, params).await.map_err(pg_err)?;
    rows.iter().map(f).collect()
}

pub(super) async fn query_opt<T>(
    c: &deadpool_postgres::Object,
    sql: &str,
    params: Params<'_>,
    f: fn(&tokio_postgres::Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let stmt = c.prep(sql).await.map_err(pg_err)?;
    c.query_opt(&stmt, params).await.map_err(pg_err)?.as_ref().map(f).transpose()
}

pub(super) async fn exec(c: &deadpool_postgres::Object, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
    let stmt = c.prep(sql).await.map_err(pg_err)?;
    c.execute(&stmt, params).await.map_err(pg_err)
}

/// Runs `stmt` unless its key set is empty (no statement, no rows).
async fn query_unless_empty(
    c: &deadpool_postgres::Object,
    stmt: &tokio_postgres::Statement,
    params: Params<'_>,
    empty: bool,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    if empty { Ok(Vec::new()) } else { c.query(stmt, params).await }
}

pub(super) fn ids<T: Copy + Into<i64>>(v: &[T]) -> Vec<i64> {
    v.iter().map(|x| (*x).into()).collect()
}

fn status_text(s: Option<ApplicationStatus>) -> &'static str {
    s.map(|s| s.as_str()).unwrap_or("")
}

// The rows a refresh recomputes: members of channels ($1), (owner, channel) pairs
// ($2, $3), every row of owners ($4). (Profile changes take views::PEER_PROFILE_*_ONE.)
const CONVERSATION_KEYS: &str = "WITH keys(user_id, channel_id) AS (
    SELECT m.user_id, m.channel_id FROM channel_member m WHERE m.channel_id = ANY($1::bigint[])
    UNION SELECT x.u, x.c FROM UNNEST($2::bigint[], $3::bigint[]) AS x(u, c)
    UNION SELECT m.user_id, m.channel_id FROM channel_member m WHERE m.user_id = ANY($4::bigint[])
)";

// (owner, contact) pairs ($1, $2), every contact row of owners ($3).
const CONTACT_KEYS: &str = "WITH keys(user_id, contact_id) AS (
    SELECT x.u, x.c FROM UNNEST($1::bigint[], $2::bigint[]) AS x(u, c)
    UNION SELECT f.user_id, f.friend_id FROM friendship f WHERE f.user_id = ANY($3::bigint[])
)";

impl ImReads for PgDatabase {
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, StoreError> {
        let c = self.write_conn().await?;
        query_opt(&c, &q::CHANNEL_BY_ID, &[&id.get()], channel_from).await
    }

    async fn member(&self, channel: ChannelId, user: UserId) -> Result<Option<Member>, StoreError> {
        let c = self.write_conn().await?;
        query_opt(&c, &q::MEMBER, &[&channel.get(), &user.get()], member_from).await
    }

    async fn members_page(&self, channel: ChannelId, after_user: i64, limit: u32) -> Result<Vec<Member>, StoreError> {
        let c = self.read_conn().await?;
        query_map(&c, &q::MEMBERS_PAGE, &[&channel.get(), &after_user, &(limit as i64)], member_from).await
    }

    async fn messages(&self, m: &MessageQuery) -> Result<Vec<Message>, StoreError> {
        let c = self.read_conn().await?;
        let sql = if m.descending { &q::MESSAGES_DESC } else { &q::MESSAGES_ASC };
        query_map(&c, sql, &[&m.channel_id.get(), &m.after_seq, &m.before_seq, &(m.limit as i64)], message_from).await
    }

    async fn friendship(&self, user: UserId, friend: UserId) -> Result<Option<Friendship>, StoreError> {
        let c = self.write_conn().await?;
        query_opt(&c, &q::FRIENDSHIP, &[&user.get(), &friend.get()], friendship_from).await
    }

    async fn contact_applications(
        &self,
        user: UserId,
        incoming: bool,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> Result<Vec<ContactApplication>, StoreError> {
        let c = self.write_conn().await?;
        let sql = if incoming { &q::CONTACT_APPS_INCOMING } else { &q::CONTACT_APPS_OUTGOING };
        query_map(&c, sql, &[&user.get(), &status_text(status), &before_id, &(limit as i64)], contact_application_from)
            .await
    }

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
            &[&channel.get(), &status_text(status), &before_id, &(limit as i64)],
            channel_application_from,
        )
        .await
    }

    async fn conversations(&self, cq: &ConversationQuery) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.read_conn().await?;
        let t = cq.conversation_type.map(|t| t.as_str()).unwrap_or("");
        let (has_after, (p, a, id)) = match cq.after {
            Some(k) => (true, k),
            None => (false, (false, 0, 0)),
        };
        query_map(
            &c,
            &q::CONVERSATIONS,
            &[&cq.user_id.get(), &t, &cq.unread_only, &has_after, &p, &a, &id, &(cq.limit as i64)],
            conversation_from,
        )
        .await
    }

    async fn conversation(&self, user: UserId, channel: ChannelId) -> Result<Option<ConversationRow>, StoreError> {
        let c = self.read_conn().await?;
        query_opt(&c, &q::CONVERSATION, &[&user.get(), &channel.get()], conversation_from).await
    }

    async fn total_unread(&self, user: UserId) -> Result<i64, StoreError> {
        let c = self.read_conn().await?;
        let stmt = c.prep(&q::TOTAL_UNREAD).await.map_err(pg_err)?;
        Ok(c.query_one(&stmt, &[&user.get()]).await.map_err(pg_err)?.get(0))
    }

    async fn large_groups(&self, user: UserId) -> Result<Vec<ChannelId>, StoreError> {
        let c = self.read_conn().await?;
        let stmt = c.prep(q::LARGE_GROUPS).await.map_err(pg_err)?;
        let rows = c.query(&stmt, &[&user.get()]).await.map_err(pg_err)?;
        Ok(rows.iter().map(|r| ChannelId::from(r.get::<_, i64>(0))).collect())
    }

    async fn contact(&self, user: UserId, contact: UserId) -> Result<Option<ContactRow>, StoreError> {
        self.contact_row(user, contact).await
    }

    async fn contacts(&self, cq: &ContactQuery) -> Result<Vec<ContactRow>, StoreError> {
        let c = self.read_conn().await?;
        let (has_after, (s, n, id)) = match &cq.after {
            Some((s, n, id)) => (true, (*s, n.as_str(), *id)),
            None => (false, (false, "", 0)),
        };
        let group = cq.group.as_deref().unwrap_or("");
        let initial = cq.initial.as_deref().unwrap_or("");
        query_map(
            &c,
            &q::CONTACTS,
            &[&cq.user_id.get(), &group, &initial, &has_after, &s, &n, &id, &(cq.limit as i64)],
            contact_from,
        )
        .await
    }
}

impl PgDatabase {
    pub(crate) async fn contact_row(&self, user: UserId, contact: UserId) -> Result<Option<ContactRow>, StoreError> {
        let c = self.read_conn().await?;
        query_opt(&c, &q::CONTACT, &[&user.get(), &contact.get()], contact_from).await
    }
}

impl ConsistencyReads for PgDatabase {
    async fn user_ids_after(&self, after: i64, limit: u32) -> Result<Vec<UserId>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, q::USER_IDS_AFTER, &[&after, &(limit as i64)], |r| Ok(UserId(r.get(0)))).await
    }

    async fn expected_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql = format!("{CONVERSATION_KEYS}{}", &*views::CONVERSATION_EXPECTED);
        let empty: Vec<i64> = Vec::new();
        query_map(&c, &sql, &[&empty, &empty, &empty, &ids(owners)], conversation_from).await
    }

    async fn stored_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql = format!(
            "SELECT {} FROM user_conversation_view WHERE user_id = ANY($1::bigint[])",
            views::conversation_select("")
        );
        query_map(&c, &sql, &[&ids(owners)], conversation_from).await
    }

    async fn expected_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql = format!("{CONTACT_KEYS}{}", &*views::CONTACT_EXPECTED);
        let empty: Vec<i64> = Vec::new();
        query_map(&c, &sql, &[&empty, &empty, &ids(owners)], contact_from).await
    }

    async fn stored_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql =
            format!("SELECT {} FROM user_contact_view WHERE user_id = ANY($1::bigint[])", views::contact_select(""));
        query_map(&c, &sql, &[&ids(owners)], contact_from).await
    }

    async fn reverse_conversations(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64, i64)>, StoreError> {
        let c = self.write_conn().await?;
        let o = ids(owners);
        let expected = query_map(
            &c,
            "SELECT pm.user_id, m.user_id, m.channel_id FROM channel_member m
             JOIN channel ch ON ch.id = m.channel_id AND ch.channel_type = 'single'
             JOIN channel_member pm ON pm.channel_id = m.channel_id AND pm.user_id <> m.user_id
             WHERE m.user_id = ANY($1::bigint[])",
            &[&o],
            |r| Ok((r.get(0), r.get(1), r.get(2))),
        )
        .await?;
        let stored = query_map(
            &c,
            "SELECT peer_user_id, owner_user_id, channel_id FROM conversation_reverse_index WHERE owner_user_id = ANY($1::bigint[])",
            &[&o],
            |r| Ok((r.get(0), r.get(1), r.get(2))),
        )
        .await?;
        Ok((expected, stored))
    }

    async fn reverse_contacts(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64)>, StoreError> {
        let c = self.write_conn().await?;
        let o = ids(owners);
        let expected =
            query_map(&c, "SELECT friend_id, user_id FROM friendship WHERE user_id = ANY($1::bigint[])", &[&o], |r| {
                Ok((r.get(0), r.get(1)))
            })
            .await?;
        let stored = query_map(
            &c,
            "SELECT contact_user_id, owner_user_id FROM contact_reverse_index WHERE owner_user_id = ANY($1::bigint[])",
            &[&o],
            |r| Ok((r.get(0), r.get(1))),
        )
        .await?;
        Ok((expected, stored))
    }
}

impl Locks for PgTx {
    async fn lock_users(&mut self, users: &[UserId], lock: bool) -> Result<Vec<UserBrief>, StoreError> {
        let sql = if lock { LOCK_USERS_SHARE.as_str() } else { LOCK_USERS };
        query_map(self.conn()?, sql, &[&ids(users)], user_brief_from).await
    }

    async fn inactive_users(&mut self, users: &[UserId]) -> Result<Vec<(UserId, Option<UserStatus>)>, StoreError> {
        let sql = "SELECT x.id, u.status FROM UNNEST($1::bigint[]) AS x(id) LEFT JOIN users u ON u.id = x.id
                   WHERE u.id IS NULL OR u.status <> 'active'";
        query_map(self.conn()?, sql, &[&ids(users)], |r| {
            let status: Option<&str> = r.get(1);
            let status = status.map(UserStatus::parse_db).transpose();
            Ok((UserId(r.get(0)), status.map_err(|e| StoreError::other(anyhow::anyhow!("{e:?}")))?))
        })
        .await
    }

    async fn lock_channel(&mut self, id: ChannelId, exclusive: bool) -> Result<Option<Channel>, StoreError> {
        let sql = if exclusive { &LOCK_CHANNEL_UPDATE } else { &LOCK_CHANNEL_SHARE };
        query_opt(self.conn()?, sql, &[&id.get()], channel_from).await
    }

    async fn lock_friendship(
        &mut self,
        user: UserId,
        friend: UserId,
        exclusive: bool,
    ) -> Result<Option<Friendship>, StoreError> {
        let sql = if exclusive { &LOCK_FRIENDSHIP_UPDATE } else { &LOCK_FRIENDSHIP_SHARE };
        query_opt(self.conn()?, sql, &[&user.get(), &friend.get()], friendship_from).await
    }

    async fn lock_member(&mut self, channel: ChannelId, user: UserId) -> Result<Option<Member>, StoreError> {
        query_opt(self.conn()?, &LOCK_MEMBER_UPDATE, &[&channel.get(), &user.get()], member_from).await
    }

    /// A batch's locks and reads in one round trip: every statement prepared first, then
    /// sent on one flush in lock order (the server takes them in that order, as if
    /// awaited one by one; each statement locks its rows in ascending key order).
    async fn lock_for_sends(&mut self, l: &SendBatchLocks) -> Result<SendBatchLocked, StoreError> {
        let c = self.conn()?;
        let su = c.prep(&LOCK_USERS_SHARE).await.map_err(pg_err)?;
        let ru = c.prep(LOCK_USERS).await.map_err(pg_err)?;
        let sc = c.prep(&LOCK_CHANNELS_UPDATE).await.map_err(pg_err)?;
        let sf = c.prep(&LOCK_FRIENDSHIPS_SHARE).await.map_err(pg_err)?;
        let sm = c.prep(&LOCK_MEMBERS_UPDATE).await.map_err(pg_err)?;
        let ss = c.prep(&MESSAGES_BY_CLIENT_IDS).await.map_err(pg_err)?;
        let sa = c.prep(ACTIVE_PAIRS).await.map_err(pg_err)?;
        let (share, read, channels) = (ids(&l.share_users), ids(&l.read_users), ids(&l.channels));
        let (fu, ff): (Vec<i64>, Vec<i64>) = l.friendships.iter().map(|(u, f)| (u.get(), f.get())).unzip();
        let (mc, mu): (Vec<i64>, Vec<i64>) = l.members.iter().map(|(c, u)| (c.get(), u.get())).unzip();
        let (cs, cm): (Vec<i64>, Vec<&str>) = l.client_ids.iter().map(|(u, m)| (u.get(), m.as_str())).unzip();
        let (ac, au): (Vec<i64>, Vec<i64>) = l.mentioned.iter().map(|(c, u)| (c.get(), u.get())).unzip();
        let p_share: [&(dyn ToSql + Sync); 1] = [&share];
        let p_read: [&(dyn ToSql + Sync); 1] = [&read];
        let p_channels: [&(dyn ToSql + Sync); 1] = [&channels];
        let p_friends: [&(dyn ToSql + Sync); 2] = [&fu, &ff];
        let p_members: [&(dyn ToSql + Sync); 2] = [&mc, &mu];
        let p_sent: [&(dyn ToSql + Sync); 2] = [&cs, &cm];
        let p_active: [&(dyn ToSql + Sync); 2] = [&ac, &au];
        let (share_rows, read_rows, channel_rows, friend_rows, member_rows, sent_rows, active_rows) = tokio::join!(
            query_unless_empty(c, &su, &p_share, share.is_empty()),
            query_unless_empty(c, &ru, &p_read, read.is_empty()),
            query_unless_empty(c, &sc, &p_channels, channels.is_empty()),
            query_unless_empty(c, &sf, &p_friends, fu.is_empty()),
            query_unless_empty(c, &sm, &p_members, mc.is_empty()),
            query_unless_empty(c, &ss, &p_sent, cs.is_empty()),
            query_unless_empty(c, &sa, &p_active, ac.is_empty()),
        );
        let mut users = share_rows.map_err(pg_err)?.iter().map(user_brief_from).collect::<Result<Vec<_>, _>>()?;
        for r in read_rows.map_err(pg_err)?.iter() {
            users.push(user_brief_from(r)?);
        }
        Ok(SendBatchLocked {
            users,
            channels: channel_rows.map_err(pg_err)?.iter().map(channel_from).collect::<Result<_, _>>()?,
            friendships: friend_rows.map_err(pg_err)?.iter().map(friendship_from).collect::<Result<_, _>>()?,
            members: member_rows.map_err(pg_err)?.iter().map(member_from).collect::<Result<_, _>>()?,
            sent: sent_rows.map_err(pg_err)?.iter().map(message_from).collect::<Result<_, _>>()?,
            mentioned: active_rows
                .map_err(pg_err)?
                .iter()
                .map(|r| (ChannelId::from(r.get::<_, i64>(0)), UserId::from(r.get::<_, i64>(1))))
                .collect(),
        })
    }
}

// The locking reads, built once (used by every command).
static LOCK_USERS: &str = "SELECT id, status, nickname, avatar FROM users WHERE id = ANY($1::bigint[]) ORDER BY id";
static LOCK_USERS_SHARE: LazyLock<String> = LazyLock::new(|| format!("{LOCK_USERS} FOR SHARE"));
static LOCK_CHANNEL_UPDATE: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", &*q::CHANNEL_BY_ID));
static LOCK_CHANNEL_SHARE: LazyLock<String> = LazyLock::new(|| format!("{} FOR SHARE", &*q::CHANNEL_BY_ID));
static LOCK_FRIENDSHIP_UPDATE: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", &*q::FRIENDSHIP));
static LOCK_FRIENDSHIP_SHARE: LazyLock<String> = LazyLock::new(|| format!("{} FOR SHARE", &*q::FRIENDSHIP));
static LOCK_MEMBER_UPDATE: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", &*q::MEMBER));
// The batch forms (group commit): keys as arrays, rows locked in key order.
static LOCK_CHANNELS_UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {CHANNEL_COLUMNS} FROM channel WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE")
});
static LOCK_FRIENDSHIPS_SHARE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {FRIENDSHIP_COLUMNS} FROM UNNEST($1::bigint[], $2::bigint[]) AS k(ku, kf)
         JOIN friendship f ON f.user_id = k.ku AND f.friend_id = k.kf ORDER BY f.user_id, f.friend_id FOR SHARE OF f"
    )
});
static LOCK_MEMBERS_UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {MEMBER_COLUMNS} FROM UNNEST($1::bigint[], $2::bigint[]) AS k(kc, ku)
         JOIN channel_member m ON m.channel_id = k.kc AND m.user_id = k.ku ORDER BY m.channel_id, m.user_id FOR UPDATE OF m"
    )
});
static MESSAGES_BY_CLIENT_IDS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM UNNEST($1::bigint[], $2::text[]) AS k(ks, kc)
         JOIN message m ON m.sender_id = k.ks AND m.client_msg_id = k.kc"
    )
});
const ACTIVE_PAIRS: &str = "SELECT m.channel_id, m.user_id FROM UNNEST($1::bigint[], $2::bigint[]) AS k(kc, ku)
     JOIN channel_member m ON m.channel_id = k.kc AND m.user_id = k.ku WHERE m.left_at IS NULL";

fn user_brief_from(r: &tokio_postgres::Row) -> Result<UserBrief, StoreError> {
    Ok(UserBrief {
        id: UserId(r.get(0)),
        status: UserStatus::parse_db(r.get(1)).map_err(|e| StoreError::other(anyhow::anyhow!("{e:?}")))?,
        nickname: r.get(2),
        avatar: r.get(3),
    })
}

// A batch's messages at their allocated seqs, one set-based statement each.
const SET_LAST_SEQS: &str = "UPDATE channel SET last_seq = k.seq, last_message_at = $3, updated_at = $3
     FROM UNNEST($1::bigint[], $2::bigint[]) AS k(id, seq) WHERE channel.id = k.id";
const INSERT_MESSAGES: &str = "INSERT INTO message (id, channel_id, seq, sender_id, sender_name, msg_type, content,
       mentions, mention_all, preview, client_msg_id, created_at)
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::jsonb[],
       $8::jsonb[], $9::boolean[], $10::text[], $11::text[], $12::bigint[])";
const INSERT_MENTIONS: &str = "INSERT INTO message_mention (user_id, channel_id, seq, message_id)
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) ON CONFLICT DO NOTHING";
const ADVANCE_READS: &str = "INSERT INTO channel_read_record (user_id, channel_id, last_read_seq, updated_at)
     SELECT k.u, k.c, k.s, $4::bigint FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS k(u, c, s)
     ON CONFLICT (user_id, channel_id) DO UPDATE
       SET last_read_seq = greatest(excluded.last_read_seq, channel_read_record.last_read_seq),
           updated_at = excluded.updated_at";

impl ChannelWrites for PgTx {
    async fn single_channel(&mut self, pair: &str) -> Result<Option<Channel>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CHANNEL_BY_PAIR);
        query_opt(self.conn()?, &sql, &[&pair], channel_from).await
    }

    async fn active_members(&mut self, channel: ChannelId, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        query_map(
            self.conn()?,
            "SELECT user_id FROM channel_member WHERE channel_id = $1 AND user_id = ANY($2::bigint[]) AND left_at IS NULL",
            &[&channel.get(), &ids(users)],
            |r| Ok(UserId(r.get(0))),
        )
        .await
    }

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
        // As CONVERSATION_BODY computes them for a group with no message, read record or
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

    async fn upsert_members(&mut self, channel: ChannelId, members: &[NewMember], now: i64) -> Result<(), StoreError> {
        upsert_members_on(self.conn()?, channel, members, now).await
    }

    async fn remove_members(
        &mut self,
        channel: ChannelId,
        users: &[UserId],
        left_seq: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            "UPDATE channel_member SET left_at = $3, left_seq = $4, updated_at = $3
             WHERE channel_id = $1 AND user_id = ANY($2::bigint[]) AND left_at IS NULL",
            &[&channel.get(), &ids(users), &now, &left_seq],
        )
        .await
        .map(|_| ())
    }

    async fn set_member_role(
        &mut self,
        channel: ChannelId,
        user: UserId,
        role: MemberRole,
        now: i64,
    ) -> Result<(), StoreError> {
        exec(self.conn()?, q::SET_ROLE, &[&channel.get(), &user.get(), &role.as_str(), &now]).await.map(|_| ())
    }

    async fn set_group_nickname(
        &mut self,
        channel: ChannelId,
        user: UserId,
        nickname: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        exec(self.conn()?, q::SET_GROUP_NICKNAME, &[&channel.get(), &user.get(), &nickname, &now]).await.map(|_| ())
    }

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

    async fn oldest_admin(&mut self, channel: ChannelId, except: UserId) -> Result<Option<UserId>, StoreError> {
        query_opt(self.conn()?, q::OLDEST_ADMIN, &[&channel.get(), &except.get()], |r| Ok(UserId(r.get(0)))).await
    }

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

    async fn archive_channel(&mut self, channel: ChannelId, now: i64) -> Result<(), StoreError> {
        exec(self.conn()?, q::ARCHIVE_CHANNEL, &[&channel.get(), &now]).await.map(|_| ())
    }

    /// Channels, messages, mentions and read positions: four set-based statements in one
    /// round trip (pipelined in order).
    async fn append_messages(&mut self, messages: &[Message], now: i64) -> Result<(), StoreError> {
        let c = self.conn()?;
        let seqs = c.prep(SET_LAST_SEQS).await.map_err(pg_err)?;
        let insert = c.prep(INSERT_MESSAGES).await.map_err(pg_err)?;
        let mention = c.prep(INSERT_MENTIONS).await.map_err(pg_err)?;
        let read = c.prep(ADVANCE_READS).await.map_err(pg_err)?;
        let rows = MessageColumns::of(messages)?;
        let params: [&(dyn ToSql + Sync); 12] = [
            &rows.id,
            &rows.channel,
            &rows.seq,
            &rows.sender,
            &rows.sender_name,
            &rows.msg_type,
            &rows.content,
            &rows.mentions,
            &rows.mention_all,
            &rows.preview,
            &rows.client_msg_id,
            &rows.created_at,
        ];
        let (lc, ls): (Vec<i64>, Vec<i64>) = crate::last_seqs(messages, |m| m.channel_id.get()).into_iter().unzip();
        let mut reads: (Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
        for ((u, ch), s) in crate::last_seqs(messages, |m| (m.sender_id.get(), m.channel_id.get())) {
            reads.0.push(u);
            reads.1.push(ch);
            reads.2.push(s);
        }
        let mut ments: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
        for m in messages {
            for u in &m.mentions {
                ments.0.push(u.get());
                ments.1.push(m.channel_id.get());
                ments.2.push(m.seq);
                ments.3.push(m.id.get());
            }
        }
        let mention_rows = async {
            if ments.0.is_empty() {
                Ok(0)
            } else {
                c.execute(&mention, &[&ments.0, &ments.1, &ments.2, &ments.3]).await
            }
        };
        let seq_params: [&(dyn ToSql + Sync); 3] = [&lc, &ls, &now];
        let read_params: [&(dyn ToSql + Sync); 4] = [&reads.0, &reads.1, &reads.2, &now];
        let (moved, inserted, mentioned, advanced) = tokio::join!(
            c.execute(&seqs, &seq_params),
            c.execute(&insert, &params),
            mention_rows,
            c.execute(&read, &read_params),
        );
        moved.map_err(pg_err)?;
        inserted.map_err(pg_err)?;
        mentioned.map_err(pg_err)?;
        advanced.map_err(pg_err)?;
        Ok(())
    }

    async fn advance_read(&mut self, user: UserId, channel: ChannelId, seq: i64, now: i64) -> Result<i64, StoreError> {
        let c = self.conn()?;
        let stmt = c.prep(q::ADVANCE_READ).await.map_err(pg_err)?;
        Ok(c.query_one(&stmt, &[&user.get(), &channel.get(), &seq, &now]).await.map_err(pg_err)?.get(0))
    }

    async fn setting(&mut self, user: UserId, channel: ChannelId) -> Result<ConversationSetting, StoreError> {
        Ok(query_opt(self.conn()?, q::SETTING, &[&user.get(), &channel.get()], |r| {
            Ok(ConversationSetting {
                is_pinned: r.get(0),
                is_muted: r.get(1),
                is_hidden: r.get(2),
                hidden_seq: r.get(3),
                closed_at: r.get(4),
                closed_seq: r.get(5),
            })
        })
        .await?
        .unwrap_or_default())
    }

    async fn save_setting(
        &mut self,
        user: UserId,
        channel: ChannelId,
        s: &ConversationSetting,
        now: i64,
    ) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            q::SAVE_SETTING,
            &[
                &user.get(),
                &channel.get(),
                &s.is_pinned,
                &s.is_muted,
                &s.is_hidden,
                &s.hidden_seq,
                &s.closed_at,
                &s.closed_seq,
                &now,
            ],
        )
        .await
        .map(|_| ())
    }

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

    async fn lock_channel_application(&mut self, id: ApplicationId) -> Result<Option<ChannelApplication>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CHANNEL_APP_BY_ID);
        query_opt(self.conn()?, &sql, &[&id.get()], channel_application_from).await
    }

    async fn pending_channel_application(
        &mut self,
        channel: ChannelId,
        applicant: UserId,
    ) -> Result<Option<ChannelApplication>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CHANNEL_APP_PENDING);
        query_opt(self.conn()?, &sql, &[&channel.get(), &applicant.get()], channel_application_from).await
    }

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

impl ContactWrites for PgTx {
    async fn upsert_friendships(&mut self, rows: &[Friendship], now: i64) -> Result<(), StoreError> {
        let c = self.conn()?;
        let stmt = c.prep(q::UPSERT_FRIENDSHIP).await.map_err(pg_err)?;
        for f in rows {
            let tags = serde_json::to_value(&f.tags).map_err(StoreError::other)?;
            c.execute(
                &stmt,
                &[
                    &f.user_id.get(),
                    &f.friend_id.get(),
                    &f.remark_name,
                    &search_key(&f.remark_name),
                    &f.source.as_str(),
                    &tags,
                    &f.group_name,
                    &f.is_starred,
                    &f.is_blocked,
                    &f.added_at,
                    &f.deleted_at,
                    &now,
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        Ok(())
    }

    async fn update_friendship(&mut self, f: &Friendship, now: i64) -> Result<(), StoreError> {
        self.upsert_friendships(std::slice::from_ref(f), now).await
    }

    async fn pending_contact_application(
        &mut self,
        applicant: UserId,
        target: UserId,
    ) -> Result<Option<ContactApplication>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CONTACT_APP_PENDING);
        query_opt(self.conn()?, &sql, &[&applicant.get(), &target.get()], contact_application_from).await
    }

    async fn insert_contact_application(&mut self, a: &ContactApplication) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            q::INSERT_CONTACT_APP,
            &[
                &a.id.get(),
                &a.applicant_id.get(),
                &a.target_id.get(),
                &a.message,
                &a.source.as_str(),
                &a.status.as_str(),
                &a.created_at,
                &a.updated_at,
                &a.reviewed_at,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn lock_contact_application(&mut self, id: ApplicationId) -> Result<Option<ContactApplication>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CONTACT_APP_BY_ID);
        query_opt(self.conn()?, &sql, &[&id.get()], contact_application_from).await
    }

    async fn update_contact_application(&mut self, a: &ContactApplication) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            q::UPDATE_CONTACT_APP,
            &[&a.id.get(), &a.message, &a.source.as_str(), &a.status.as_str(), &a.updated_at, &a.reviewed_at],
        )
        .await
        .map(|_| ())
    }
}

async fn upsert_members_on(
    c: &deadpool_postgres::Object,
    channel: ChannelId,
    members: &[NewMember],
    now: i64,
) -> Result<(), StoreError> {
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
           updated_at = excluded.updated_at",
        &[&channel.get(), &mids, &users, &roles, &seqs, &joined, &now],
    )
    .await
    .map(|_| ())
}

/// Refreshes of at most this many rows run on a cached generic plan of index lookups.
const SMALL_REFRESH: i64 = 2_000;

/// Counts a refresh's keys and plans the refresh statement that follows for that many
/// rows, in one statement (`set_config(…, true)` is `SET LOCAL`). A refresh of a few
/// rows (a message in a small group, a read) runs on the cached generic plan with
/// nested loops forced: 0.6 ms for 10 rows on a database of 50,000 members, where the
/// planner's generic plan (it guesses thousands of keys from an id array) hashed whole
/// tables (19 ms) and a custom plan cost 4 ms of planning each time. A large one (a
/// group's creation, a membership crossing the large-group threshold) gets a custom
/// plan: hash joins, 0.2 s for 50,000 rows against 2.2 s with nested loops.
fn count_and_plan(keys_cte: &str) -> String {
    let small = format!("n <= {SMALL_REFRESH}");
    format!(
        "{keys_cte}, counted AS (SELECT COUNT(*) AS n FROM keys)
         SELECT n,
           set_config('plan_cache_mode', CASE WHEN {small} THEN 'force_generic_plan' ELSE 'force_custom_plan' END, true),
           set_config('enable_hashjoin', CASE WHEN {small} THEN 'off' ELSE 'on' END, true),
           set_config('enable_mergejoin', CASE WHEN {small} THEN 'off' ELSE 'on' END, true),
           set_config('enable_seqscan', CASE WHEN {small} THEN 'off' ELSE 'on' END, true)
         FROM counted"
    )
}

// The refresh statements and their key counts, built once (they are several KB).
static COUNT_CONVERSATION_KEYS: LazyLock<String> = LazyLock::new(|| count_and_plan(CONVERSATION_KEYS));
static REFRESH_CONVERSATIONS: LazyLock<String> =
    LazyLock::new(|| format!("{CONVERSATION_KEYS}{}", views::CONVERSATION_REFRESH.replace("{now}", "$5::bigint")));
static COUNT_CONTACT_KEYS: LazyLock<String> = LazyLock::new(|| count_and_plan(CONTACT_KEYS));
static REFRESH_CONTACTS: LazyLock<String> =
    LazyLock::new(|| format!("{CONTACT_KEYS}{}", views::CONTACT_REFRESH.replace("{now}", "$4::bigint")));

/// What the rest of a transaction plans with after a refresh.
const PLAN_DEFAULTS: &str = "SET LOCAL plan_cache_mode = auto; SET LOCAL enable_hashjoin = on;
     SET LOCAL enable_mergejoin = on; SET LOCAL enable_seqscan = on";

/// Counts the keys and sets the plan, runs the refresh, and resets the plan settings,
/// pipelined: one round trip (the server takes the three in order, so the refresh is
/// planned under the settings the count chose). Both statements are prepared first, so
/// they go out in this order. Returns the first column of the rows written.
async fn planned_refresh(
    c: &deadpool_postgres::Object,
    count_sql: &str,
    keys: &[&(dyn ToSql + Sync)],
    refresh_sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<i64>, StoreError> {
    let count = c.prep(count_sql).await.map_err(pg_err)?;
    let refresh = c.prep(refresh_sql).await.map_err(pg_err)?;
    let (counted, rows, reset) =
        tokio::join!(c.query_one(&count, keys), c.query(&refresh, params), c.batch_execute(PLAN_DEFAULTS));
    counted.map_err(pg_err)?;
    let rows = rows.map_err(pg_err)?;
    reset.map_err(pg_err)?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
}

impl ProjectionWrites for PgTx {
    async fn apply_refresh(&mut self, r: &Refresh, now: i64) -> Result<(), StoreError> {
        let c = self.conn()?;
        // Reverse indexes first: the conversation refresh reaches peers through them.
        if !r.reverse_channels.is_empty() {
            let ch = ids(&r.reverse_channels);
            let cte = "WITH rchannels(channel_id) AS (SELECT * FROM UNNEST($1::bigint[]))";
            exec(c, &format!("{cte} {}", views::REVERSE_CHANNELS_DELETE), &[&ch]).await?;
            let insert = views::REVERSE_CHANNELS_INSERT.replace("{now}", "$2::bigint");
            exec(c, &format!("{cte} {insert}"), &[&ch, &now]).await?;
        }
        if !r.reverse_contacts.is_empty() {
            let us: Vec<i64> = r.reverse_contacts.iter().map(|(u, _)| u.get()).collect();
            let cs: Vec<i64> = r.reverse_contacts.iter().map(|(_, c)| c.get()).collect();
            let cte = "WITH rpairs(user_id, contact_id) AS (SELECT * FROM UNNEST($1::bigint[], $2::bigint[]))";
            exec(c, &format!("{cte} {}", views::REVERSE_CONTACTS_DELETE), &[&us, &cs]).await?;
            let insert = views::REVERSE_CONTACTS_INSERT.replace("{now}", "$3::bigint");
            exec(c, &format!("{cte} {insert}"), &[&us, &cs, &now]).await?;
        }
        if !r.owners.is_empty() {
            let o = ids(&r.owners);
            exec(c, views::OWNER_REVERSE_CONVERSATIONS_PG, &[&o, &now]).await?;
            exec(c, views::OWNER_REVERSE_CONTACTS_PG, &[&o, &now]).await?;
        }
        let mut written = Vec::new();
        // Profile changes: only the profile-derived columns, per user whose profile
        // changed (one per profile event), conversations and contacts pipelined
        // (views::PEER_PROFILE_*_ONE).
        if !(r.peers.is_empty() && r.contact_of.is_empty()) {
            let mut people = r.peers.clone();
            people.extend_from_slice(&r.contact_of);
            people.sort_unstable();
            people.dedup();
            let profiles = c
                .query(
                    "SELECT id, nickname, avatar, profile_ver, search_name FROM users WHERE id = ANY($1::bigint[])",
                    &[&ids(&people)],
                )
                .await
                .map_err(pg_err)?;
            let conv = c.prep(views::PEER_PROFILE_CONVERSATIONS_ONE).await.map_err(pg_err)?;
            let cont = c.prep(views::PEER_PROFILE_CONTACTS_ONE).await.map_err(pg_err)?;
            for p in &profiles {
                let (id, nickname, avatar, ver, sn): (i64, String, String, i64, String) =
                    (p.get(0), p.get(1), p.get(2), p.get(3), p.get(4));
                let params: [&(dyn ToSql + Sync); 5] = [&id, &nickname, &avatar, &ver, &now];
                let contact_params: [&(dyn ToSql + Sync); 6] = [&id, &nickname, &avatar, &ver, &now, &sn];
                let shown = async {
                    match r.peers.contains(&UserId(id)) {
                        true => c.query(&conv, &params).await,
                        false => Ok(Vec::new()),
                    }
                };
                let listed = async {
                    match r.contact_of.contains(&UserId(id)) {
                        true => c.execute(&cont, &contact_params).await,
                        false => Ok(0),
                    }
                };
                let (shown, listed) = tokio::join!(shown, listed);
                written.extend(shown.map_err(pg_err)?.iter().map(|r| UserId::from(r.get::<_, i64>(0))));
                listed.map_err(pg_err)?;
            }
        }
        if !(r.channels.is_empty() && r.conversations.is_empty() && r.owners.is_empty()) {
            let us: Vec<i64> = r.conversations.iter().map(|(u, _)| u.get()).collect();
            let cs: Vec<i64> = r.conversations.iter().map(|(_, c)| c.get()).collect();
            let (channels, owners) = (ids(&r.channels), ids(&r.owners));
            let keys: [&(dyn ToSql + Sync); 4] = [&channels, &us, &cs, &owners];
            let params: [&(dyn ToSql + Sync); 5] = [&channels, &us, &cs, &owners, &now];
            let rows = planned_refresh(c, &COUNT_CONVERSATION_KEYS, &keys, &REFRESH_CONVERSATIONS, &params).await?;
            written.extend(rows.into_iter().map(UserId::from));
        }
        if !(r.contacts.is_empty() && r.owners.is_empty()) {
            let us: Vec<i64> = r.contacts.iter().map(|(u, _)| u.get()).collect();
            let cs: Vec<i64> = r.contacts.iter().map(|(_, c)| c.get()).collect();
            let owners = ids(&r.owners);
            let keys: [&(dyn ToSql + Sync); 3] = [&us, &cs, &owners];
            let params: [&(dyn ToSql + Sync); 4] = [&us, &cs, &owners, &now];
            planned_refresh(c, &COUNT_CONTACT_KEYS, &keys, &REFRESH_CONTACTS, &params).await?;
        }
        self.touched.list_owners.extend(written);
        Ok(())
    }

    async fn delete_orphans(&mut self, owners: &[UserId]) -> Result<u64, StoreError> {
        let c = self.conn()?;
        let o = ids(owners);
        let a = exec(
            c,
            "DELETE FROM user_conversation_view v WHERE v.user_id = ANY($1::bigint[])
             AND NOT EXISTS (SELECT 1 FROM channel_member m WHERE m.user_id = v.user_id AND m.channel_id = v.channel_id)",
            &[&o],
        )
        .await?;
        let b = exec(
            c,
            "DELETE FROM user_contact_view v WHERE v.user_id = ANY($1::bigint[])
             AND NOT EXISTS (SELECT 1 FROM friendship f WHERE f.user_id = v.user_id AND f.friend_id = v.contact_id)",
            &[&o],
        )
        .await?;
        let d = exec(
            c,
            "DELETE FROM conversation_reverse_index r WHERE r.owner_user_id = ANY($1::bigint[])
             AND NOT EXISTS (SELECT 1 FROM channel_member m JOIN channel ch ON ch.id = m.channel_id AND ch.channel_type = 'single'
                             JOIN channel_member pm ON pm.channel_id = m.channel_id AND pm.user_id = r.peer_user_id
                             WHERE m.user_id = r.owner_user_id AND m.channel_id = r.channel_id AND pm.user_id <> m.user_id)",
            &[&o],
        )
        .await?;
        let e = exec(
            c,
            "DELETE FROM contact_reverse_index r WHERE r.owner_user_id = ANY($1::bigint[])
             AND NOT EXISTS (SELECT 1 FROM friendship f WHERE f.user_id = r.owner_user_id AND f.friend_id = r.contact_user_id)",
            &[&o],
        )
        .await?;
        Ok(a + b + d + e)
    }
}

/// A batch's messages as one array per column (`UNNEST`).
struct MessageColumns<'a> {
    id: Vec<i64>,
    channel: Vec<i64>,
    seq: Vec<i64>,
    sender: Vec<i64>,
    sender_name: Vec<&'a str>,
    msg_type: Vec<&'static str>,
    content: Vec<&'a serde_json::Value>,
    mentions: Vec<serde_json::Value>,
    mention_all: Vec<bool>,
    preview: Vec<String>,
    client_msg_id: Vec<Option<&'a str>>,
    created_at: Vec<i64>,
}

impl<'a> MessageColumns<'a> {
    fn of(messages: &'a [Message]) -> Result<Self, StoreError> {
        let mentions = messages
            .iter()
            .map(|m| serde_json::to_value(&m.mentions))
            .collect::<Result<_, _>>()
            .map_err(StoreError::other)?;
        Ok(Self {
            id: messages.iter().map(|m| m.id.get()).collect(),
            channel: messages.iter().map(|m| m.channel_id.get()).collect(),
            seq: messages.iter().map(|m| m.seq).collect(),
            sender: messages.iter().map(|m| m.sender_id.get()).collect(),
            sender_name: messages.iter().map(|m| m.sender_name.as_str()).collect(),
            msg_type: messages.iter().map(|m| m.msg_type.as_str()).collect(),
            content: messages.iter().map(|m| &m.content).collect(),
            mentions,
            mention_all: messages.iter().map(|m| m.mention_all).collect(),
            preview: messages.iter().map(|m| hermet_domain::message::preview(m.msg_type, &m.content)).collect(),
            client_msg_id: messages.iter().map(|m| m.client_msg_id.as_deref()).collect(),
            created_at: messages.iter().map(|m| m.created_at).collect(),
        })
    }
}
