//! The event pipeline's storage on SQLite: relay publication, leases, dead letters,
//! notification audiences and compensation scans (SQL shared with PostgreSQL where the
//! dialects agree; id lists as JSON arrays read with `json_each`).

use hermet_domain::id::{ChannelId, UserId};
use rusqlite::params;

use super::statements::{exec, json_ids, qmap, qopt};
use super::{SqliteDatabase, SqliteTx};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;

impl SqliteDatabase {
    pub(super) async fn offsets_with_prefix(&self, prefix: &str) -> Result<Vec<(String, LogCursor)>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |c| qmap(c, q::OFFSETS_WITH_PREFIX, [prefix], |r| named_cursor_from(r))).await
    }
}

impl PipelineReads for SqliteDatabase {
    #[tracing::instrument(level = "debug", name = "sqlite.unpublished", skip_all)]
    async fn unpublished(&self, limit: u32) -> Result<Vec<OutboxRecord>, StoreError> {
        self.read(move |c| qmap(c, q::UNPUBLISHED, [limit as i64], |r| outbox_record_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.outbox_backlog", skip_all)]
    async fn outbox_backlog(&self) -> Result<(i64, Option<i64>), StoreError> {
        let row = self.read(|c| qopt(c, q::OUTBOX_BACKLOG, [], |r| Ok((r.get(0)?, r.get(1)?)))).await?;
        Ok(row.unwrap_or((0, None)))
    }

    #[tracing::instrument(level = "debug", name = "sqlite.publication", skip_all)]
    async fn publication(&self, position: i64) -> Result<Option<Publication>, StoreError> {
        self.read(move |c| qopt(c, q::PUBLICATION, [position], |r| publication_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.undrained_on_kafka", skip_all)]
    async fn undrained_on_kafka(&self, consumer: &str) -> Result<i64, StoreError> {
        let consumer = consumer.to_owned();
        let n = self.read(move |c| qopt(c, q::UNDRAINED_ON_KAFKA, [consumer], |r| r.get(0))).await?;
        Ok(n.unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "sqlite.events_after", skip_all)]
    async fn events_after(&self, after: LogCursor) -> Result<i64, StoreError> {
        let n = self.read(move |c| qopt(c, q::EVENTS_AFTER, [after.0, after.1], |r| r.get(0))).await?;
        Ok(n.unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "sqlite.dead_letters", skip_all)]
    async fn dead_letters(&self, status: &str, after: i64, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let status = status.to_owned();
        self.read(move |c| qmap(c, &q::DEAD_LETTERS, params![status, after, limit as i64], |r| dead_letter_from(r)))
            .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.dead_letter", skip_all)]
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        self.read(move |c| qopt(c, &q::DEAD_LETTER, [id], |r| dead_letter_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.pending_dead_letters", skip_all)]
    async fn pending_dead_letters(&self) -> Result<i64, StoreError> {
        let n = self.read(|c| qopt(c, q::PENDING_DEAD_LETTERS, [], |r| r.get(0))).await?;
        Ok(n.unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "sqlite.dead_letters_to_publish", skip_all)]
    async fn dead_letters_to_publish(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(move |c| qmap(c, &q::DEAD_LETTERS_TO_PUBLISH, [limit as i64], |r| dead_letter_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.channel_audience", skip_all)]
    async fn channel_audience(&self, channels: &[ChannelId]) -> Result<Vec<(ChannelId, UserId, bool)>, StoreError> {
        let ids = json_ids(channels);
        self.read(move |c| {
            qmap(
                c,
                "SELECT channel_id, user_id, role IN ('owner', 'admin') FROM channel_member
                 WHERE channel_id IN (SELECT value FROM json_each(?1)) AND left_at IS NULL",
                [ids],
                |r| audience_from(r),
            )
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.contact_owners", skip_all)]
    async fn contact_owners(&self, users: &[UserId]) -> Result<Vec<(UserId, UserId)>, StoreError> {
        let ids = json_ids(users);
        self.read(move |c| {
            qmap(
                c,
                "SELECT contact_user_id, owner_user_id FROM contact_reverse_index
                 WHERE contact_user_id IN (SELECT value FROM json_each(?1))",
                [ids],
                |r| user_pair_from(r),
            )
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.groups_without_created_event", skip_all)]
    async fn groups_without_created_event(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<ChannelId>, StoreError> {
        self.read(move |c| {
            qmap(c, q::GROUPS_WITHOUT_CREATED_EVENT, [since, until, limit as i64], |r| channel_id_from(r))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.groups_without_views", skip_all)]
    async fn groups_without_views(&self, since: i64, until: i64, limit: u32) -> Result<Vec<ChannelId>, StoreError> {
        self.read(move |c| qmap(c, q::GROUPS_WITHOUT_VIEWS, [since, until, limit as i64], |r| channel_id_from(r))).await
    }
}

impl PipelineWrites for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.mark_published", skip_all)]
    async fn mark_published(&mut self, rows: &[Publication], now: i64) -> Result<(), StoreError> {
        let rows = rows.to_vec();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE outbox SET published_at = ?5, kafka_topic = ?2, kafka_partition = ?3, kafka_offset = ?4
                 WHERE position = ?1",
            )?;
            for p in &rows {
                stmt.execute(params![p.position, p.topic, p.partition, p.offset, now])?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.prune_outbox", skip_all)]
    async fn prune_outbox(
        &mut self,
        before: i64,
        floor: LogCursor,
        published_only: bool,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.run(move |c| {
            exec(c, q::PRUNE_OUTBOX, params![before, floor.0, floor.1, i64::from(published_only), limit as i64])
                .map(|n| n as u64)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.mark_dead_letters_published", skip_all)]
    async fn mark_dead_letters_published(&mut self, letters: &[(i64, i64)], now: i64) -> Result<(), StoreError> {
        let letters = letters.to_vec();
        self.run(move |c| {
            for (id, version) in &letters {
                exec(c, q::MARK_DEAD_LETTER_PUBLISHED, params![id, version, now])?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.take_lease", skip_all)]
    async fn take_lease(&mut self, name: &str, holder: &str, ttl_ms: i64, now: i64) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.run(move |c| exec(c, q::TAKE_LEASE, params![name, holder, now, ttl_ms]).map(|n| n == 1)).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.release_lease", skip_all)]
    async fn release_lease(&mut self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.run(move |c| exec(c, q::RELEASE_LEASE, params![name, holder]).map(|n| n == 1)).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.insert_dead_letter", skip_all)]
    async fn insert_dead_letter(&mut self, d: &NewDeadLetter, now: i64) -> Result<(), StoreError> {
        let d = d.clone();
        self.run(move |c| {
            exec(
                c,
                q::INSERT_DEAD_LETTER,
                params![d.consumer, d.event_id, d.event_type, d.payload, d.source, d.error, d.attempts, now],
            )
            .map(|_| ())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.update_dead_letter", skip_all)]
    async fn update_dead_letter(
        &mut self,
        id: i64,
        from: &str,
        change: &DeadLetterChange,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (from, ch) = (from.to_owned(), change.clone());
        self.run(move |c| {
            exec(c, q::UPDATE_DEAD_LETTER, params![id, from, ch.status, ch.payload, ch.error, now]).map(|n| n == 1)
        })
        .await
    }
}
