//! The consistency checker's reads on PostgreSQL.

use hermet_domain::id::UserId;

use super::PgDatabase;
use super::refresh::{CONTACT_KEYS, CONVERSATION_KEYS};
use super::statements::{ids, query_map};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;
use crate::views;

impl ConsistencyReads for PgDatabase {
    async fn user_ids_after(&self, after: i64, limit: u32) -> Result<Vec<UserId>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, q::USER_IDS_AFTER, &[&after, &(limit as i64)], |r| Ok(UserId(r.get(0)))).await
    }

    async fn expected_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql = format!("{CONVERSATION_KEYS}{}", &*views::CONVERSATION_EXPECTED);
        let empty: Vec<i64> = Vec::new();
        query_map(&c, &sql, &[&empty, &empty, &empty, &ids(owners)], conversation_from).await
    }

    async fn stored_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql = format!(
            "SELECT {} FROM user_conversation_view WHERE user_id = ANY($1::bigint[])",
            views::conversation_select("")
        );
        query_map(&c, &sql, &[&ids(owners)], conversation_from).await
    }

    async fn expected_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql = format!("{CONTACT_KEYS}{}", &*views::CONTACT_EXPECTED);
        let empty: Vec<i64> = Vec::new();
        query_map(&c, &sql, &[&empty, &empty, &ids(owners)], contact_from).await
    }

    async fn stored_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql =
            format!("SELECT {} FROM user_contact_view WHERE user_id = ANY($1::bigint[])", views::contact_select(""));
        query_map(&c, &sql, &[&ids(owners)], contact_from).await
    }

    async fn reverse_conversations(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64, i64)>, StoreError> {
        let c = self.write_conn().await?;
        let o = ids(owners);
        let expected = query_map(
            &c,
            "SELECT pm.user_id, m.user_id, m.channel_id FROM channel_member m
             JOIN channel ch ON ch.id = m.channel_id AND ch.channel_type = 'single'
             JOIN channel_member pm ON pm.channel_id = m.channel_id AND pm.user_id <> m.user_id
             WHERE m.user_id = ANY($1::bigint[])",
            &[&o],
            |r| Ok((r.get(0), r.get(1), r.get(2))),
        )
        .await?;
        let stored = query_map(
            &c,
            "SELECT peer_user_id, owner_user_id, channel_id FROM conversation_reverse_index WHERE owner_user_id = ANY($1::bigint[])",
            &[&o],
            |r| Ok((r.get(0), r.get(1), r.get(2))),
        )
        .await?;
        Ok((expected, stored))
    }

    async fn reverse_contacts(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64)>, StoreError> {
        let c = self.write_conn().await?;
        let o = ids(owners);
        let expected =
            query_map(&c, "SELECT friend_id, user_id FROM friendship WHERE user_id = ANY($1::bigint[])", &[&o], |r| {
                Ok((r.get(0), r.get(1)))
            })
            .await?;
        let stored = query_map(
            &c,
            "SELECT contact_user_id, owner_user_id FROM contact_reverse_index WHERE owner_user_id = ANY($1::bigint[])",
            &[&o],
            |r| Ok((r.get(0), r.get(1))),
        )
        .await?;
        Ok((expected, stored))
    }
}
