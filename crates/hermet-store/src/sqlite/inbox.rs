//! The realtime gateway's storage on SQLite: per-user cursors, the inbox, catch-up.

use std::sync::LazyLock;

use hermet_domain::id::{ChannelId, UserId};
use rusqlite::params;

use super::statements::{exec, json_ids, json_pairs, qmap, qopt};
use super::{SqliteDatabase, SqliteTx};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;

impl InboxReads for SqliteDatabase {
    #[tracing::instrument(level = "debug", name = "sqlite.inbox_head", skip_all)]
    async fn inbox_head(&self, user: UserId) -> Result<i64, StoreError> {
        let n = self.read(move |c| qopt(c, q::INBOX_HEAD, [user.get()], |r| r.get(0))).await?;
        Ok(n.unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "sqlite.inbox_after", skip_all)]
    async fn inbox_after(&self, user: UserId, after: i64, limit: u32) -> Result<Vec<InboxEntry>, StoreError> {
        self.read(move |c| qmap(c, q::INBOX_AFTER, params![user.get(), after, limit as i64], |r| inbox_entry_from(r)))
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.conversations_of", skip_all)]
    async fn conversations_of(&self, pairs: &[(UserId, ChannelId)]) -> Result<Vec<ConversationRow>, StoreError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let p = json_pairs(pairs);
        self.read(move |c| {
            static SQL: LazyLock<String> = LazyLock::new(|| {
                crate::views::pair_conversations(
                    "(user_id, channel_id) IN
                     (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each($1))",
                )
            });
            qmap(c, &SQL, params![p], |r| conversation_from(r))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.conversations_changed", skip_all)]
    async fn conversations_changed(
        &self,
        user: UserId,
        since: i64,
        limit: u32,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        self.read(move |c| {
            qmap(c, &q::CONVERSATIONS_CHANGED, params![user.get(), since, limit as i64], |r| conversation_from(r))
        })
        .await
    }
}

impl InboxWrites for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.append_inbox", skip_all)]
    async fn append_inbox(
        &mut self,
        events: &[(i64, &[UserId])],
        now: i64,
    ) -> Result<Vec<Vec<(UserId, i64)>>, StoreError> {
        let events: Vec<(i64, String)> = events.iter().map(|(e, users)| (*e, json_ids(users))).collect();
        self.run(move |c| {
            // Per event, two set-based statements (SQLite has no data-modifying CTEs) on
            // the exclusive writer connection, so nothing moves the heads in between and
            // a user's entries follow the events' order. Users who have the event already
            // are left out of both (a replay, a redelivered batch).
            let fresh = "SELECT value FROM json_each(?1)
                 WHERE NOT EXISTS (SELECT 1 FROM user_inbox i WHERE i.user_id = value AND i.event_id = ?2)";
            let heads = format!(
                "INSERT INTO user_inbox_head (user_id, seq) SELECT value, 1 FROM ({fresh}) WHERE true
                 ON CONFLICT (user_id) DO UPDATE SET seq = seq + 1"
            );
            let entries = format!(
                "INSERT INTO user_inbox (user_id, seq, event_id, created_at)
                 SELECT user_id, seq, ?2, ?3 FROM user_inbox_head WHERE user_id IN ({fresh})
                 RETURNING user_id, seq"
            );
            let mut out = Vec::with_capacity(events.len());
            for (event_id, u) in &events {
                if u == "[]" {
                    out.push(Vec::new());
                    continue;
                }
                exec(c, &heads, params![u, event_id])?;
                out.push(qmap(c, &entries, params![u, event_id, now], |r| user_cursor_from(r))?);
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.prune_inbox", skip_all)]
    async fn prune_inbox(&mut self, before: i64, keep: i64, limit: u32) -> Result<u64, StoreError> {
        self.run(move |c| exec(c, q::PRUNE_INBOX, params![before, keep, limit as i64]).map(|n| n as u64)).await
    }
}
