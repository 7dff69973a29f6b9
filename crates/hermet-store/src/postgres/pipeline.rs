//! The event pipeline's storage on PostgreSQL: relay publication, leases, dead letters,
//! notification audiences and compensation scans.

use hermet_domain::id::{ChannelId, UserId};

use super::statements::{exec, ids, query_map, query_opt};
use super::{PgDatabase, PgTx};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;

fn count(r: &tokio_postgres::Row) -> Result<i64, StoreError> {
    r.int(0)
}

impl PgDatabase {
    pub(super) async fn offsets_with_prefix(&self, prefix: &str) -> Result<Vec<(String, LogCursor)>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, q::OFFSETS_WITH_PREFIX, &[&prefix], named_cursor_from).await
    }
}

impl PipelineReads for PgDatabase {
    #[tracing::instrument(level = "debug", name = "postgres.unpublished", skip_all)]
    async fn unpublished(&self, limit: u32) -> Result<Vec<OutboxRecord>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, q::UNPUBLISHED, &[&(limit as i64)], outbox_record_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.outbox_backlog", skip_all)]
    async fn outbox_backlog(&self) -> Result<(i64, Option<i64>), StoreError> {
        let c = self.write_conn().await?;
        let row = query_opt(&c, q::OUTBOX_BACKLOG, &[], |r| Ok((r.int(0)?, r.opt_int(1)?))).await?;
        Ok(row.unwrap_or((0, None)))
    }

    #[tracing::instrument(level = "debug", name = "postgres.publication", skip_all)]
    async fn publication(&self, position: i64) -> Result<Option<Publication>, StoreError> {
        let c = self.write_conn().await?;
        query_opt(&c, q::PUBLICATION, &[&position], publication_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.undrained_on_kafka", skip_all)]
    async fn undrained_on_kafka(&self, consumer: &str) -> Result<i64, StoreError> {
        let c = self.write_conn().await?;
        Ok(query_opt(&c, q::UNDRAINED_ON_KAFKA, &[&consumer], count).await?.unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "postgres.events_after", skip_all)]
    async fn events_after(&self, after: LogCursor) -> Result<i64, StoreError> {
        let c = self.write_conn().await?;
        Ok(query_opt(&c, q::EVENTS_AFTER, &[&after.0, &after.1], count).await?.unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "postgres.dead_letters", skip_all)]
    async fn dead_letters(&self, status: &str, after: i64, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, &q::DEAD_LETTERS, &[&status, &after, &(limit as i64)], dead_letter_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.dead_letter", skip_all)]
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        let c = self.write_conn().await?;
        query_opt(&c, &q::DEAD_LETTER, &[&id], dead_letter_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.pending_dead_letters", skip_all)]
    async fn pending_dead_letters(&self) -> Result<i64, StoreError> {
        let c = self.write_conn().await?;
        Ok(query_opt(&c, q::PENDING_DEAD_LETTERS, &[], count).await?.unwrap_or(0))
    }

    #[tracing::instrument(level = "debug", name = "postgres.dead_letters_to_publish", skip_all)]
    async fn dead_letters_to_publish(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, &q::DEAD_LETTERS_TO_PUBLISH, &[&(limit as i64)], dead_letter_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.channel_audience", skip_all)]
    async fn channel_audience(&self, channels: &[ChannelId]) -> Result<Vec<(ChannelId, UserId, bool)>, StoreError> {
        let c = self.read_conn().await?;
        query_map(
            &c,
            "SELECT channel_id, user_id, role IN ('owner', 'admin') FROM channel_member WHERE channel_id = ANY($1) AND left_at IS NULL",
            &[&ids(channels)],
            audience_from,
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "postgres.contact_owners", skip_all)]
    async fn contact_owners(&self, users: &[UserId]) -> Result<Vec<(UserId, UserId)>, StoreError> {
        let c = self.read_conn().await?;
        query_map(
            &c,
            "SELECT contact_user_id, owner_user_id FROM contact_reverse_index WHERE contact_user_id = ANY($1)",
            &[&ids(users)],
            user_pair_from,
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "postgres.groups_without_created_event", skip_all)]
    async fn groups_without_created_event(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<ChannelId>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, q::GROUPS_WITHOUT_CREATED_EVENT, &[&since, &until, &(limit as i64)], channel_id_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.groups_without_views", skip_all)]
    async fn groups_without_views(&self, since: i64, until: i64, limit: u32) -> Result<Vec<ChannelId>, StoreError> {
        let c = self.write_conn().await?;
        query_map(&c, q::GROUPS_WITHOUT_VIEWS, &[&since, &until, &(limit as i64)], channel_id_from).await
    }
}

impl PipelineWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.mark_published", skip_all)]
    async fn mark_published(&mut self, rows: &[Publication], now: i64) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let positions: Vec<i64> = rows.iter().map(|p| p.position).collect();
        let topics: Vec<&str> = rows.iter().map(|p| p.topic.as_str()).collect();
        let partitions: Vec<i32> = rows.iter().map(|p| p.partition).collect();
        let offsets: Vec<i64> = rows.iter().map(|p| p.offset).collect();
        let c = self.conn()?;
        exec(
            c,
            "UPDATE outbox o SET published_at = $5, kafka_topic = u.t, kafka_partition = u.p, kafka_offset = u.o
             FROM UNNEST($1::bigint[], $2::text[], $3::int[], $4::bigint[]) AS u(pos, t, p, o)
             WHERE o.position = u.pos",
            &[&positions, &topics, &partitions, &offsets, &now],
        )
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.take_lease", skip_all)]
    async fn take_lease(&mut self, name: &str, holder: &str, ttl_ms: i64, now: i64) -> Result<bool, StoreError> {
        let c = self.conn()?;
        Ok(exec(c, q::TAKE_LEASE, &[&name, &holder, &now, &ttl_ms]).await? == 1)
    }

    #[tracing::instrument(level = "debug", name = "postgres.release_lease", skip_all)]
    async fn release_lease(&mut self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let c = self.conn()?;
        Ok(exec(c, q::RELEASE_LEASE, &[&name, &holder]).await? == 1)
    }

    #[tracing::instrument(level = "debug", name = "postgres.insert_dead_letter", skip_all)]
    async fn insert_dead_letter(&mut self, d: &NewDeadLetter, now: i64) -> Result<(), StoreError> {
        let c = self.conn()?;
        exec(
            c,
            q::INSERT_DEAD_LETTER,
            &[&d.consumer, &d.event_id, &d.event_type, &d.payload, &d.source, &d.error, &d.attempts, &now],
        )
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.prune_outbox", skip_all)]
    async fn prune_outbox(
        &mut self,
        before: i64,
        floor: LogCursor,
        published_only: bool,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let c = self.conn()?;
        exec(c, q::PRUNE_OUTBOX, &[&before, &floor.0, &floor.1, &i64::from(published_only), &(limit as i64)]).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.mark_dead_letters_published", skip_all)]
    async fn mark_dead_letters_published(&mut self, letters: &[(i64, i64)], now: i64) -> Result<(), StoreError> {
        if letters.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = letters.iter().map(|l| l.0).collect();
        let versions: Vec<i64> = letters.iter().map(|l| l.1).collect();
        let c = self.conn()?;
        exec(
            c,
            "UPDATE dead_letter d SET dlq_published_at = $3 FROM UNNEST($1::bigint[], $2::bigint[]) AS u(id, v)
             WHERE d.id = u.id AND d.updated_at = u.v",
            &[&ids, &versions, &now],
        )
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.update_dead_letter", skip_all)]
    async fn update_dead_letter(
        &mut self,
        id: i64,
        from: &str,
        change: &DeadLetterChange,
        now: i64,
    ) -> Result<bool, StoreError> {
        let c = self.conn()?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&id, &from, &change.status, &change.payload, &change.error, &now];
        Ok(exec(c, q::UPDATE_DEAD_LETTER, &params).await? == 1)
    }
}
