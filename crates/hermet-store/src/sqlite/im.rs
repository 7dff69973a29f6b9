//! The IM core on SQLite. Same statements as PostgreSQL (shared text from `queries` and
//! `views`); key sets are JSON arrays read with `json_each`, and no row locks are needed
//! because SQLite's single writer serializes transactions.

use hermet_domain::channel::{Channel, Member, MemberRole};
use hermet_domain::contact::{ApplicationStatus, ContactApplication, Friendship};
use hermet_domain::id::{ApplicationId, ChannelId, UserId};
use hermet_domain::message::Message;
use hermet_domain::projection::Refresh;
use hermet_domain::user::{UserStatus, search_key};
use rusqlite::{Connection, OptionalExtension, Params, Row, params};

use super::{SqliteDatabase, SqliteTx};
use crate::ports::*;
use crate::queries::{self as q, sqlite_placeholders};
use crate::rows::*;
use crate::{StoreError, views};

pub(super) fn qmap<T, P: Params>(
    c: &Connection,
    sql: &str,
    p: P,
    f: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = c.prepare_cached(&sqlite_placeholders(sql))?;
    let rows = stmt.query_map(p, f)?;
    rows.collect()
}

pub(super) fn qopt<T, P: Params>(
    c: &Connection,
    sql: &str,
    p: P,
    f: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    c.prepare_cached(&sqlite_placeholders(sql))?.query_row(p, f).optional()
}

pub(super) fn exec<P: Params>(c: &Connection, sql: &str, p: P) -> rusqlite::Result<usize> {
    c.prepare_cached(&sqlite_placeholders(sql))?.execute(p)
}

pub(super) fn json_ids<T: Copy + Into<i64>>(v: &[T]) -> String {
    let ids: Vec<i64> = v.iter().map(|x| (*x).into()).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

fn json_pairs<A: Copy + Into<i64>, B: Copy + Into<i64>>(v: &[(A, B)]) -> String {
    let pairs: Vec<[i64; 2]> = v.iter().map(|(a, b)| [(*a).into(), (*b).into()]).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

fn status_text(s: Option<ApplicationStatus>) -> &'static str {
    s.map(|s| s.as_str()).unwrap_or("")
}

fn user_brief(r: &Row<'_>) -> rusqlite::Result<UserBrief> {
    let status: String = r.get(1)?;
    Ok(UserBrief {
        id: UserId(r.get(0)?),
        status: UserStatus::parse_db(&status).map_err(|e| r.bad(1, format!("{e:?}")))?,
        nickname: r.get(2)?,
        avatar: r.get(3)?,
    })
}

// The rows a refresh recomputes: members of channels (?1), (owner, channel) pairs (?2),
// every row of owners (?3). (Profile changes take views::PEER_PROFILE_*.)
const CONVERSATION_KEYS: &str = "WITH keys(user_id, channel_id) AS (
    SELECT m.user_id, m.channel_id FROM channel_member m WHERE m.channel_id IN (SELECT value FROM json_each(?1))
    UNION SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2)
    UNION SELECT m.user_id, m.channel_id FROM channel_member m WHERE m.user_id IN (SELECT value FROM json_each(?3))
)";

// (owner, contact) pairs (?1), every contact row of owners (?2).
const CONTACT_KEYS: &str = "WITH keys(user_id, contact_id) AS (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1)
    UNION SELECT f.user_id, f.friend_id FROM friendship f WHERE f.user_id IN (SELECT value FROM json_each(?2))
)";

impl ImReads for SqliteDatabase {
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, StoreError> {
        self.read(move |c| qopt(c, &q::CHANNEL_BY_ID, [id.get()], |r| channel_from(r))).await
    }

    async fn member(&self, channel: ChannelId, user: UserId) -> Result<Option<Member>, StoreError> {
        self.read(move |c| qopt(c, &q::MEMBER, [channel.get(), user.get()], |r| member_from(r))).await
    }

    async fn members_page(&self, channel: ChannelId, after_user: i64, limit: u32) -> Result<Vec<Member>, StoreError> {
        self.read(move |c| qmap(c, &q::MEMBERS_PAGE, [channel.get(), after_user, limit as i64], |r| member_from(r)))
            .await
    }

    async fn messages(&self, m: &MessageQuery) -> Result<Vec<Message>, StoreError> {
        let m = m.clone();
        self.read(move |c| {
            let sql = if m.descending { &q::MESSAGES_DESC } else { &q::MESSAGES_ASC };
            qmap(c, sql, [m.channel_id.get(), m.after_seq, m.before_seq, m.limit as i64], |r| message_from(r))
        })
        .await
    }

    async fn friendship(&self, user: UserId, friend: UserId) -> Result<Option<Friendship>, StoreError> {
        self.read(move |c| qopt(c, &q::FRIENDSHIP, [user.get(), friend.get()], |r| friendship_from(r))).await
    }

    async fn contact_applications(
        &self,
        user: UserId,
        incoming: bool,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> Result<Vec<ContactApplication>, StoreError> {
        self.read(move |c| {
            let sql = if incoming { &q::CONTACT_APPS_INCOMING } else { &q::CONTACT_APPS_OUTGOING };
            qmap(c, sql, params![user.get(), status_text(status), before_id, limit as i64], |r| {
                contact_application_from(r)
            })
        })
        .await
    }

    async fn channel_applications(
        &self,
        channel: ChannelId,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> Result<Vec<ChannelApplication>, StoreError> {
        self.read(move |c| {
            qmap(c, &q::CHANNEL_APPS, params![channel.get(), status_text(status), before_id, limit as i64], |r| {
                channel_application_from(r)
            })
        })
        .await
    }

    async fn conversations(&self, cq: &ConversationQuery) -> Result<Vec<ConversationRow>, StoreError> {
        let cq = cq.clone();
        self.read(move |c| {
            let t = cq.conversation_type.map(|t| t.as_str()).unwrap_or("");
            let (has_after, (p, a, id)) = match cq.after {
                Some(k) => (true, k),
                None => (false, (false, 0, 0)),
            };
            qmap(
                c,
                &q::CONVERSATIONS,
                params![cq.user_id.get(), t, cq.unread_only, has_after, p, a, id, cq.limit as i64],
                |r| conversation_from(r),
            )
        })
        .await
    }

    async fn conversation(&self, user: UserId, channel: ChannelId) -> Result<Option<ConversationRow>, StoreError> {
        self.read(move |c| qopt(c, &q::CONVERSATION, [user.get(), channel.get()], |r| conversation_from(r))).await
    }

    async fn total_unread(&self, user: UserId) -> Result<i64, StoreError> {
        self.read(move |c| {
            c.prepare_cached(&sqlite_placeholders(&q::TOTAL_UNREAD))?.query_row([user.get()], |r| r.get(0))
        })
        .await
    }

    async fn large_groups(&self, user: UserId) -> Result<Vec<ChannelId>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sqlite_placeholders(q::LARGE_GROUPS))?;
            let rows = stmt.query_map([user.get()], |r| r.get::<_, i64>(0))?;
            rows.map(|r| r.map(ChannelId::from)).collect()
        })
        .await
    }

    async fn contact(&self, user: UserId, contact: UserId) -> Result<Option<ContactRow>, StoreError> {
        self.read(move |c| qopt(c, &q::CONTACT, [user.get(), contact.get()], |r| contact_from(r))).await
    }

    async fn contacts(&self, cq: &ContactQuery) -> Result<Vec<ContactRow>, StoreError> {
        let cq = cq.clone();
        self.read(move |c| {
            let (has_after, (s, n, id)) = match &cq.after {
                Some((s, n, id)) => (true, (*s, n.clone(), *id)),
                None => (false, (false, String::new(), 0)),
            };
            qmap(
                c,
                &q::CONTACTS,
                params![
                    cq.user_id.get(),
                    cq.group.as_deref().unwrap_or(""),
                    cq.initial.as_deref().unwrap_or(""),
                    has_after,
                    s,
                    n,
                    id,
                    cq.limit as i64
                ],
                |r| contact_from(r),
            )
        })
        .await
    }
}

impl ConsistencyReads for SqliteDatabase {
    async fn user_ids_after(&self, after: i64, limit: u32) -> Result<Vec<UserId>, StoreError> {
        self.read(move |c| qmap(c, q::USER_IDS_AFTER, [after, limit as i64], |r| Ok(UserId(r.get(0)?)))).await
    }

    async fn expected_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!("{CONVERSATION_KEYS}{}", &*views::CONVERSATION_EXPECTED);
            qmap(c, &sql, params!["[]", "[]", o], |r| conversation_from(r))
        })
        .await
    }

    async fn stored_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!(
                "SELECT {} FROM user_conversation_view WHERE user_id IN (SELECT value FROM json_each(?1))",
                views::conversation_select("")
            );
            qmap(c, &sql, [o], |r| conversation_from(r))
        })
        .await
    }

    async fn expected_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!("{CONTACT_KEYS}{}", &*views::CONTACT_EXPECTED);
            qmap(c, &sql, params!["[]", o], |r| contact_from(r))
        })
        .await
    }

    async fn stored_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!(
                "SELECT {} FROM user_contact_view WHERE user_id IN (SELECT value FROM json_each(?1))",
                views::contact_select("")
            );
            qmap(c, &sql, [o], |r| contact_from(r))
        })
        .await
    }

    async fn reverse_conversations(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64, i64)>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let expected = qmap(
                c,
                "SELECT pm.user_id, m.user_id, m.channel_id FROM channel_member m
                 JOIN channel ch ON ch.id = m.channel_id AND ch.channel_type = 'single'
                 JOIN channel_member pm ON pm.channel_id = m.channel_id AND pm.user_id <> m.user_id
                 WHERE m.user_id IN (SELECT value FROM json_each(?1))",
                [&o],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let stored = qmap(
                c,
                "SELECT peer_user_id, owner_user_id, channel_id FROM conversation_reverse_index
                 WHERE owner_user_id IN (SELECT value FROM json_each(?1))",
                [&o],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok((expected, stored))
        })
        .await
    }

    async fn reverse_contacts(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64)>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let expected = qmap(
                c,
                "SELECT friend_id, user_id FROM friendship WHERE user_id IN (SELECT value FROM json_each(?1))",
                [&o],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let stored = qmap(
                c,
                "SELECT contact_user_id, owner_user_id FROM contact_reverse_index WHERE owner_user_id IN (SELECT value FROM json_each(?1))",
                [&o],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok((expected, stored))
        })
        .await
    }
}

const USERS_BY_IDS: &str =
    "SELECT id, status, nickname, avatar FROM users WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id";

impl Locks for SqliteTx {
    async fn lock_users(&mut self, users: &[UserId], _lock: bool) -> Result<Vec<UserBrief>, StoreError> {
        let u = json_ids(users);
        self.run(move |c| qmap(c, USERS_BY_IDS, [u], user_brief)).await
    }

    async fn inactive_users(&mut self, users: &[UserId]) -> Result<Vec<(UserId, Option<UserStatus>)>, StoreError> {
        let u = json_ids(users);
        let rows: Vec<(i64, Option<String>)> = self
            .run(move |c| {
                qmap(
                    c,
                    "SELECT x.value, u.status FROM json_each(?1) x LEFT JOIN users u ON u.id = x.value
                     WHERE u.id IS NULL OR u.status <> 'active'",
                    [u],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .await?;
        rows.into_iter()
            .map(|(id, s)| {
                let status = s.as_deref().map(UserStatus::parse_db).transpose();
                Ok((UserId(id), status.map_err(|e| StoreError::other(anyhow::anyhow!("{e:?}")))?))
            })
            .collect()
    }

    async fn lock_channel(&mut self, id: ChannelId, _exclusive: bool) -> Result<Option<Channel>, StoreError> {
        self.run(move |c| qopt(c, &q::CHANNEL_BY_ID, [id.get()], |r| channel_from(r))).await
    }

    async fn lock_friendship(
        &mut self,
        user: UserId,
        friend: UserId,
        _exclusive: bool,
    ) -> Result<Option<Friendship>, StoreError> {
        self.run(move |c| qopt(c, &q::FRIENDSHIP, [user.get(), friend.get()], |r| friendship_from(r))).await
    }

    async fn lock_member(&mut self, channel: ChannelId, user: UserId) -> Result<Option<Member>, StoreError> {
        self.run(move |c| qopt(c, &q::MEMBER, [channel.get(), user.get()], |r| member_from(r))).await
    }

    /// One closure on the connection: keyed lookups by prepared statement (in process,
    /// no round trips; the transaction already holds SQLite's single write lock).
    async fn lock_for_sends(&mut self, l: &SendBatchLocks) -> Result<SendBatchLocked, StoreError> {
        let l = l.clone();
        self.run(move |c| {
            let all: Vec<UserId> = l.share_users.iter().chain(&l.read_users).copied().collect();
            let users = qmap(c, USERS_BY_IDS, [json_ids(&all)], user_brief)?;
            let mut channels = Vec::new();
            for ch in &l.channels {
                channels.extend(qopt(c, &q::CHANNEL_BY_ID, [ch.get()], |r| channel_from(r))?);
            }
            let mut friendships = Vec::new();
            for (u, f) in &l.friendships {
                friendships.extend(qopt(c, &q::FRIENDSHIP, [u.get(), f.get()], |r| friendship_from(r))?);
            }
            let mut members = Vec::new();
            for (ch, u) in &l.members {
                members.extend(qopt(c, &q::MEMBER, [ch.get(), u.get()], |r| member_from(r))?);
            }
            let mut sent = Vec::new();
            for (u, id) in &l.client_ids {
                sent.extend(qopt(c, &q::MESSAGE_BY_CLIENT_ID, params![u.get(), id], |r| message_from(r))?);
            }
            let mut mentioned = Vec::new();
            for (ch, u) in &l.mentioned {
                let active = qopt(
                    c,
                    "SELECT 1 FROM channel_member WHERE channel_id = ?1 AND user_id = ?2 AND left_at IS NULL",
                    [ch.get(), u.get()],
                    |r| r.get::<_, i64>(0),
                )?;
                if active.is_some() {
                    mentioned.push((*ch, *u));
                }
            }
            Ok(SendBatchLocked { users, channels, friendships, members, sent, mentioned })
        })
        .await
    }
}

impl ChannelWrites for SqliteTx {
    async fn single_channel(&mut self, pair: &str) -> Result<Option<Channel>, StoreError> {
        let pair = pair.to_owned();
        self.run(move |c| qopt(c, &q::CHANNEL_BY_PAIR, [pair], |r| channel_from(r))).await
    }

    async fn active_members(&mut self, channel: ChannelId, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        let u = json_ids(users);
        self.run(move |c| {
            qmap(
                c,
                "SELECT user_id FROM channel_member WHERE channel_id = ?1 AND user_id IN (SELECT value FROM json_each(?2)) AND left_at IS NULL",
                params![channel.get(), u],
                |r| Ok(UserId(r.get(0)?)),
            )
        })
        .await
    }

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

    async fn insert_new_group(&mut self, g: &NewGroupRows<'_>) -> Result<(), StoreError> {
        self.upsert_members(g.channel, g.members, g.now).await?;
        if !g.views {
            return Ok(());
        }
        let (channel, name, avatar) = (g.channel.get(), g.name.to_owned(), g.avatar.to_owned());
        let (rows, rd, now): (Vec<(i64, i64)>, bool, i64) =
            (g.members.iter().map(|m| (m.user_id.get(), m.joined_at)).collect(), g.read_diffusion, g.now);
        // As CONVERSATION_BODY computes them for a group with no message, read record or
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

    async fn upsert_members(&mut self, channel: ChannelId, members: &[NewMember], now: i64) -> Result<(), StoreError> {
        let members = members.to_vec();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO channel_member (id, channel_id, user_id, role, group_nickname, joined_at, join_seq, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?7, ?7)
                 ON CONFLICT (channel_id, user_id) DO UPDATE SET role = excluded.role, group_nickname = '',
                   joined_at = excluded.joined_at, join_seq = excluded.join_seq, left_at = NULL, left_seq = NULL,
                   updated_at = excluded.updated_at",
            )?;
            for m in &members {
                stmt.execute(params![m.id, channel.get(), m.user_id.get(), m.role.as_str(), m.joined_at, m.join_seq, now])?;
            }
            Ok(())
        })
        .await
    }

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

    async fn oldest_admin(&mut self, channel: ChannelId, except: UserId) -> Result<Option<UserId>, StoreError> {
        self.run(move |c| qopt(c, q::OLDEST_ADMIN, [channel.get(), except.get()], |r| Ok(UserId(r.get(0)?)))).await
    }

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

    async fn archive_channel(&mut self, channel: ChannelId, now: i64) -> Result<(), StoreError> {
        self.run(move |c| exec(c, q::ARCHIVE_CHANNEL, params![channel.get(), now]).map(|_| ())).await
    }

    async fn append_messages(&mut self, messages: &[Message], now: i64) -> Result<(), StoreError> {
        let messages = messages.to_vec();
        self.run(move |c| {
            for m in &messages {
                let (channel, sender) = (m.channel_id.get(), m.sender_id.get());
                let mentions = serde_json::to_string(&m.mentions).unwrap_or_else(|_| "[]".into());
                exec(
                    c,
                    q::INSERT_MESSAGE,
                    params![
                        m.id.get(),
                        channel,
                        m.seq,
                        sender,
                        m.sender_name,
                        m.msg_type.as_str(),
                        m.content.to_string(),
                        mentions,
                        m.mention_all,
                        hermet_domain::message::preview(m.msg_type, &m.content),
                        m.client_msg_id,
                        m.created_at
                    ],
                )?;
                let mut stmt = c.prepare_cached(
                    "INSERT INTO message_mention (user_id, channel_id, seq, message_id) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?;
                for u in &m.mentions {
                    stmt.execute(params![u.get(), channel, m.seq, m.id.get()])?;
                }
            }
            for (ch, seq) in crate::last_seqs(&messages, |m| m.channel_id.get()) {
                exec(c, q::SET_LAST_SEQ, params![ch, seq, now])?;
            }
            for ((user, ch), seq) in crate::last_seqs(&messages, |m| (m.sender_id.get(), m.channel_id.get())) {
                c.prepare_cached(&sqlite_placeholders(q::ADVANCE_READ))?
                    .query_row(params![user, ch, seq, now], |r| r.get::<_, i64>(0))?;
            }
            Ok(())
        })
        .await
    }

    async fn advance_read(&mut self, user: UserId, channel: ChannelId, seq: i64, now: i64) -> Result<i64, StoreError> {
        self.run(move |c| {
            c.prepare_cached(&sqlite_placeholders(q::ADVANCE_READ))?
                .query_row(params![user.get(), channel.get(), seq, now], |r| r.get(0))
        })
        .await
    }

    async fn setting(&mut self, user: UserId, channel: ChannelId) -> Result<ConversationSetting, StoreError> {
        self.run(move |c| {
            qopt(c, q::SETTING, [user.get(), channel.get()], |r| {
                Ok(ConversationSetting {
                    is_pinned: r.get(0)?,
                    is_muted: r.get(1)?,
                    is_hidden: r.get(2)?,
                    hidden_seq: r.get(3)?,
                    closed_at: r.get(4)?,
                    closed_seq: r.get(5)?,
                })
            })
        })
        .await
        .map(Option::unwrap_or_default)
    }

    async fn save_setting(
        &mut self,
        user: UserId,
        channel: ChannelId,
        s: &ConversationSetting,
        now: i64,
    ) -> Result<(), StoreError> {
        let s = s.clone();
        self.run(move |c| {
            exec(
                c,
                q::SAVE_SETTING,
                params![
                    user.get(),
                    channel.get(),
                    s.is_pinned,
                    s.is_muted,
                    s.is_hidden,
                    s.hidden_seq,
                    s.closed_at,
                    s.closed_seq,
                    now
                ],
            )
            .map(|_| ())
        })
        .await
    }

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

    async fn lock_channel_application(&mut self, id: ApplicationId) -> Result<Option<ChannelApplication>, StoreError> {
        self.run(move |c| qopt(c, &q::CHANNEL_APP_BY_ID, [id.get()], |r| channel_application_from(r))).await
    }

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

impl ContactWrites for SqliteTx {
    async fn upsert_friendships(&mut self, rows: &[Friendship], now: i64) -> Result<(), StoreError> {
        let rows = rows.to_vec();
        self.run(move |c| {
            for f in &rows {
                let tags = serde_json::to_string(&f.tags).unwrap_or_else(|_| "[]".into());
                exec(
                    c,
                    q::UPSERT_FRIENDSHIP,
                    params![
                        f.user_id.get(),
                        f.friend_id.get(),
                        f.remark_name,
                        search_key(&f.remark_name),
                        f.source.as_str(),
                        tags,
                        f.group_name,
                        f.is_starred,
                        f.is_blocked,
                        f.added_at,
                        f.deleted_at,
                        now
                    ],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn update_friendship(&mut self, f: &Friendship, now: i64) -> Result<(), StoreError> {
        self.upsert_friendships(std::slice::from_ref(f), now).await
    }

    async fn pending_contact_application(
        &mut self,
        applicant: UserId,
        target: UserId,
    ) -> Result<Option<ContactApplication>, StoreError> {
        self.run(move |c| {
            qopt(c, &q::CONTACT_APP_PENDING, [applicant.get(), target.get()], |r| contact_application_from(r))
        })
        .await
    }

    async fn insert_contact_application(&mut self, a: &ContactApplication) -> Result<(), StoreError> {
        let a = a.clone();
        self.run(move |c| {
            exec(
                c,
                q::INSERT_CONTACT_APP,
                params![
                    a.id.get(),
                    a.applicant_id.get(),
                    a.target_id.get(),
                    a.message,
                    a.source.as_str(),
                    a.status.as_str(),
                    a.created_at,
                    a.updated_at,
                    a.reviewed_at
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn lock_contact_application(&mut self, id: ApplicationId) -> Result<Option<ContactApplication>, StoreError> {
        self.run(move |c| qopt(c, &q::CONTACT_APP_BY_ID, [id.get()], |r| contact_application_from(r))).await
    }

    async fn update_contact_application(&mut self, a: &ContactApplication) -> Result<(), StoreError> {
        let a = a.clone();
        self.run(move |c| {
            exec(
                c,
                q::UPDATE_CONTACT_APP,
                params![a.id.get(), a.message, a.source.as_str(), a.status.as_str(), a.updated_at, a.reviewed_at],
            )
            .map(|_| ())
        })
        .await
    }
}

impl ProjectionWrites for SqliteTx {
    async fn apply_refresh(&mut self, r: &Refresh, now: i64) -> Result<(), StoreError> {
        let r = r.clone();
        let written = self.run(move |c| {
            let mut written = Vec::new();
            if !r.reverse_channels.is_empty() {
                let ch = json_ids(&r.reverse_channels);
                let cte = "WITH rchannels(channel_id) AS (SELECT value FROM json_each(?1))";
                c.prepare_cached(&format!("{cte} {}", views::REVERSE_CHANNELS_DELETE))?.execute([&ch])?;
                let insert = views::REVERSE_CHANNELS_INSERT.replace("{now}", "?2");
                c.prepare_cached(&format!("{cte} {insert}"))?.execute(params![ch, now])?;
            }
            if !r.reverse_contacts.is_empty() {
                let pairs = json_pairs(&r.reverse_contacts);
                let cte = "WITH rpairs(user_id, contact_id) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))";
                c.prepare_cached(&format!("{cte} {}", views::REVERSE_CONTACTS_DELETE))?.execute([&pairs])?;
                let insert = views::REVERSE_CONTACTS_INSERT.replace("{now}", "?2");
                c.prepare_cached(&format!("{cte} {insert}"))?.execute(params![pairs, now])?;
            }
            if !r.owners.is_empty() {
                let o = json_ids(&r.owners);
                c.prepare_cached(views::OWNER_REVERSE_CONVERSATIONS_SQLITE)?.execute(params![o, now])?;
                c.prepare_cached(views::OWNER_REVERSE_CONTACTS_SQLITE)?.execute(params![o, now])?;
            }
            // Profile changes: only the profile-derived columns (views::PEER_PROFILE_*).
            let profile = "WITH p(user_id) AS (SELECT value FROM json_each(?1))";
            if !r.peers.is_empty() {
                let sql = format!("{profile} {}", views::PEER_PROFILE_CONVERSATIONS.replace("{now}", "?2"));
                let mut stmt = c.prepare_cached(&sql)?;
                for u in stmt.query_map(params![json_ids(&r.peers), now], |row| row.get::<_, i64>(0))? {
                    written.push(UserId::from(u?));
                }
            }
            if !r.contact_of.is_empty() {
                let sql = format!("{profile} {}", views::PEER_PROFILE_CONTACTS.replace("{now}", "?2"));
                c.prepare_cached(&sql)?.execute(params![json_ids(&r.contact_of), now])?;
            }
            if !(r.channels.is_empty() && r.conversations.is_empty() && r.owners.is_empty()) {
                let sql = format!("{CONVERSATION_KEYS}{}", views::CONVERSATION_REFRESH.replace("{now}", "?4"));
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt.query_map(
                    params![json_ids(&r.channels), json_pairs(&r.conversations), json_ids(&r.owners), now],
                    |row| row.get::<_, i64>(0),
                )?;
                for u in rows {
                    written.push(UserId::from(u?));
                }
            }
            if !(r.contacts.is_empty() && r.owners.is_empty()) {
                let sql = format!("{CONTACT_KEYS}{}", views::CONTACT_REFRESH.replace("{now}", "?3"));
                let mut stmt = c.prepare_cached(&sql)?;
                let mut rows = stmt.query(params![json_pairs(&r.contacts), json_ids(&r.owners), now])?;
                while rows.next()?.is_some() {}
            }
            Ok(written)
        })
        .await?;
        self.touched.list_owners.extend(written);
        Ok(())
    }

    async fn delete_orphans(&mut self, owners: &[UserId]) -> Result<u64, StoreError> {
        let o = json_ids(owners);
        self.run(move |c| {
            let mut n = 0;
            n += c.execute(
                "DELETE FROM user_conversation_view WHERE user_id IN (SELECT value FROM json_each(?1))
                 AND NOT EXISTS (SELECT 1 FROM channel_member m WHERE m.user_id = user_conversation_view.user_id AND m.channel_id = user_conversation_view.channel_id)",
                [&o],
            )?;
            n += c.execute(
                "DELETE FROM user_contact_view WHERE user_id IN (SELECT value FROM json_each(?1))
                 AND NOT EXISTS (SELECT 1 FROM friendship f WHERE f.user_id = user_contact_view.user_id AND f.friend_id = user_contact_view.contact_id)",
                [&o],
            )?;
            n += c.execute(
                "DELETE FROM conversation_reverse_index WHERE owner_user_id IN (SELECT value FROM json_each(?1))
                 AND NOT EXISTS (SELECT 1 FROM channel_member m JOIN channel ch ON ch.id = m.channel_id AND ch.channel_type = 'single'
                                 JOIN channel_member pm ON pm.channel_id = m.channel_id AND pm.user_id = conversation_reverse_index.peer_user_id
                                 WHERE m.user_id = conversation_reverse_index.owner_user_id AND m.channel_id = conversation_reverse_index.channel_id
                                   AND pm.user_id <> m.user_id)",
                [&o],
            )?;
            n += c.execute(
                "DELETE FROM contact_reverse_index WHERE owner_user_id IN (SELECT value FROM json_each(?1))
                 AND NOT EXISTS (SELECT 1 FROM friendship f WHERE f.user_id = contact_reverse_index.owner_user_id AND f.friend_id = contact_reverse_index.contact_user_id)",
                [&o],
            )?;
            Ok(n as u64)
        })
        .await
    }
}
