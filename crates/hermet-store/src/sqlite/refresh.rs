//! The read models' refresh on SQLite: the key sets and the steps of
//! [`crate::refresh`] in their order, in one closure on the connection.

use std::sync::LazyLock;

use hermet_domain::id::UserId;
use hermet_domain::projection::Refresh;

use rusqlite::params;

use super::SqliteTx;
use super::statements::{json_ids, json_pairs};
use crate::StoreError;
use crate::ports::*;
use crate::refresh::{self, RefreshStep};
use crate::views;

// The rows a refresh recomputes: members of channels (?1), (owner, channel) pairs (?2),
// every row of owners (?3). (Profile changes take views::PEER_PROFILE_*.)
pub(super) const CONVERSATION_KEYS: &str = "WITH keys(user_id, channel_id) AS (
    SELECT m.user_id, m.channel_id FROM channel_member m WHERE m.channel_id IN (SELECT value FROM json_each(?1))
    UNION SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2)
    UNION SELECT m.user_id, m.channel_id FROM channel_member m WHERE m.user_id IN (SELECT value FROM json_each(?3))
)";

// The rows a message or a read changes: active members of channels (?1), (owner,
// channel) pairs (?2). (A former member's row stops at the seq they left at.)
pub(super) const MESSAGE_KEYS: &str = "WITH keys(user_id, channel_id) AS (
    SELECT m.user_id, m.channel_id FROM channel_member m
    WHERE m.channel_id IN (SELECT value FROM json_each(?1)) AND m.left_at IS NULL
    UNION SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2)
)";

// (owner, contact) pairs (?1), every contact row of owners (?2).
pub(super) const CONTACT_KEYS: &str = "WITH keys(user_id, contact_id) AS (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1)
    UNION SELECT f.user_id, f.friend_id FROM friendship f WHERE f.user_id IN (SELECT value FROM json_each(?2))
)";

/// The conversation rows of the members of `channels`, of the `pairs` and of the
/// `owners` (JSON lists), recomputed whole; returns the owners of the rows written.
fn refresh_conversations(
    c: &rusqlite::Connection,
    channels: &str,
    pairs: &str,
    owners: &str,
    now: i64,
) -> rusqlite::Result<Vec<UserId>> {
    let sql = format!("{CONVERSATION_KEYS}{}", views::CONVERSATION_REFRESH.replace("{now}", "?4"));
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![channels, pairs, owners, now], |row| row.get::<_, i64>(0))?;
    rows.map(|u| u.map(UserId::from)).collect()
}

/// The statements over a set of owners (`?1`), in SQLite's terms.
pub(super) static OWNERS: LazyLock<views::OwnerStatements> =
    LazyLock::new(|| views::OwnerStatements::new("IN (SELECT value FROM json_each(?1))", "?2"));

impl ProjectionWrites for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.apply_refresh", skip_all)]
    async fn apply_refresh(&mut self, r: &Refresh, now: i64) -> Result<(), StoreError> {
        let r = r.clone();
        let written = self
            .run(move |c| {
                let mut written = Vec::new();
                for step in refresh::steps(&r) {
                    match step {
                        RefreshStep::ReverseChannels => {
                            let ch = json_ids(&r.reverse_channels);
                            let cte = "WITH rchannels(channel_id) AS (SELECT value FROM json_each(?1))";
                            c.prepare_cached(&format!("{cte} {}", views::REVERSE_CHANNELS_DELETE))?.execute([&ch])?;
                            let insert = views::REVERSE_CHANNELS_INSERT.replace("{now}", "?2");
                            c.prepare_cached(&format!("{cte} {insert}"))?.execute(params![ch, now])?;
                        }
                        RefreshStep::ReverseContacts => {
                            let pairs = json_pairs(&r.reverse_contacts);
                            let cte = "WITH rpairs(user_id, contact_id) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))";
                            c.prepare_cached(&format!("{cte} {}", views::REVERSE_CONTACTS_DELETE))?.execute([&pairs])?;
                            let insert = views::REVERSE_CONTACTS_INSERT.replace("{now}", "?2");
                            c.prepare_cached(&format!("{cte} {insert}"))?.execute(params![pairs, now])?;
                        }
                        RefreshStep::OwnerReverse => {
                            let o = json_ids(&r.owners);
                            c.prepare_cached(&OWNERS.reverse_conversations)?.execute(params![o, now])?;
                            c.prepare_cached(&OWNERS.reverse_contacts)?.execute(params![o, now])?;
                        }
                        // Only the profile-derived columns (views::PEER_PROFILE_*).
                        RefreshStep::Profiles => {
                            let profile = "WITH p(user_id) AS (SELECT value FROM json_each(?1))";
                            if !r.peers.is_empty() {
                                let sql = format!("{profile} {}", views::PEER_PROFILE_CONVERSATIONS.replace("{now}", "?2"));
                                let mut stmt = c.prepare_cached(&sql)?;
                                for u in stmt.query_map(params![json_ids(&r.peers), now], |row| row.get::<_, i64>(0))? {
                                    written.push(UserId::from(u?));
                                }
                            }
                            if !r.contact_of.is_empty() {
                                let sql = format!("{profile} {}", views::PEER_PROFILE_CONTACTS.replace("{now}", "?2"));
                                c.prepare_cached(&sql)?.execute(params![json_ids(&r.contact_of), now])?;
                            }
                        }
                        RefreshStep::Conversations => {
                            let (channels, pairs) = (json_ids(&r.channels), json_pairs(&r.conversations));
                            written.extend(refresh_conversations(c, &channels, &pairs, &json_ids(&r.owners), now)?);
                        }
                        RefreshStep::Messages => {
                            let keys = params![json_ids(&r.message_channels), json_pairs(&r.message_conversations)];
                            // Rows that do not exist yet are not the message step's to create.
                            let sql = format!("{MESSAGE_KEYS}{}", views::MISSING_CONVERSATIONS);
                            let missing: Vec<i64> = c
                                .prepare_cached(&sql)?
                                .query_map(keys, |row| row.get::<_, i64>(0))?
                                .collect::<Result<_, _>>()?;
                            let sql = format!("{MESSAGE_KEYS}{}", views::MESSAGE_REFRESH.replace("{now}", "?3"));
                            let mut stmt = c.prepare_cached(&sql)?;
                            let params = params![json_ids(&r.message_channels), json_pairs(&r.message_conversations), now];
                            for u in stmt.query_map(params, |row| row.get::<_, i64>(0))? {
                                written.push(UserId::from(u?));
                            }
                            if !missing.is_empty() {
                                let channels = serde_json::to_string(&missing).unwrap_or_else(|_| "[]".into());
                                written.extend(refresh_conversations(c, &channels, "[]", "[]", now)?);
                            }
                        }
                        RefreshStep::Contacts => {
                            let sql = format!("{CONTACT_KEYS}{}", views::CONTACT_REFRESH.replace("{now}", "?3"));
                            let mut stmt = c.prepare_cached(&sql)?;
                            let mut rows = stmt.query(params![json_pairs(&r.contacts), json_ids(&r.owners), now])?;
                            while rows.next()?.is_some() {}
                        }
                    }
                }
                Ok(written)
            })
            .await?;
        self.touched.list_owners.extend(written);
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "sqlite.delete_orphans", skip_all)]
    async fn delete_orphans(&mut self, owners: &[UserId]) -> Result<u64, StoreError> {
        let o = json_ids(owners);
        self.run(move |c| {
            let mut n = 0;
            for sql in &OWNERS.orphan_deletes {
                n += c.execute(sql, [&o])?;
            }
            Ok(n as u64)
        })
        .await
    }
}
