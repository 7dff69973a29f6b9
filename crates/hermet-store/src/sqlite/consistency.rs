//! The consistency checker's reads on SQLite.

use hermet_domain::id::UserId;

use super::refresh::{CONTACT_KEYS, CONVERSATION_KEYS};
use rusqlite::params;

use super::SqliteDatabase;
use super::statements::{json_ids, qmap};
use crate::StoreError;
use crate::ports::*;
use crate::queries::{self as q};
use crate::rows::*;
use crate::views;

impl ConsistencyReads for SqliteDatabase {
    async fn user_ids_after(&self, after: i64, limit: u32) -> Result<Vec<UserId>, StoreError> {
        self.read(move |c| qmap(c, q::USER_IDS_AFTER, [after, limit as i64], |r| Ok(UserId(r.get(0)?)))).await
    }

    async fn expected_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!("{CONVERSATION_KEYS}{}", &*views::CONVERSATION_EXPECTED);
            qmap(c, &sql, params!["[]", "[]", o], |r| conversation_from(r))
        })
        .await
    }

    async fn stored_conversations(&self, owners: &[UserId]) -> Result<Vec<ConversationRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!(
                "SELECT {} FROM user_conversation_view WHERE user_id IN (SELECT value FROM json_each(?1))",
                views::conversation_select("")
            );
            qmap(c, &sql, [o], |r| conversation_from(r))
        })
        .await
    }

    async fn expected_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!("{CONTACT_KEYS}{}", &*views::CONTACT_EXPECTED);
            qmap(c, &sql, params!["[]", o], |r| contact_from(r))
        })
        .await
    }

    async fn stored_contacts(&self, owners: &[UserId]) -> Result<Vec<ContactRow>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let sql = format!(
                "SELECT {} FROM user_contact_view WHERE user_id IN (SELECT value FROM json_each(?1))",
                views::contact_select("")
            );
            qmap(c, &sql, [o], |r| contact_from(r))
        })
        .await
    }

    async fn reverse_conversations(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64, i64)>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let expected = qmap(
                c,
                "SELECT pm.user_id, m.user_id, m.channel_id FROM channel_member m
                 JOIN channel ch ON ch.id = m.channel_id AND ch.channel_type = 'single'
                 JOIN channel_member pm ON pm.channel_id = m.channel_id AND pm.user_id <> m.user_id
                 WHERE m.user_id IN (SELECT value FROM json_each(?1))",
                [&o],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let stored = qmap(
                c,
                "SELECT peer_user_id, owner_user_id, channel_id FROM conversation_reverse_index
                 WHERE owner_user_id IN (SELECT value FROM json_each(?1))",
                [&o],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok((expected, stored))
        })
        .await
    }

    async fn reverse_contacts(&self, owners: &[UserId]) -> Result<ExpectedAndStored<(i64, i64)>, StoreError> {
        let o = json_ids(owners);
        self.read(move |c| {
            let expected = qmap(
                c,
                "SELECT friend_id, user_id FROM friendship WHERE user_id IN (SELECT value FROM json_each(?1))",
                [&o],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let stored = qmap(
                c,
                "SELECT contact_user_id, owner_user_id FROM contact_reverse_index WHERE owner_user_id IN (SELECT value FROM json_each(?1))",
                [&o],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok((expected, stored))
        })
        .await
    }
}
