//! Locks on SQLite: plain reads, as the transaction already holds SQLite's single write
//! lock (taken by `BEGIN IMMEDIATE`).

use hermet_domain::channel::{Channel, Member};
use hermet_domain::contact::Friendship;
use hermet_domain::id::{ChannelId, UserId};
use hermet_domain::user::UserStatus;
use std::sync::LazyLock;

use rusqlite::params;

use super::SqliteTx;
use super::statements::{json_ids, qmap, qopt};
use crate::StoreError;
use crate::ports::*;
use crate::queries::{self as q};
use crate::rows::*;

static USERS_BY_IDS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {USER_BRIEF_COLUMNS} FROM users WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id")
});

impl Locks for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.lock_users", skip_all)]
    async fn lock_users(&mut self, users: &[UserId], _lock: bool) -> Result<Vec<UserBrief>, StoreError> {
        let u = json_ids(users);
        self.run(move |c| qmap(c, &USERS_BY_IDS, [u], |r| user_brief_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.inactive_users", skip_all)]
    async fn inactive_users(&mut self, users: &[UserId]) -> Result<Vec<(UserId, Option<UserStatus>)>, StoreError> {
        let u = json_ids(users);
        self.run(move |c| {
            qmap(
                c,
                "SELECT x.value, u.status FROM json_each(?1) x LEFT JOIN users u ON u.id = x.value
                 WHERE u.id IS NULL OR u.status <> 'active'",
                [u],
                |r| inactive_user_from(r),
            )
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.lock_channel", skip_all)]
    async fn lock_channel(&mut self, id: ChannelId, _exclusive: bool) -> Result<Option<Channel>, StoreError> {
        self.run(move |c| qopt(c, &q::CHANNEL_BY_ID, [id.get()], |r| channel_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.lock_friendship", skip_all)]
    async fn lock_friendship(
        &mut self,
        user: UserId,
        friend: UserId,
        _exclusive: bool,
    ) -> Result<Option<Friendship>, StoreError> {
        self.run(move |c| qopt(c, &q::FRIENDSHIP, [user.get(), friend.get()], |r| friendship_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.lock_member", skip_all)]
    async fn lock_member(&mut self, channel: ChannelId, user: UserId) -> Result<Option<Member>, StoreError> {
        self.run(move |c| qopt(c, &q::MEMBER, [channel.get(), user.get()], |r| member_from(r))).await
    }

    /// One closure on the connection: keyed lookups by prepared statement (in process,
    /// no round trips; the transaction already holds SQLite's single write lock).
    #[tracing::instrument(level = "debug", name = "sqlite.lock_for_sends", skip_all)]
    async fn lock_for_sends(&mut self, l: &SendBatchLocks) -> Result<SendBatchLocked, StoreError> {
        let l = l.clone();
        self.run(move |c| {
            let all: Vec<UserId> = l.share_users.iter().chain(&l.read_users).copied().collect();
            let users = qmap(c, &USERS_BY_IDS, [json_ids(&all)], |r| user_brief_from(r))?;
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
