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
    #[tracing::instrument(level = "debug", name = "postgres.conversations", skip_all)]
    async fn conversations(&self, cq: &ConversationQuery) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.read_conn().await?;
        let a = q::ConversationArgs::of(cq);
        query_map(
            &c,
            &q::CONVERSATIONS,
            &[
                &cq.user_id.get(),
                &a.kind,
                &a.unread_only,
                &a.has_after,
                &a.pinned,
                &a.last_active,
                &a.channel,
                &a.limit,
            ],
            conversation_from,
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "postgres.conversation", skip_all)]
    async fn conversation(&self, user: UserId, channel: ChannelId) -> Result<Option<ConversationRow>, StoreError> {
        let c = self.read_conn().await?;
        query_opt(&c, &q::CONVERSATION, &[&user.get(), &channel.get()], conversation_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.total_unread", skip_all)]
    async fn total_unread(&self, user: UserId) -> Result<i64, StoreError> {
        let c = self.read_conn().await?;
        let stmt = c.prep(&q::TOTAL_UNREAD).await.map_err(pg_err)?;
        Ok(c.query_one(&stmt, &[&user.get()]).await.map_err(pg_err)?.get(0))
    }

    #[tracing::instrument(level = "debug", name = "postgres.large_groups", skip_all)]
    async fn large_groups(&self, user: UserId) -> Result<Vec<ChannelId>, StoreError> {
        let c = self.read_conn().await?;
        let stmt = c.prep(q::LARGE_GROUPS).await.map_err(pg_err)?;
        let rows = c.query(&stmt, &[&user.get()]).await.map_err(pg_err)?;
        Ok(rows.iter().map(|r| ChannelId::from(r.get::<_, i64>(0))).collect())
    }
}

impl ConversationWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.setting", skip_all)]
    async fn setting(&mut self, user: UserId, channel: ChannelId) -> Result<ConversationSetting, StoreError> {
        Ok(query_opt(self.conn()?, &q::SETTING, &[&user.get(), &channel.get()], setting_from)
            .await?
            .unwrap_or_default())
    }

    #[tracing::instrument(level = "debug", name = "postgres.save_setting", skip_all)]
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
