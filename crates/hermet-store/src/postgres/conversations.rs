//! Conversation rows (the read model as readers see it) and conversation settings on
//! PostgreSQL.

use hermet_domain::id::{ChannelId, UserId};

use super::statements::{exec, query_map, query_opt};
use super::{PgDatabase, PgTx, pg_err};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;

impl ConversationReads for PgDatabase {
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
}

impl ConversationWrites for PgTx {
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
}
