//! The read models' refresh on PostgreSQL: the key sets, the plan each refresh runs
//! on, and the steps of [`crate::refresh`] in their order.

use std::sync::LazyLock;

use hermet_domain::id::{ChannelId, UserId};
use hermet_domain::projection::Refresh;
use tokio_postgres::types::ToSql;

use super::statements::PgConn;
use super::statements::{exec, ids};
use super::{PgTx, pg_err};
use crate::StoreError;
use crate::ports::*;
use crate::refresh::{self, RefreshStep};
use crate::views;

// The rows a refresh recomputes: members of channels ($1), (owner, channel) pairs
// ($2, $3), every row of owners ($4). (Profile changes take views::PEER_PROFILE_*_ONE.)
pub(super) const CONVERSATION_KEYS: &str = "WITH keys(user_id, channel_id) AS (
    SELECT m.user_id, m.channel_id FROM channel_member m WHERE m.channel_id = ANY($1::bigint[])
    UNION SELECT x.u, x.c FROM UNNEST($2::bigint[], $3::bigint[]) AS x(u, c)
    UNION SELECT m.user_id, m.channel_id FROM channel_member m WHERE m.user_id = ANY($4::bigint[])
)";

// The rows a message or a read changes: active members of channels ($1), (owner,
// channel) pairs ($2, $3). (A former member's row stops at the seq they left at.)
pub(super) const MESSAGE_KEYS: &str = "WITH keys(user_id, channel_id) AS (
    SELECT m.user_id, m.channel_id FROM channel_member m WHERE m.channel_id = ANY($1::bigint[]) AND m.left_at IS NULL
    UNION SELECT x.u, x.c FROM UNNEST($2::bigint[], $3::bigint[]) AS x(u, c)
)";

// (owner, contact) pairs ($1, $2), every contact row of owners ($3).
pub(super) const CONTACT_KEYS: &str = "WITH keys(user_id, contact_id) AS (
    SELECT x.u, x.c FROM UNNEST($1::bigint[], $2::bigint[]) AS x(u, c)
    UNION SELECT f.user_id, f.friend_id FROM friendship f WHERE f.user_id = ANY($3::bigint[])
)";

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
static COUNT_MESSAGE_KEYS: LazyLock<String> = LazyLock::new(|| count_and_plan(MESSAGE_KEYS));
static REFRESH_MESSAGES: LazyLock<String> =
    LazyLock::new(|| format!("{MESSAGE_KEYS}{}", views::MESSAGE_REFRESH.replace("{now}", "$4::bigint")));
static MISSING_MESSAGE_ROWS: LazyLock<String> =
    LazyLock::new(|| format!("{MESSAGE_KEYS}{}", views::MISSING_CONVERSATIONS));
static COUNT_CONTACT_KEYS: LazyLock<String> = LazyLock::new(|| count_and_plan(CONTACT_KEYS));
static REFRESH_CONTACTS: LazyLock<String> =
    LazyLock::new(|| format!("{CONTACT_KEYS}{}", views::CONTACT_REFRESH.replace("{now}", "$4::bigint")));

/// What the rest of a transaction plans with after a refresh.
const PLAN_DEFAULTS: &str = "SET LOCAL plan_cache_mode = auto; SET LOCAL enable_hashjoin = on;
     SET LOCAL enable_mergejoin = on; SET LOCAL enable_seqscan = on";

/// Counts the keys and sets the plan, runs the refresh, and resets the plan settings,
/// pipelined: one round trip (the server takes the three in order, so the refresh is
/// planned under the settings the count chose). Both statements are prepared first, so
/// they go out in this order. Returns the number of keys and the first column of the
/// rows written.
async fn planned_refresh(
    c: &PgConn,
    count_sql: &str,
    keys: &[&(dyn ToSql + Sync)],
    refresh_sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(i64, Vec<i64>), StoreError> {
    let count = c.prep(count_sql).await.map_err(pg_err)?;
    let refresh = c.prep(refresh_sql).await.map_err(pg_err)?;
    let (counted, rows, reset) =
        tokio::join!(c.query_one(&count, keys), c.query(&refresh, params), c.batch_execute(PLAN_DEFAULTS));
    let n: i64 = counted.map_err(pg_err)?.try_get(0).map_err(pg_err)?;
    let rows = rows.map_err(pg_err)?;
    reset.map_err(pg_err)?;
    Ok((n, rows.iter().map(|r| r.get::<_, i64>(0)).collect()))
}

/// The statements over a set of owners (`$1`), in PostgreSQL's terms.
pub(super) static OWNERS: LazyLock<views::OwnerStatements> =
    LazyLock::new(|| views::OwnerStatements::new("= ANY($1::bigint[])", "$2::bigint"));

impl ProjectionWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.apply_refresh", skip_all)]
    async fn apply_refresh(&mut self, r: &Refresh, now: i64) -> Result<(), StoreError> {
        let c = self.conn()?;
        let mut written = Vec::new();
        for step in refresh::steps(r) {
            match step {
                RefreshStep::ReverseChannels => {
                    let ch = ids(&r.reverse_channels);
                    let cte = "WITH rchannels(channel_id) AS (SELECT * FROM UNNEST($1::bigint[]))";
                    exec(c, &format!("{cte} {}", views::REVERSE_CHANNELS_DELETE), &[&ch]).await?;
                    let insert = views::REVERSE_CHANNELS_INSERT.replace("{now}", "$2::bigint");
                    exec(c, &format!("{cte} {insert}"), &[&ch, &now]).await?;
                }
                RefreshStep::ReverseContacts => {
                    let us: Vec<i64> = r.reverse_contacts.iter().map(|(u, _)| u.get()).collect();
                    let cs: Vec<i64> = r.reverse_contacts.iter().map(|(_, c)| c.get()).collect();
                    let cte = "WITH rpairs(user_id, contact_id) AS (SELECT * FROM UNNEST($1::bigint[], $2::bigint[]))";
                    exec(c, &format!("{cte} {}", views::REVERSE_CONTACTS_DELETE), &[&us, &cs]).await?;
                    let insert = views::REVERSE_CONTACTS_INSERT.replace("{now}", "$3::bigint");
                    exec(c, &format!("{cte} {insert}"), &[&us, &cs, &now]).await?;
                }
                RefreshStep::OwnerReverse => {
                    let o = ids(&r.owners);
                    exec(c, &OWNERS.reverse_conversations, &[&o, &now]).await?;
                    exec(c, &OWNERS.reverse_contacts, &[&o, &now]).await?;
                }
                RefreshStep::Profiles => written.extend(refresh_profiles(c, r, now).await?),
                RefreshStep::Conversations => {
                    let pairs = r.conversations.as_slice();
                    written.extend(refresh_conversations(c, &r.channels, pairs, &r.owners, now).await?);
                }
                RefreshStep::Messages => {
                    let us: Vec<i64> = r.message_conversations.iter().map(|(u, _)| u.get()).collect();
                    let cs: Vec<i64> = r.message_conversations.iter().map(|(_, c)| c.get()).collect();
                    let channels = ids(&r.message_channels);
                    let keys: [&(dyn ToSql + Sync); 3] = [&channels, &us, &cs];
                    let params: [&(dyn ToSql + Sync); 4] = [&channels, &us, &cs, &now];
                    let (n, rows) = planned_refresh(c, &COUNT_MESSAGE_KEYS, &keys, &REFRESH_MESSAGES, &params).await?;
                    // Every key's row was rewritten (a message changes all of them): none is
                    // missing. Otherwise rows that do not exist yet are not the message
                    // step's to create: their channels are refreshed whole.
                    let all_written = rows.len() as i64 == n;
                    written.extend(rows.into_iter().map(UserId::from));
                    if !all_written {
                        let missing = c.prep(&MISSING_MESSAGE_ROWS).await.map_err(pg_err)?;
                        let missing: Vec<ChannelId> = c
                            .query(&missing, &keys)
                            .await
                            .map_err(pg_err)?
                            .iter()
                            .map(|r| ChannelId::from(r.get::<_, i64>(0)))
                            .collect();
                        if !missing.is_empty() {
                            written.extend(refresh_conversations(c, &missing, &[], &[], now).await?);
                        }
                    }
                }
                RefreshStep::Contacts => {
                    let us: Vec<i64> = r.contacts.iter().map(|(u, _)| u.get()).collect();
                    let cs: Vec<i64> = r.contacts.iter().map(|(_, c)| c.get()).collect();
                    let owners = ids(&r.owners);
                    let keys: [&(dyn ToSql + Sync); 3] = [&us, &cs, &owners];
                    let params: [&(dyn ToSql + Sync); 4] = [&us, &cs, &owners, &now];
                    planned_refresh(c, &COUNT_CONTACT_KEYS, &keys, &REFRESH_CONTACTS, &params).await?;
                }
            }
        }
        self.touched.list_owners.extend(written);
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.delete_orphans", skip_all)]
    async fn delete_orphans(&mut self, owners: &[UserId]) -> Result<u64, StoreError> {
        let c = self.conn()?;
        let o = ids(owners);
        let mut n = 0;
        for sql in &OWNERS.orphan_deletes {
            n += exec(c, sql, &[&o]).await?;
        }
        Ok(n)
    }
}

/// The conversation rows of the members of `channels`, of the `pairs` and of the
/// `owners`, recomputed whole; returns the owners of the rows written.
async fn refresh_conversations(
    c: &PgConn,
    channels: &[ChannelId],
    pairs: &[(UserId, ChannelId)],
    owners: &[UserId],
    now: i64,
) -> Result<Vec<UserId>, StoreError> {
    let us: Vec<i64> = pairs.iter().map(|(u, _)| u.get()).collect();
    let cs: Vec<i64> = pairs.iter().map(|(_, c)| c.get()).collect();
    let (channels, owners) = (ids(channels), ids(owners));
    let keys: [&(dyn ToSql + Sync); 4] = [&channels, &us, &cs, &owners];
    let params: [&(dyn ToSql + Sync); 5] = [&channels, &us, &cs, &owners, &now];
    let (_, rows) = planned_refresh(c, &COUNT_CONVERSATION_KEYS, &keys, &REFRESH_CONVERSATIONS, &params).await?;
    Ok(rows.into_iter().map(UserId::from).collect())
}

/// Profile changes: only the profile-derived columns, per user whose profile changed
/// (one per profile event), conversations and contacts pipelined
/// (`views::PEER_PROFILE_*_ONE`). Returns the owners of the conversation rows written.
async fn refresh_profiles(c: &PgConn, r: &Refresh, now: i64) -> Result<Vec<UserId>, StoreError> {
    let mut written = Vec::new();
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
    Ok(written)
}
