//! The realtime gateway's storage on PostgreSQL: per-user cursors, the inbox, catch-up.
//! Reads go to the primary: catch-up must see every committed entry (a replica may lag).

use std::sync::LazyLock;

use hermet_domain::id::{ChannelId, UserId};

use super::statements::{exec, ids, query_map, query_opt};
use super::{PgDatabase, PgTx};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;

impl InboxReads for PgDatabase {
    #[tracing::instrument(level = "debug", name = "postgres.inbox_head", skip_all)]
    async fn inbox_head(&self, user: UserId) -> Result<i64, StoreError> {
        let c = self.write_conn().await?;
        Ok(query_opt(&c, q::INBOX_HEAD, &[&user.get()], |r| r.int(0)).await?.unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "postgres.inbox_after", skip_all)]
    async fn inbox_after(&self, user: UserId, after: i64, limit: u32) -> Result<Vec<InboxEntry>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, q::INBOX_AFTER, &[&user.get(), &after, &(limit as i64)], inbox_entry_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.channel_conversations", skip_all)]
    async fn channel_conversations(
        &self,
        channel: ChannelId,
        users: &[UserId],
    ) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.write_conn().await?;
        static SQL: LazyLock<String> =
            LazyLock::new(|| crate::views::channel_conversations("user_id = ANY($2::bigint[])"));
        query_map(&c, &SQL, &[&channel.get(), &ids(users)], conversation_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.conversations_changed", skip_all)]
    async fn conversations_changed(
        &self,
        user: UserId,
        since: i64,
        limit: u32,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, &q::CONVERSATIONS_CHANGED, &[&user.get(), &since, &(limit as i64)], conversation_from).await
    }
}

impl InboxWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.append_inbox", skip_all)]
    async fn append_inbox(
        &mut self,
        users: &[UserId],
        event_id: i64,
        now: i64,
    ) -> Result<Vec<(UserId, i64)>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.conn()?;
        // One statement for the whole audience; users come sorted, so concurrent appends
        // lock the head rows in the same order. Users who have the event already are
        // left out (a replay, a redelivered batch): they get no new cursor.
        let stmt = c
            .prep(
                "WITH heads AS (
                     INSERT INTO user_inbox_head (user_id, seq)
                     SELECT u, 1 FROM UNNEST($1::bigint[]) AS u
                     WHERE NOT EXISTS (SELECT 1 FROM user_inbox i WHERE i.user_id = u AND i.event_id = $2)
                     ORDER BY u
                     ON CONFLICT (user_id) DO UPDATE SET seq = user_inbox_head.seq + 1
                     RETURNING user_id, seq)
                 INSERT INTO user_inbox (user_id, seq, event_id, created_at)
                 SELECT user_id, seq, $2, $3 FROM heads RETURNING user_id, seq",
            )
            .await
            .map_err(super::pg_err)?;
        let rows = c.query(&stmt, &[&ids(users), &event_id, &now]).await.map_err(super::pg_err)?;
        rows.iter().map(user_cursor_from).collect()
    }

    #[tracing::instrument(level = "debug", name = "postgres.prune_inbox", skip_all)]
    async fn prune_inbox(&mut self, before: i64, keep: i64, limit: u32) -> Result<u64, StoreError> {
        let c = self.conn()?;
        exec(c, q::PRUNE_INBOX, &[&before, &keep, &(limit as i64)]).await
    }
}
