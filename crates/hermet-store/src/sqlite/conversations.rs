//! Conversation rows (the read model as readers see it) and conversation settings on
//! SQLite.

use hermet_domain::id::{ChannelId, UserId};

use rusqlite::params;

use super::statements::{exec, qmap, qopt};
use super::{SqliteDatabase, SqliteTx};
use crate::StoreError;
use crate::ports::*;
use crate::queries::{self as q, sqlite_placeholders};
use crate::rows::*;

impl ConversationReads for SqliteDatabase {
    #[tracing::instrument(level = "debug", name = "sqlite.conversations", skip_all)]
    async fn conversations(&self, cq: &ConversationQuery) -> Result<Vec<ConversationRow>, StoreError> {
        let cq = cq.clone();
        self.read(move |c| {
            let a = q::ConversationArgs::of(&cq);
            qmap(
                c,
                &q::CONVERSATIONS,
                params![
                    cq.user_id.get(),
                    a.kind,
                    a.unread_only,
                    a.has_after,
                    a.pinned,
                    a.last_active,
                    a.channel,
                    a.limit
                ],
                |r| conversation_from(r),
            )
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.conversation", skip_all)]
    async fn conversation(&self, user: UserId, channel: ChannelId) -> Result<Option<ConversationRow>, StoreError> {
        self.read(move |c| qopt(c, &q::CONVERSATION, [user.get(), channel.get()], |r| conversation_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.total_unread", skip_all)]
    async fn total_unread(&self, user: UserId) -> Result<i64, StoreError> {
        self.read(move |c| {
            c.prepare_cached(&sqlite_placeholders(&q::TOTAL_UNREAD))?.query_row([user.get()], |r| r.get(0))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.large_groups", skip_all)]
    async fn large_groups(&self, user: UserId) -> Result<Vec<ChannelId>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sqlite_placeholders(q::LARGE_GROUPS))?;
            let rows = stmt.query_map([user.get()], |r| r.get::<_, i64>(0))?;
            rows.map(|r| r.map(ChannelId::from)).collect()
        })
        .await
    }
}

impl ConversationWrites for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.setting", skip_all)]
    async fn setting(&mut self, user: UserId, channel: ChannelId) -> Result<ConversationSetting, StoreError> {
        self.run(move |c| qopt(c, &q::SETTING, [user.get(), channel.get()], |r| setting_from(r)))
            .await
            .map(Option::unwrap_or_default)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.save_setting", skip_all)]
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
}
