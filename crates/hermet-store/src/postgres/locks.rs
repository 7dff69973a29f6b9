//! The locking reads on PostgreSQL (`FOR SHARE` / `FOR UPDATE`, keys in ascending
//! order), and a batch of sends' locks in one round trip.

use std::sync::LazyLock;

use hermet_domain::channel::{Channel, Member};
use hermet_domain::contact::Friendship;
use hermet_domain::id::{ChannelId, UserId};
use hermet_domain::user::UserStatus;
use tokio_postgres::types::ToSql;

use super::statements::query_unless_empty;
use super::statements::{ids, query_map, query_opt};
use super::{PgTx, pg_err};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;

impl Locks for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.lock_users", skip_all)]
    async fn lock_users(&mut self, users: &[UserId], lock: bool) -> Result<Vec<UserBrief>, StoreError> {
        let sql = if lock { &LOCK_USERS_SHARE } else { &LOCK_USERS };
        query_map(self.conn()?, sql, &[&ids(users)], user_brief_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.inactive_users", skip_all)]
    async fn inactive_users(&mut self, users: &[UserId]) -> Result<Vec<(UserId, Option<UserStatus>)>, StoreError> {
        let sql = "SELECT x.id, u.status FROM UNNEST($1::bigint[]) AS x(id) LEFT JOIN users u ON u.id = x.id
                   WHERE u.id IS NULL OR u.status <> 'active'";
        query_map(self.conn()?, sql, &[&ids(users)], inactive_user_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.lock_channel", skip_all)]
    async fn lock_channel(&mut self, id: ChannelId, exclusive: bool) -> Result<Option<Channel>, StoreError> {
        let sql = if exclusive { &LOCK_CHANNEL_UPDATE } else { &LOCK_CHANNEL_SHARE };
        query_opt(self.conn()?, sql, &[&id.get()], channel_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.lock_friendship", skip_all)]
    async fn lock_friendship(
        &mut self,
        user: UserId,
        friend: UserId,
        exclusive: bool,
    ) -> Result<Option<Friendship>, StoreError> {
        let sql = if exclusive { &LOCK_FRIENDSHIP_UPDATE } else { &LOCK_FRIENDSHIP_SHARE };
        query_opt(self.conn()?, sql, &[&user.get(), &friend.get()], friendship_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.lock_member", skip_all)]
    async fn lock_member(&mut self, channel: ChannelId, user: UserId) -> Result<Option<Member>, StoreError> {
        query_opt(self.conn()?, &LOCK_MEMBER_UPDATE, &[&channel.get(), &user.get()], member_from).await
    }

    /// A batch's locks and reads in one round trip: every statement prepared first, then
    /// sent on one flush in lock order (the server takes them in that order, as if
    /// awaited one by one; each statement locks its rows in ascending key order).
    #[tracing::instrument(level = "debug", name = "postgres.lock_for_sends", skip_all)]
    async fn lock_for_sends(&mut self, l: &SendBatchLocks) -> Result<SendBatchLocked, StoreError> {
        let c = self.conn()?;
        let so = c.prep(ORDER_CHANNELS).await.map_err(pg_err)?;
        let sx = c.prep("SELECT txid_current()").await.map_err(pg_err)?;
        let su = c.prep(&LOCK_USERS_SHARE).await.map_err(pg_err)?;
        let ru = c.prep(&LOCK_USERS).await.map_err(pg_err)?;
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
        let (ordered, tx_id, share_rows, read_rows, channel_rows, friend_rows, member_rows, sent_rows, active_rows) = tokio::join!(
            query_unless_empty(c, &so, &p_channels, channels.is_empty()),
            c.query(&sx, &[]),
            query_unless_empty(c, &su, &p_share, share.is_empty()),
            query_unless_empty(c, &ru, &p_read, read.is_empty()),
            query_unless_empty(c, &sc, &p_channels, channels.is_empty()),
            query_unless_empty(c, &sf, &p_friends, fu.is_empty()),
            query_unless_empty(c, &sm, &p_members, mc.is_empty()),
            query_unless_empty(c, &ss, &p_sent, cs.is_empty()),
            query_unless_empty(c, &sa, &p_active, ac.is_empty()),
        );
        ordered.map_err(pg_err)?;
        tx_id.map_err(pg_err)?;
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

/// Per-channel order of the outbox. Consumers read it in (tx_id, position) order, and a
/// transaction's id is assigned at its first row lock or write, which for a batch of sends
/// need not come after it holds its channels: two batches into one chat could get their
/// ids in one order and their seqs in the other, and pushes went out as 1,2,3,5,4,…. So a
/// batch first takes its channels' advisory locks (in id order; they assign no id), then
/// its id (`txid_current()`), then everything else: of the transactions that append to a
/// channel, the ids then increase in the order they held it, which is the order of its
/// seqs. (Other commands' events on a channel carry no seq; they keep the order their
/// transaction ids give.)
const ORDER_CHANNELS: &str = "SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS id";

// The locking reads, built once (used by every command).
static LOCK_USERS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {USER_BRIEF_COLUMNS} FROM users WHERE id = ANY($1::bigint[]) ORDER BY id"));
static LOCK_USERS_SHARE: LazyLock<String> = LazyLock::new(|| format!("{} FOR SHARE", &*LOCK_USERS));
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
