//! Background upkeep of the pipeline: the metrics that need a query (consumer lag on the
//! embedded log, outbox backlog on Kafka, dead letters waiting) and the periodic
//! compensation scan.

use std::time::Duration;

use hermet_domain::time::now_ms;
use hermet_store::Database;
use hermet_store::InboxWrites;
use tokio_util::sync::CancellationToken;

use hermet_store::{PipelineWrites, Transaction};

use super::{CONSUMERS, Transport};
use crate::App;

const SAMPLE_EVERY: Duration = Duration::from_secs(5);

impl<D: Database> App<D> {
    /// Samples the pipeline gauges every few seconds until `shutdown`.
    pub async fn run_pipeline_metrics(&self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.sample_pipeline_metrics().await {
                tracing::debug!(error = ?e, "cannot sample pipeline metrics");
            }
            tokio::select! {
                _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    pub async fn sample_pipeline_metrics(&self) -> hermet_domain::Result<()> {
        metrics::gauge!("dead_letters_pending").set(self.db.pending_dead_letters().await? as f64);
        match self.settings.pipeline.transport {
            Transport::Embedded => {
                for name in self.active_consumers() {
                    let lag = self.events_left(name).await?;
                    metrics::gauge!("consumer_lag_events", "consumer" => name).set(lag as f64);
                }
            }
            Transport::Kafka => {
                let (count, oldest) = self.db.outbox_backlog().await?;
                metrics::gauge!("outbox_backlog_events").set(count as f64);
                let age = oldest.map(|t| (now_ms() - t).max(0) as f64 / 1000.0).unwrap_or(0.0);
                metrics::gauge!("outbox_oldest_unsent_age_seconds").set(age);
            }
        }
        Ok(())
    }

    /// Prunes old outbox rows every `outbox_prune_interval_secs` until `shutdown`. Nodes
    /// may prune at the same time: each DELETE removes what the other has not.
    pub async fn run_outbox_pruning(&self, shutdown: CancellationToken) {
        every(self.settings.pipeline.outbox_prune_interval_secs, &shutdown, || async {
            match self.prune_inbox().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned old inbox entries"),
                Err(e) => tracing::warn!(error = ?e, "inbox pruning failed"),
            }
            match self.prune_outbox().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned old outbox rows"),
                Err(e) => tracing::warn!(error = ?e, "outbox pruning failed"),
            }
        })
        .await
    }

    /// Deletes outbox rows older than `outbox_retention_secs` that nothing needs any more:
    /// on the embedded log, rows every consumer group has passed (a group that keeps an
    /// offset, or that this node runs, counts; one without an offset yet holds everything);
    /// on Kafka, published rows. In statements of 10,000 rows, each its own transaction.
    pub async fn prune_outbox(&self) -> hermet_domain::Result<u64> {
        const CHUNK: u32 = 10_000;
        let s = &self.settings.pipeline;
        let before = now_ms() - (s.outbox_retention_secs as i64).saturating_mul(1000);
        let (floor, published_only) = match s.transport {
            Transport::Kafka => ((i64::MAX, i64::MAX), true),
            Transport::Embedded => {
                let stored = self.db.consumer_offsets("").await?;
                let mut floor = (i64::MAX, i64::MAX);
                for name in CONSUMERS {
                    let at = stored.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
                    match at {
                        Some(c) => floor = floor.min(c),
                        None if self.active_consumers().contains(&name) => floor = (0, 0),
                        None => {}
                    }
                }
                (floor, false)
            }
        };
        let mut total = 0;
        loop {
            let mut tx = self.db.begin().await?;
            let n = tx.prune_outbox(before, floor, published_only, CHUNK).await?;
            tx.commit().await?;
            total += n;
            metrics::counter!("outbox_pruned_total").increment(n);
            if n < u64::from(CHUNK) {
                return Ok(total);
            }
        }
    }

    /// Deletes users' inbox entries older than `inbox_retention_secs` or more than
    /// `inbox_max_per_user` behind their user's cursor, 10,000 per transaction. A client
    /// whose cursor is older is told to refetch its lists (`sync.reset`).
    pub async fn prune_inbox(&self) -> hermet_domain::Result<u64> {
        const CHUNK: u32 = 10_000;
        let s = &self.settings.pipeline;
        let before = now_ms() - (s.inbox_retention_secs as i64).saturating_mul(1000);
        let keep = i64::try_from(s.inbox_max_per_user).unwrap_or(i64::MAX);
        let mut total = 0;
        loop {
            let mut tx = self.db.begin().await?;
            let n = tx.prune_inbox(before, keep, CHUNK).await?;
            tx.commit().await?;
            total += n;
            metrics::counter!("inbox_pruned_total").increment(n);
            if n < u64::from(CHUNK) {
                return Ok(total);
            }
        }
    }

    /// Runs the compensation scanner every `compensation_interval_secs` (one node at a
    /// time: the scan takes a lease) until `shutdown`.
    pub async fn run_compensation(&self, node: String, shutdown: CancellationToken) {
        every(self.settings.pipeline.compensation_interval_secs, &shutdown, || async {
            match self.compensate_now(&node).await {
                Ok(Some(r)) if !r.unannounced.is_empty() || !r.unprojected.is_empty() => {
                    tracing::warn!(?r, "compensation re-emitted events");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "compensation scan failed"),
            }
        })
        .await
    }
}

/// Runs `f` every `secs` seconds (the first time after one period) until `shutdown`;
/// never when `secs` is 0.
async fn every<F, Fut>(secs: u64, shutdown: &CancellationToken, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if secs == 0 {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
            _ = shutdown.cancelled() => return,
        }
        f().await;
    }
}
