//! The compensation scanner (`000_70dd81066eae5b2b.txt` §5.3 方案1). With the
//! transactional outbox an event cannot be lost between the write side and the outbox,
//! but a change can still go unannounced (rows written by an older version, an import,
//! a manual fix) or unprojected (a dead-lettered event, a read model damaged by hand).
//! The scanner looks at groups created in a recent window, older than a grace period so
//! it never races the pipeline:
//! - a group without a `channel.created` event in the outbox gets one;
//! - a group where an active member has no conversation row gets its `channel.created`
//!   re-emitted, which re-projects every member's row and notifies them again.
//!
//! Re-emitted events have new ids and go through the normal path (outbox, then
//! dual-write or consumers), so they are published, projected and notified like any
//! other. Notifications are at-least-once anyway; clients de-duplicate by content ids.

use std::collections::BTreeSet;

use hermet_domain::event::{self, DomainEvent};
use hermet_domain::id::ChannelId;
use hermet_domain::time::now_ms;
use hermet_domain::{Error, Result};
use hermet_store::{Database, Locks, PipelineWrites, Transaction};
use serde::Serialize;

use crate::App;

/// What one scan found and re-emitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompensationReport {
    /// Groups that had no `channel.created` event.
    pub unannounced: Vec<ChannelId>,
    /// Groups with members missing their conversation row.
    pub unprojected: Vec<ChannelId>,
}

const SCAN_LIMIT: u32 = 1_000;
const LEASE: &str = "compensation";

impl<D: Database> App<D> {
    /// Scans groups created in `[since, until)` and re-emits what is missing.
    pub async fn compensate(&self, since: i64, until: i64) -> Result<CompensationReport> {
        let unannounced = self.db.groups_without_created_event(since, until, SCAN_LIMIT).await?;
        let unprojected: Vec<ChannelId> = self
            .db
            .groups_without_views(since, until, SCAN_LIMIT)
            .await?
            .into_iter()
            .filter(|c| !unannounced.contains(c))
            .collect();
        for (c, reason) in
            unannounced.iter().map(|c| (c, "unannounced")).chain(unprojected.iter().map(|c| (c, "unprojected")))
        {
            self.reemit_channel_created(*c).await?;
            metrics::counter!("compensation_reemitted_total", "reason" => reason).increment(1);
            tracing::warn!(channel = %c, reason, "compensation: channel.created re-emitted");
        }
        Ok(CompensationReport { unannounced, unprojected })
    }

    /// One periodic scan over the configured window, by whichever node holds the lease.
    pub async fn compensate_now(&self, node: &str) -> Result<Option<CompensationReport>> {
        let s = &self.settings.pipeline;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let ttl = (s.compensation_interval_secs.max(1) * 1000) as i64;
        if !tx.take_lease(LEASE, node, ttl, now).await? {
            return Ok(None);
        }
        tx.commit().await?;
        let since = now - (s.compensation_lookback_secs * 1000) as i64;
        let until = now - (s.compensation_grace_secs * 1000) as i64;
        self.compensate(since, until).await.map(Some)
    }

    async fn reemit_channel_created(&self, id: ChannelId) -> Result<()> {
        // Read the members before taking a connection for the transaction.
        let members: BTreeSet<_> = self.db.channel_audience(&[id]).await?.into_iter().map(|(_, u, _)| u).collect();
        let mut tx = self.db.begin().await?;
        let Some(c) = tx.lock_channel(id, true).await? else { return Err(Error::NotFound("channel")) };
        let now = now_ms();
        let ev = DomainEvent::ChannelCreated(event::ChannelCreated {
            channel_id: c.id,
            channel_type: c.channel_type.as_str().to_owned(),
            channel_name: c.name.clone(),
            avatar: c.avatar.clone(),
            creator_id: c.creator_id,
            member_ids: members.into_iter().collect(),
            created_at: c.created_at,
        });
        self.record(&mut tx, &[ev], now).await?;
        self.commit(tx).await
    }
}
