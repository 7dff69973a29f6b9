//! Messages on PostgreSQL: history, a batch's appends (one set-based statement per
//! table), read positions.

use hermet_domain::id::{ChannelId, MessageId, UserId};
use hermet_domain::message::{Message, MessageVersion, Pin, ReactionCount};
use tokio_postgres::types::ToSql;

use super::statements::{exec, query_map, query_opt};
use super::{PgDatabase, PgTx, pg_err};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;

// A batch's messages at their allocated seqs, one set-based statement each.
const SET_LAST_SEQS: &str = "UPDATE channel SET last_seq = k.seq, last_message_at = $3, updated_at = $3
     FROM UNNEST($1::bigint[], $2::bigint[]) AS k(id, seq) WHERE channel.id = k.id";
const INSERT_MESSAGES: &str = "INSERT INTO message (id, channel_id, seq, sender_id, sender_name, msg_type, content,
       mentions, mention_all, preview, client_msg_id, created_at, reply_to, forwarded_from)
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::jsonb[],
       $8::jsonb[], $9::boolean[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::jsonb[])";
const INSERT_MENTIONS: &str = "INSERT INTO message_mention (user_id, channel_id, seq, message_id)
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) ON CONFLICT DO NOTHING";
const ADVANCE_READS: &str = "INSERT INTO channel_read_record (user_id, channel_id, last_read_seq, updated_at)
     SELECT k.u, k.c, k.s, $4::bigint FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS k(u, c, s)
     ON CONFLICT (user_id, channel_id) DO UPDATE
       SET last_read_seq = greatest(excluded.last_read_seq, channel_read_record.last_read_seq),
           updated_at = excluded.updated_at";

impl MessageReads for PgDatabase {
    /// `ILIKE` on the indexed expression: the trigram index narrows patterns of three
    /// characters or more. In one channel the channel's equality is spelled out, so the
    /// channel's index is a choice the planner has.
    #[tracing::instrument(level = "debug", name = "postgres.search", skip_all)]
    async fn search(&self, s: &SearchQuery) -> Result<Vec<Message>, StoreError> {
        static ANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM message WHERE (content ->> 'text') ILIKE $2 AND {}
                 ORDER BY id DESC LIMIT $8",
                q::SEARCH_VISIBLE
            )
        });
        static ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM message WHERE channel_id = $3 AND (content ->> 'text') ILIKE $2 AND {}
                 ORDER BY id DESC LIMIT $8",
                q::SEARCH_VISIBLE
            )
        });
        let sql = if s.channel.is_some() { &*ONE } else { &*ANY };
        let c = self.read_conn().await?;
        let pattern = q::like_pattern(&s.text);
        let params: [&(dyn ToSql + Sync); 8] = [
            &s.viewer.get(),
            &pattern,
            &s.channel.map_or(0, |c| c.get()),
            &s.sender.map_or(0, |u| u.get()),
            &s.sent_after,
            &s.sent_before,
            &s.before_id,
            &(s.limit as i64),
        ];
        // The read pool plans generically; a search's plan depends on its text (a rare
        // word: the trigram index; a common one: the newest messages first), so it is
        // planned for its values, in a transaction of its own.
        c.batch_execute("BEGIN READ ONLY; SET LOCAL plan_cache_mode = force_custom_plan").await.map_err(pg_err)?;
        let found = query_map(&c, sql, &params, message_from).await;
        let end = c.batch_execute(if found.is_ok() { "COMMIT" } else { "ROLLBACK" }).await.map_err(pg_err);
        let found = found?;
        end?;
        Ok(found)
    }

    #[tracing::instrument(level = "debug", name = "postgres.messages", skip_all)]
    async fn messages(&self, m: &MessageQuery) -> Result<Vec<Message>, StoreError> {
        let c = self.read_conn().await?;
        let sql = if m.descending { &q::MESSAGES_DESC } else { &q::MESSAGES_ASC };
        let params: [&(dyn ToSql + Sync); 5] =
            [&m.channel_id.get(), &m.after_seq, &m.before_seq, &(m.limit as i64), &m.viewer.get()];
        query_map(&c, sql, &params, message_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.message", skip_all)]
    async fn message(&self, channel: ChannelId, id: MessageId) -> Result<Option<Message>, StoreError> {
        let c = self.read_conn().await?;
        query_opt(&c, &q::MESSAGE_IN_CHANNEL, &[&channel.get(), &id.get()], message_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.reactions", skip_all)]
    async fn reactions(
        &self,
        messages: &[MessageId],
        viewer: UserId,
    ) -> Result<Vec<(MessageId, ReactionCount)>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| q::reaction_counts("message_id = ANY($1::bigint[])"));
        let c = self.read_conn().await?;
        let ids: Vec<i64> = messages.iter().map(|m| m.get()).collect();
        query_map(&c, &SQL, &[&ids, &viewer.get()], |r| {
            Ok((
                MessageId(r.int(0)?),
                ReactionCount { emoji: r.text(1)?, count: r.int(2)?, me: r.get::<_, i32>(3) == 1 },
            ))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "postgres.receipts", skip_all)]
    async fn receipts(
        &self,
        channel: ChannelId,
        seq: i64,
        sender: UserId,
        list: Option<(UserId, u32)>,
    ) -> Result<(i64, Vec<UserId>), StoreError> {
        let c = self.read_conn().await?;
        let (ch, s) = (channel.get(), sender.get());
        let count = query_opt(&c, &q::READ_COUNT, &[&ch, &s, &seq], |r| r.int(0)).await?.unwrap_or(0);
        let readers = match list {
            Some((after, limit)) => {
                let params: [&(dyn ToSql + Sync); 5] = [&ch, &s, &seq, &after.get(), &(limit as i64)];
                query_map(&c, &q::READERS_PAGE, &params, |r| Ok(UserId(r.int(0)?))).await?
            }
            None => Vec::new(),
        };
        Ok((count, readers))
    }

    #[tracing::instrument(level = "debug", name = "postgres.messages_by_ids", skip_all)]
    async fn messages_by_ids(&self, ids: &[MessageId]) -> Result<Vec<Message>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| format!("SELECT {MESSAGE_COLUMNS} FROM message WHERE id = ANY($1::bigint[])"));
        let c = self.read_conn().await?;
        let ids: Vec<i64> = ids.iter().map(|m| m.get()).collect();
        query_map(&c, &SQL, &[&ids], message_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.pins", skip_all)]
    async fn pins(&self, channel: ChannelId, after_seq: i64) -> Result<Vec<Pin>, StoreError> {
        let c = self.read_conn().await?;
        query_map(&c, &q::PINS, &[&channel.get(), &after_seq], pin_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.message_versions", skip_all)]
    async fn message_versions(&self, id: MessageId) -> Result<Vec<MessageVersion>, StoreError> {
        let c = self.read_conn().await?;
        query_map(&c, &q::MESSAGE_VERSIONS, &[&id.get()], message_version_from).await
    }
}

impl MessageWrites for PgTx {
    /// Channels, messages, mentions and read positions: four set-based statements in one
    /// round trip (pipelined in order).
    #[tracing::instrument(level = "debug", name = "postgres.append_messages", skip_all)]
    async fn append_messages(&mut self, messages: &[Message], now: i64) -> Result<(), StoreError> {
        let c = self.conn()?;
        let seqs = c.prep(SET_LAST_SEQS).await.map_err(pg_err)?;
        let insert = c.prep(INSERT_MESSAGES).await.map_err(pg_err)?;
        let mention = c.prep(INSERT_MENTIONS).await.map_err(pg_err)?;
        let read = c.prep(ADVANCE_READS).await.map_err(pg_err)?;
        let rows = MessageColumns::of(messages)?;
        let params: [&(dyn ToSql + Sync); 14] = [
            &rows.id,
            &rows.channel,
            &rows.seq,
            &rows.sender,
            &rows.sender_name,
            &rows.msg_type,
            &rows.content,
            &rows.mentions,
            &rows.mention_all,
            &rows.preview,
            &rows.client_msg_id,
            &rows.created_at,
            &rows.reply_to,
            &rows.forwarded_from,
        ];
        let (lc, ls): (Vec<i64>, Vec<i64>) = crate::last_seqs(messages, |m| m.channel_id.get()).into_iter().unzip();
        let mut reads: (Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
        for ((u, ch), s) in crate::last_seqs(messages, |m| (m.sender_id.get(), m.channel_id.get())) {
            reads.0.push(u);
            reads.1.push(ch);
            reads.2.push(s);
        }
        let mut ments: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
        for m in messages {
            for u in &m.mentions {
                ments.0.push(u.get());
                ments.1.push(m.channel_id.get());
                ments.2.push(m.seq);
                ments.3.push(m.id.get());
            }
        }
        let mention_rows = async {
            if ments.0.is_empty() {
                Ok(0)
            } else {
                c.execute(&mention, &[&ments.0, &ments.1, &ments.2, &ments.3]).await
            }
        };
        let seq_params: [&(dyn ToSql + Sync); 3] = [&lc, &ls, &now];
        let read_params: [&(dyn ToSql + Sync); 4] = [&reads.0, &reads.1, &reads.2, &now];
        let (moved, inserted, mentioned, advanced) = tokio::join!(
            c.execute(&seqs, &seq_params),
            c.execute(&insert, &params),
            mention_rows,
            c.execute(&read, &read_params),
        );
        moved.map_err(pg_err)?;
        inserted.map_err(pg_err)?;
        mentioned.map_err(pg_err)?;
        advanced.map_err(pg_err)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.advance_read", skip_all)]
    async fn advance_read(&mut self, user: UserId, channel: ChannelId, seq: i64, now: i64) -> Result<i64, StoreError> {
        let c = self.conn()?;
        let stmt = c.prep(q::ADVANCE_READ).await.map_err(pg_err)?;
        Ok(c.query_one(&stmt, &[&user.get(), &channel.get(), &seq, &now]).await.map_err(pg_err)?.get(0))
    }

    #[tracing::instrument(level = "debug", name = "postgres.lock_message", skip_all)]
    async fn lock_message(&mut self, channel: ChannelId, id: MessageId) -> Result<Option<Message>, StoreError> {
        query_opt(self.conn()?, &LOCK_MESSAGE, &[&channel.get(), &id.get()], message_from).await
    }

    /// Eight statements in one round trip.
    #[tracing::instrument(level = "debug", name = "postgres.recall_message", skip_all)]
    async fn recall_message(&mut self, id: MessageId, by: UserId, at: i64) -> Result<(), StoreError> {
        let c = self.conn()?;
        let recall = c.prep(q::RECALL_MESSAGE).await.map_err(pg_err)?;
        let mentions = c.prep(q::DELETE_MENTIONS_OF).await.map_err(pg_err)?;
        let versions = c.prep(q::DELETE_VERSIONS_OF).await.map_err(pg_err)?;
        let event = c.prep(RECALL_EVENT).await.map_err(pg_err)?;
        let edits = c.prep(RECALL_EDIT_EVENTS).await.map_err(pg_err)?;
        let reactions = c.prep(q::DELETE_REACTIONS_OF).await.map_err(pg_err)?;
        let pins = c.prep(q::DELETE_PINS_OF).await.map_err(pg_err)?;
        let quotes = c.prep(RECALL_QUOTES).await.map_err(pg_err)?;
        let (key, id, by) = (id.to_string(), id.get(), by.get());
        let recall_params: [&(dyn ToSql + Sync); 3] = [&id, &at, &by];
        let id_param: [&(dyn ToSql + Sync); 1] = [&id];
        let key_param: [&(dyn ToSql + Sync); 1] = [&key];
        let (recalled, unmentioned, unversioned, erased, edits_erased, unreacted, unpinned, unquoted) = tokio::join!(
            c.execute(&recall, &recall_params),
            c.execute(&mentions, &id_param),
            c.execute(&versions, &id_param),
            c.execute(&event, &id_param),
            c.execute(&edits, &key_param),
            c.execute(&reactions, &id_param),
            c.execute(&pins, &id_param),
            c.execute(&quotes, &key_param),
        );
        for r in [recalled, unmentioned, unversioned, erased, edits_erased, unreacted, unpinned, unquoted] {
            r.map_err(pg_err)?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.react", skip_all)]
    async fn react(
        &mut self,
        message: MessageId,
        user: UserId,
        emoji: &str,
        add: bool,
        at: i64,
    ) -> Result<bool, StoreError> {
        let (m, u) = (message.get(), user.get());
        let n = if add {
            exec(self.conn()?, q::REACT, &[&m, &emoji, &u, &at]).await?
        } else {
            exec(self.conn()?, q::UNREACT, &[&m, &emoji, &u]).await?
        };
        Ok(n == 1)
    }

    #[tracing::instrument(level = "debug", name = "postgres.reactions_by", skip_all)]
    async fn reactions_by(&mut self, message: MessageId, user: UserId, emoji: &str) -> Result<(i64, bool), StoreError> {
        let row = query_opt(self.conn()?, q::REACTIONS_BY, &[&message.get(), &user.get(), &emoji], |r| {
            Ok((r.int(0)?, r.int(1)? > 0))
        })
        .await?;
        Ok(row.unwrap_or((0, false)))
    }

    #[tracing::instrument(level = "debug", name = "postgres.note_slow_sends", skip_all)]
    async fn note_slow_sends(&mut self, pairs: &[(ChannelId, UserId)], now: i64) -> Result<(), StoreError> {
        let (c, u): (Vec<i64>, Vec<i64>) = pairs.iter().map(|(c, u)| (c.get(), u.get())).unzip();
        exec(
            self.conn()?,
            "UPDATE channel_member m SET slow_sent_at = $3 FROM UNNEST($1::bigint[], $2::bigint[]) AS k(c, u)
             WHERE m.channel_id = k.c AND m.user_id = k.u",
            &[&c, &u, &now],
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.pin", skip_all)]
    async fn pin(&mut self, m: &Message, by: UserId, add: bool, at: i64) -> Result<bool, StoreError> {
        let (ch, id) = (m.channel_id.get(), m.id.get());
        let n = if add {
            exec(self.conn()?, q::PIN, &[&ch, &id, &m.seq, &by.get(), &at]).await?
        } else {
            exec(self.conn()?, q::UNPIN, &[&ch, &id]).await?
        };
        Ok(n == 1)
    }

    #[tracing::instrument(level = "debug", name = "postgres.pin_count", skip_all)]
    async fn pin_count(&mut self, channel: ChannelId, message: MessageId) -> Result<(i64, bool), StoreError> {
        let row = query_opt(self.conn()?, q::PIN_COUNT, &[&channel.get(), &message.get()], |r| {
            Ok((r.int(0)?, r.int(1)? > 0))
        })
        .await?;
        Ok(row.unwrap_or((0, false)))
    }

    #[tracing::instrument(level = "debug", name = "postgres.hide_message", skip_all)]
    async fn hide_message(&mut self, user: UserId, m: &Message, at: i64) -> Result<bool, StoreError> {
        let params: [&(dyn ToSql + Sync); 5] = [&user.get(), &m.channel_id.get(), &m.seq, &m.id.get(), &at];
        let hidden = exec(self.conn()?, q::HIDE_MESSAGE, &params).await? == 1;
        exec(self.conn()?, q::NOTE_DELETED, &[&user.get(), &m.channel_id.get(), &m.seq, &at]).await?;
        Ok(hidden)
    }

    /// Four statements in one round trip (the mention rows deleted before the new ones).
    #[tracing::instrument(level = "debug", name = "postgres.edit_message", skip_all)]
    async fn edit_message(&mut self, e: &MessageEdit<'_>) -> Result<(), StoreError> {
        let c = self.conn()?;
        let keep = c.prep(q::INSERT_MESSAGE_VERSION).await.map_err(pg_err)?;
        let edit = c.prep(q::EDIT_MESSAGE).await.map_err(pg_err)?;
        let unmention = c.prep(q::DELETE_MENTIONS_OF).await.map_err(pg_err)?;
        let mention = c.prep(INSERT_MENTIONS).await.map_err(pg_err)?;
        let b = e.before;
        let id = b.id.get();
        let old_mentions = serde_json::to_value(&b.mentions).map_err(StoreError::other)?;
        let new_mentions = serde_json::to_value(e.mentions).map_err(StoreError::other)?;
        let (version, written) = (b.edit_count + 1, b.edited_at.unwrap_or(b.created_at));
        let preview = hermet_domain::message::preview(b.msg_type, e.content);
        let keep_params: [&(dyn ToSql + Sync); 6] =
            [&id, &version, &b.content, &old_mentions, &b.mention_all, &written];
        let edit_params: [&(dyn ToSql + Sync); 6] = [&id, e.content, &preview, &new_mentions, &e.mention_all, &e.at];
        let id_param: [&(dyn ToSql + Sync); 1] = [&id];
        let users: Vec<i64> = e.mentions.iter().map(|u| u.get()).collect();
        let n = users.len();
        let (channels, seqs, ids) = (vec![b.channel_id.get(); n], vec![b.seq; n], vec![id; n]);
        let mention_params: [&(dyn ToSql + Sync); 4] = [&users, &channels, &seqs, &ids];
        let (kept, edited, unmentioned, mentioned) = tokio::join!(
            c.execute(&keep, &keep_params),
            c.execute(&edit, &edit_params),
            c.execute(&unmention, &id_param),
            c.execute(&mention, &mention_params),
        );
        for r in [kept, edited, unmentioned, mentioned] {
            r.map_err(pg_err)?;
        }
        Ok(())
    }
}

/// The erased form of a recalled message's `message.sent` payload.
const RECALL_EVENT: &str = "UPDATE outbox SET payload = payload || jsonb_build_object('msgType', 'recalled',
       'content', '{}'::jsonb, 'mentions', '[]'::jsonb, 'mentionAll', FALSE)
     WHERE event_id = $1 AND event_type = 'message.sent'";
/// The erased form of its edit events (`outbox_message_edited`).
const RECALL_EDIT_EVENTS: &str = "UPDATE outbox SET payload = payload || jsonb_build_object('msgType', 'recalled',
       'content', '{}'::jsonb, 'mentions', '[]'::jsonb, 'mentionAll', FALSE)
     WHERE (payload ->> 'messageId') = $1 AND event_type = 'message.edited'";
/// The erased form of its quote in replies' `message.sent` events (`outbox_message_reply`).
const RECALL_QUOTES: &str = "UPDATE outbox
     SET payload = jsonb_set(payload, '{replyTo}', (payload -> 'replyTo') || '{\"msgType\": \"recalled\", \"preview\": \"\"}'::jsonb)
     WHERE (payload -> 'replyTo' ->> 'messageId') = $1 AND event_type = 'message.sent' AND payload ? 'replyTo'";
static LOCK_MESSAGE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{} FOR UPDATE", &*q::MESSAGE_IN_CHANNEL));

/// A batch's messages as one array per column (`UNNEST`).
struct MessageColumns<'a> {
    id: Vec<i64>,
    channel: Vec<i64>,
    seq: Vec<i64>,
    sender: Vec<i64>,
    sender_name: Vec<&'a str>,
    msg_type: Vec<&'static str>,
    content: Vec<&'a serde_json::Value>,
    mentions: Vec<serde_json::Value>,
    mention_all: Vec<bool>,
    preview: Vec<String>,
    client_msg_id: Vec<Option<&'a str>>,
    created_at: Vec<i64>,
    reply_to: Vec<Option<i64>>,
    forwarded_from: Vec<Option<serde_json::Value>>,
}

impl<'a> MessageColumns<'a> {
    fn of(messages: &'a [Message]) -> Result<Self, StoreError> {
        let mentions = messages
            .iter()
            .map(|m| serde_json::to_value(&m.mentions))
            .collect::<Result<_, _>>()
            .map_err(StoreError::other)?;
        let forwarded_from = messages
            .iter()
            .map(|m| m.forwarded_from.as_ref().map(serde_json::to_value).transpose())
            .collect::<Result<_, _>>()
            .map_err(StoreError::other)?;
        Ok(Self {
            id: messages.iter().map(|m| m.id.get()).collect(),
            channel: messages.iter().map(|m| m.channel_id.get()).collect(),
            seq: messages.iter().map(|m| m.seq).collect(),
            sender: messages.iter().map(|m| m.sender_id.get()).collect(),
            sender_name: messages.iter().map(|m| m.sender_name.as_str()).collect(),
            msg_type: messages.iter().map(|m| m.msg_type.as_str()).collect(),
            content: messages.iter().map(|m| &m.content).collect(),
            mentions,
            mention_all: messages.iter().map(|m| m.mention_all).collect(),
            preview: messages.iter().map(|m| hermet_domain::message::preview(m.msg_type, &m.content)).collect(),
            client_msg_id: messages.iter().map(|m| m.client_msg_id.as_deref()).collect(),
            created_at: messages.iter().map(|m| m.created_at).collect(),
            reply_to: messages.iter().map(|m| m.reply_to.map(|r| r.get())).collect(),
            forwarded_from,
        })
    }
}
