//! The consistency checker's reads on SQLite.

use hermet_domain::id::UserId;

use super::refresh::{CONTACT_KEYS, CONVERSATION_KEYS, OWNERS};
use rusqlite::params;

use super::SqliteDatabase;
use super::statements::{json_ids, qmap};
use crate::StoreError;
use crate::ports::*;
use crate::queries::{self as q};
use crate::rows::*;
use crate::views;

impl ConsistencyReads for SqliteDatabase {
    #[tracing::instrument(level = "debug", name = "sqlite.user_ids_after", skip_all)]
    async fn user_ids_after(&self, after: i64, limit: u32) -> Result<Vec<UserId>, StoreError> {
        self.read(move |c| qmap(c, q::USER_IDS_AFTER, [after, limit as i64], |r| user_id_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.expected_conversations", skip_all)]
    async fn expected_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!("{CONVERSATION_KEYS}{}", &*views::CONVERSATION_EXPECTED);
            qmap(c, &sql, params!["[]", "[]", o], |r| conversation_from(r))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.stored_conversations", skip_all)]
    async fn stored_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| qmap(c, &OWNERS.conversations_stored, [o], |r| conversation_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.expected_contacts", skip_all)]
    async fn expected_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!("{CONTACT_KEYS}{}", &*views::CONTACT_EXPECTED);
            qmap(c, &sql, params!["[]", o], |r| contact_from(r))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.stored_contacts", skip_all)]
    async fn stored_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| qmap(c, &OWNERS.contacts_stored, [o], |r| contact_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.reverse_conversations", skip_all)]
    async fn reverse_conversations(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64, i64)>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let expected = qmap(c, &OWNERS.reverse_conversations_expected, [&o], |r| int_triple_from(r))?;
            let stored = qmap(c, &OWNERS.reverse_conversations_stored, [&o], |r| int_triple_from(r))?;
            Ok((expected, stored))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.reverse_contacts", skip_all)]
    async fn reverse_contacts(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64)>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let expected = qmap(c, &OWNERS.reverse_contacts_expected, [&o], |r| int_pair_from(r))?;
            let stored = qmap(c, &OWNERS.reverse_contacts_stored, [&o], |r| int_pair_from(r))?;
            Ok((expected, stored))
        })
        .await
    }
}
