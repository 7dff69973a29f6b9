//! The consistency checker's reads on PostgreSQL.

use hermet_domain::id::UserId;

use super::PgDatabase;
use super::refresh::{CONTACT_KEYS, CONVERSATION_KEYS, OWNERS};
use super::statements::{ids, query_map};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;
use crate::views;

impl ConsistencyReads for PgDatabase {
    #[tracing::instrument(level = "debug", name = "postgres.user_ids_after", skip_all)]
    async fn user_ids_after(&self, after: i64, limit: u32) -> Result<Vec<UserId>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, q::USER_IDS_AFTER, &[&after, &(limit as i64)], user_id_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.expected_conversations", skip_all)]
    async fn expected_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql = format!("{CONVERSATION_KEYS}{}", &*views::CONVERSATION_EXPECTED);
        let empty: Vec<i64> = Vec::new();
        query_map(&c, &sql, &[&empty, &empty, &empty, &ids(owners)], conversation_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.stored_conversations", skip_all)]
    async fn stored_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, &OWNERS.conversations_stored, &[&ids(owners)], conversation_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.expected_contacts", skip_all)]
    async fn expected_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let c = self.write_conn().await?;
        let sql = format!("{CONTACT_KEYS}{}", &*views::CONTACT_EXPECTED);
        let empty: Vec<i64> = Vec::new();
        query_map(&c, &sql, &[&empty, &empty, &ids(owners)], contact_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.stored_contacts", skip_all)]
    async fn stored_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, &OWNERS.contacts_stored, &[&ids(owners)], contact_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.reverse_conversations", skip_all)]
    async fn reverse_conversations(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64, i64)>, StoreError> {
        let c = self.write_conn().await?;
        let o = ids(owners);
        let expected = query_map(&c, &OWNERS.reverse_conversations_expected, &[&o], int_triple_from).await?;
        let stored = query_map(&c, &OWNERS.reverse_conversations_stored, &[&o], int_triple_from).await?;
        Ok((expected, stored))
    }

    #[tracing::instrument(level = "debug", name = "postgres.reverse_contacts", skip_all)]
    async fn reverse_contacts(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64)>, StoreError> {
        let c = self.write_conn().await?;
        let o = ids(owners);
        let expected = query_map(&c, &OWNERS.reverse_contacts_expected, &[&o], int_pair_from).await?;
        let stored = query_map(&c, &OWNERS.reverse_contacts_stored, &[&o], int_pair_from).await?;
        Ok((expected, stored))
    }
}
