//! The realtime gateway's storage on PostgreSQL: per-user cursors, the inbox, catch-up.
//! Reads go to the primary: catch-up must see every committed entry (a replica may lag);
//! the conversation rows through the read pool while it is on the primary (generic plans).

use std::sync::LazyLock;

use hermet_domain::id::{ChannelId, UserId};

use super::statements::{exec, query_map, query_opt};
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

    #[tracing::instrument(level = "debug", name = "postgres.conversations_of", skip_all)]
    async fn conversations_of(&self, pairs: &[(UserId, ChannelId)]) -> Result<Vec<ConversationRow>, StoreError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.primary_read_conn().await?;
        static SQL: LazyLock<String> = LazyLock::new(|| {
            crate::views::pair_conversations(
                "(user_id, channel_id) IN (SELECT * FROM UNNEST($1::bigint[], $2::bigint[]))",
            )
        });
        let us: Vec<i64> = pairs.iter().map(|(u, _)| u.get()).collect();
        let cs: Vec<i64> = pairs.iter().map(|(_, c)| c.get()).collect();
        query_map(&c, &SQL, &[&us, &cs], conversation_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.conversations_changed", skip_all)]
    async fn conversations_changed(
        &self,
        user: UserId,
        since: i64,
        limit: u32,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.primary_read_conn().await?;
        query_map(&c, &q::CONVERSATIONS_CHANGED, &[&user.get(), &since, &(limit as i64)], conversation_from).await
    }
}

/// `$1` users and `$2` their events (one pair per entry, events in order), `$3` now.
const APPEND_INBOX: &str = "WITH fresh AS (
         SELECT x.u, x.e, x.o FROM UNNEST($1::bigint[], $2::bigint[]) WITH ORDINALITY AS x(u, e, o)
         WHERE NOT EXISTS (SELECT 1 FROM user_inbox i WHERE i.user_id = x.u AND i.event_id = x.e)),
     counted AS (SELECT u, COUNT(*) AS n FROM fresh GROUP BY u),
     heads AS (
         INSERT INTO user_inbox_head (user_id, seq)
         SELECT u, n FROM counted ORDER BY u
         ON CONFLICT (user_id) DO UPDATE SET seq = user_inbox_head.seq + excluded.seq
         RETURNING user_id, seq)
     INSERT INTO user_inbox (user_id, seq, event_id, created_at)
     SELECT f.u, h.seq - k.n + row_number() OVER (PARTITION BY f.u ORDER BY f.o), f.e, $3
     FROM fresh f JOIN counted k ON k.u = f.u JOIN heads h ON h.user_id = f.u
     RETURNING user_id, seq, event_id";

impl InboxWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.append_inbox", skip_all)]
    async fn append_inbox(
        &mut self,
        events: &[(i64, &[UserId])],
        now: i64,
    ) -> Result<Vec<Vec<(UserId, i64)>>, StoreError> {
        let (mut us, mut es) = (Vec::new(), Vec::new());
        for (event, users) in events {
            us.extend(users.iter().map(|u| u.get()));
            es.extend(std::iter::repeat_n(*event, users.len()));
        }
        let mut out: Vec<Vec<(UserId, i64)>> = events.iter().map(|_| Vec::new()).collect();
        if us.is_empty() {
            return Ok(out);
        }
        let c = self.conn()?;
        // One statement for every event of a consumer batch: each user's head moves on by
        // the number of its new entries (heads locked in user order, so concurrent appends
        // cannot deadlock), and the entries are numbered below the new head in the order
        // the events were given.
        let stmt = c.prep(APPEND_INBOX).await.map_err(super::pg_err)?;
        let rows = c.query(&stmt, &[&us, &es, &now]).await.map_err(super::pg_err)?;
        let index: std::collections::HashMap<i64, usize> =
            events.iter().enumerate().map(|(i, (e, _))| (*e, i)).collect();
        for r in &rows {
            let event: i64 = r.try_get(2).map_err(super::pg_err)?;
            if let Some(&i) = index.get(&event) {
                out[i].push(user_cursor_from(r)?);
            }
        }
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "postgres.prune_inbox", skip_all)]
    async fn prune_inbox(&mut self, before: i64, keep: i64, limit: u32) -> Result<u64, StoreError> {
        let c = self.conn()?;
        exec(c, q::PRUNE_INBOX, &[&before, &keep, &(limit as i64)]).await
    }
}
