//! Messages on SQLite: history, a batch's appends (prepared statements per row, in
//! process), read positions.

use hermet_domain::id::{ChannelId, MessageId, UserId};
use hermet_domain::message::{Message, MessageVersion, Pin, ReactionCount};

use rusqlite::params;

use super::statements::{exec, qmap, qopt};
use super::{SqliteDatabase, SqliteTx};
use crate::StoreError;
use crate::ports::*;
use crate::queries::{self as q, sqlite_placeholders};
use crate::rows::*;

impl MessageReads for SqliteDatabase {
    /// Three characters or more: a phrase `MATCH` of the trigram index (a substring
    /// match, case-insensitive), walked newest first (its rowid is the message id) up to
    /// the page's last visible message; in one channel, the channel's messages among the
    /// matches. Shorter text has no trigram to narrow by: the reader's messages are read
    /// newest first (in one channel by the channel's index) and their text tested.
    #[tracing::instrument(level = "debug", name = "sqlite.search", skip_all)]
    async fn search(&self, s: &SearchQuery) -> Result<Vec<Message>, StoreError> {
        static WALK_MATCHES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM message_search JOIN message ON message.id = message_search.rowid
                 WHERE message_search MATCH $2 AND message_search.rowid < $7 AND {}
                 ORDER BY message_search.rowid DESC LIMIT $8",
                q::SEARCH_VISIBLE
            )
        });
        static CHANNEL_MATCHES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM message WHERE channel_id = $3
                   AND id IN (SELECT rowid FROM message_search WHERE message_search MATCH $2) AND {}
                 ORDER BY id DESC LIMIT $8",
                q::SEARCH_VISIBLE
            )
        });
        const SHORT: &str = "instr(lower(json_extract(content, '$.text')), lower($2)) > 0";
        static SCAN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM message WHERE {SHORT} AND {} ORDER BY id DESC LIMIT $8",
                q::SEARCH_VISIBLE
            )
        });
        static CHANNEL_SCAN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM message WHERE channel_id = $3 AND {SHORT} AND {} ORDER BY id DESC LIMIT $8",
                q::SEARCH_VISIBLE
            )
        });
        let (sql, pattern) = match (s.text.chars().count() >= TRIGRAM, s.channel.is_some()) {
            (true, channel) => {
                let phrase = format!("\"{}\"", s.text.replace('"', "\"\""));
                (if channel { &*CHANNEL_MATCHES } else { &*WALK_MATCHES }, phrase)
            }
            (false, channel) => (if channel { &*CHANNEL_SCAN } else { &*SCAN }, s.text.clone()),
        };
        let s = s.clone();
        self.read(move |c| {
            let params = params![
                s.viewer.get(),
                pattern,
                s.channel.map_or(0, |c| c.get()),
                s.sender.map_or(0, |u| u.get()),
                s.sent_after,
                s.sent_before,
                s.before_id,
                s.limit as i64
            ];
            qmap(c, sql, params, |r| message_from(r))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.messages", skip_all)]
    async fn messages(&self, m: &MessageQuery) -> Result<Vec<Message>, StoreError> {
        let m = m.clone();
        self.read(move |c| {
            let sql = if m.descending { &q::MESSAGES_DESC } else { &q::MESSAGES_ASC };
            let params = [m.channel_id.get(), m.after_seq, m.before_seq, m.limit as i64, m.viewer.get()];
            qmap(c, sql, params, |r| message_from(r))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.message", skip_all)]
    async fn message(&self, channel: ChannelId, id: MessageId) -> Result<Option<Message>, StoreError> {
        self.read(move |c| qopt(c, &q::MESSAGE_IN_CHANNEL, params![channel.get(), id.get()], |r| message_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.reactions", skip_all)]
    async fn reactions(
        &self,
        messages: &[MessageId],
        viewer: UserId,
    ) -> Result<Vec<(MessageId, ReactionCount)>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| q::reaction_counts("message_id IN (SELECT value FROM json_each($1))"));
        let ids = super::statements::json_ids(messages);
        self.read(move |c| {
            qmap(c, &SQL, params![ids, viewer.get()], |r| {
                Ok((
                    MessageId(r.get(0)?),
                    ReactionCount { emoji: r.get(1)?, count: r.get(2)?, me: r.get::<_, i64>(3)? == 1 },
                ))
            })
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.receipts", skip_all)]
    async fn receipts(
        &self,
        channel: ChannelId,
        seq: i64,
        sender: UserId,
        list: Option<(UserId, u32)>,
    ) -> Result<(i64, Vec<UserId>), StoreError> {
        let (ch, s) = (channel.get(), sender.get());
        self.read(move |c| {
            let count = qopt(c, &q::READ_COUNT, params![ch, s, seq], |r| r.get(0))?.unwrap_or(0);
            let readers = match list {
                Some((after, limit)) => {
                    qmap(c, &q::READERS_PAGE, params![ch, s, seq, after.get(), limit as i64], |r| {
                        Ok(UserId(r.get(0)?))
                    })?
                }
                None => Vec::new(),
            };
            Ok((count, readers))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.messages_by_ids", skip_all)]
    async fn messages_by_ids(&self, ids: &[MessageId]) -> Result<Vec<Message>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!("SELECT {MESSAGE_COLUMNS} FROM message WHERE id IN (SELECT value FROM json_each(?1))")
        });
        let ids = super::statements::json_ids(ids);
        self.read(move |c| qmap(c, &SQL, params![ids], |r| message_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.pins", skip_all)]
    async fn pins(&self, channel: ChannelId, after_seq: i64) -> Result<Vec<Pin>, StoreError> {
        self.read(move |c| qmap(c, &q::PINS, params![channel.get(), after_seq], |r| pin_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.message_versions", skip_all)]
    async fn message_versions(&self, id: MessageId) -> Result<Vec<MessageVersion>, StoreError> {
        self.read(move |c| qmap(c, &q::MESSAGE_VERSIONS, [id.get()], |r| message_version_from(r))).await
    }
}

impl MessageWrites for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.append_messages", skip_all)]
    async fn append_messages(&mut self, messages: &[Message], now: i64) -> Result<(), StoreError> {
        let messages = messages.to_vec();
        self.run(move |c| {
            for m in &messages {
                let (channel, sender) = (m.channel_id.get(), m.sender_id.get());
                let mentions = serde_json::to_string(&m.mentions).unwrap_or_else(|_| "[]".into());
                exec(
                    c,
                    q::INSERT_MESSAGE,
                    params![
                        m.id.get(),
                        channel,
                        m.seq,
                        sender,
                        m.sender_name,
                        m.msg_type.as_str(),
                        m.content.to_string(),
                        mentions,
                        m.mention_all,
                        hermet_domain::message::preview(m.msg_type, &m.content),
                        m.client_msg_id,
                        m.created_at,
                        m.reply_to.map(|r| r.get()),
                        m.forwarded_from.as_ref().and_then(|f| serde_json::to_string(f).ok())
                    ],
                )?;
                let mut stmt = c.prepare_cached(
                    "INSERT INTO message_mention (user_id, channel_id, seq, message_id) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?;
                for u in &m.mentions {
                    stmt.execute(params![u.get(), channel, m.seq, m.id.get()])?;
                }
            }
            for (ch, seq) in crate::last_seqs(&messages, |m| m.channel_id.get()) {
                exec(c, q::SET_LAST_SEQ, params![ch, seq, now])?;
            }
            for ((user, ch), seq) in crate::last_seqs(&messages, |m| (m.sender_id.get(), m.channel_id.get())) {
                c.prepare_cached(&sqlite_placeholders(q::ADVANCE_READ))?
                    .query_row(params![user, ch, seq, now], |r| r.get::<_, i64>(0))?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.advance_read", skip_all)]
    async fn advance_read(&mut self, user: UserId, channel: ChannelId, seq: i64, now: i64) -> Result<i64, StoreError> {
        self.run(move |c| {
            c.prepare_cached(&sqlite_placeholders(q::ADVANCE_READ))?
                .query_row(params![user.get(), channel.get(), seq, now], |r| r.get(0))
        })
        .await
    }

    /// The transaction holds SQLite's one write lock: nothing else changes the row.
    #[tracing::instrument(level = "debug", name = "sqlite.lock_message", skip_all)]
    async fn lock_message(&mut self, channel: ChannelId, id: MessageId) -> Result<Option<Message>, StoreError> {
        self.run(move |c| qopt(c, &q::MESSAGE_IN_CHANNEL, params![channel.get(), id.get()], |r| message_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.react", skip_all)]
    async fn react(
        &mut self,
        message: MessageId,
        user: UserId,
        emoji: &str,
        add: bool,
        at: i64,
    ) -> Result<bool, StoreError> {
        let emoji = emoji.to_owned();
        self.run(move |c| {
            let n = if add {
                exec(c, q::REACT, params![message.get(), emoji, user.get(), at])?
            } else {
                exec(c, q::UNREACT, params![message.get(), emoji, user.get()])?
            };
            Ok(n == 1)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.reactions_by", skip_all)]
    async fn reactions_by(&mut self, message: MessageId, user: UserId, emoji: &str) -> Result<(i64, bool), StoreError> {
        let emoji = emoji.to_owned();
        self.run(move |c| {
            let row = qopt(c, q::REACTIONS_BY, params![message.get(), user.get(), emoji], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? > 0))
            })?;
            Ok(row.unwrap_or((0, false)))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.note_slow_sends", skip_all)]
    async fn note_slow_sends(&mut self, pairs: &[(ChannelId, UserId)], now: i64) -> Result<(), StoreError> {
        let pairs = pairs.to_vec();
        self.run(move |c| {
            for (ch, u) in &pairs {
                exec(
                    c,
                    "UPDATE channel_member SET slow_sent_at = $3 WHERE channel_id = $1 AND user_id = $2",
                    params![ch.get(), u.get(), now],
                )?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.pin", skip_all)]
    async fn pin(&mut self, m: &Message, by: UserId, add: bool, at: i64) -> Result<bool, StoreError> {
        let (ch, id, seq) = (m.channel_id.get(), m.id.get(), m.seq);
        self.run(move |c| {
            let n = if add {
                exec(c, q::PIN, params![ch, id, seq, by.get(), at])?
            } else {
                exec(c, q::UNPIN, params![ch, id])?
            };
            Ok(n == 1)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.pin_count", skip_all)]
    async fn pin_count(&mut self, channel: ChannelId, message: MessageId) -> Result<(i64, bool), StoreError> {
        self.run(move |c| {
            let row = qopt(c, q::PIN_COUNT, params![channel.get(), message.get()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? > 0))
            })?;
            Ok(row.unwrap_or((0, false)))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.hide_message", skip_all)]
    async fn hide_message(&mut self, user: UserId, m: &Message, at: i64) -> Result<bool, StoreError> {
        let (channel, seq, id) = (m.channel_id.get(), m.seq, m.id.get());
        self.run(move |c| {
            let hidden = exec(c, q::HIDE_MESSAGE, params![user.get(), channel, seq, id, at])? == 1;
            exec(c, q::NOTE_DELETED, params![user.get(), channel, seq, at])?;
            Ok(hidden)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.edit_message", skip_all)]
    async fn edit_message(&mut self, e: &MessageEdit<'_>) -> Result<(), StoreError> {
        let b = e.before.clone();
        let (content, mentions, mention_all, at) = (e.content.clone(), e.mentions.to_vec(), e.mention_all, e.at);
        self.run(move |c| {
            let id = b.id.get();
            let json = |v: &[hermet_domain::id::UserId]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
            exec(
                c,
                q::INSERT_MESSAGE_VERSION,
                params![
                    id,
                    b.edit_count + 1,
                    b.content.to_string(),
                    json(&b.mentions),
                    b.mention_all,
                    b.edited_at.unwrap_or(b.created_at)
                ],
            )?;
            let preview = hermet_domain::message::preview(b.msg_type, &content);
            exec(c, q::EDIT_MESSAGE, params![id, content.to_string(), preview, json(&mentions), mention_all, at])?;
            exec(c, q::DELETE_MENTIONS_OF, params![id])?;
            let mut stmt = c.prepare_cached(
                "INSERT INTO message_mention (user_id, channel_id, seq, message_id) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )?;
            for u in &mentions {
                stmt.execute(params![u.get(), b.channel_id.get(), b.seq, id])?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.recall_message", skip_all)]
    async fn recall_message(&mut self, id: MessageId, by: UserId, at: i64) -> Result<(), StoreError> {
        self.run(move |c| {
            exec(c, q::RECALL_MESSAGE, params![id.get(), at, by.get()])?;
            exec(c, q::DELETE_MENTIONS_OF, params![id.get()])?;
            exec(c, q::DELETE_VERSIONS_OF, params![id.get()])?;
            exec(c, q::DELETE_REACTIONS_OF, params![id.get()])?;
            exec(c, q::DELETE_PINS_OF, params![id.get()])?;
            const ERASED: &str = "UPDATE outbox SET payload = json_set(payload, '$.msgType', 'recalled',
                   '$.content', json('{}'), '$.mentions', json('[]'), '$.mentionAll', json('false'))";
            exec(c, &format!("{ERASED} WHERE event_id = $1 AND event_type = 'message.sent'"), params![id.get()])?;
            exec(
                c,
                &format!("{ERASED} WHERE json_extract(payload, '$.messageId') = $1 AND event_type = 'message.edited'"),
                params![id.to_string()],
            )?;
            exec(
                c,
                "UPDATE outbox SET payload = json_set(payload, '$.replyTo.msgType', 'recalled', '$.replyTo.preview', '')
                 WHERE json_extract(payload, '$.replyTo.messageId') = $1 AND event_type = 'message.sent'
                   AND json_extract(payload, '$.replyTo') IS NOT NULL",
                params![id.to_string()],
            )?;
            Ok(())
        })
        .await
    }
}
