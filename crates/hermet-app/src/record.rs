//! How every command ends: its events go to the outbox and, in dual-write mode, their
//! projection is applied in the same transaction; plus per-command metrics.

use std::future::Future;
use std::time::Instant;

use hermet_domain::event::{DomainEvent, OutboxEvent};
use hermet_domain::id::EventId;
use hermet_domain::projection::project_all;
use hermet_domain::{Error, Result};
use hermet_store::{Database, OutboxWrites, ProjectionWrites};

use crate::App;

impl<D: Database> App<D> {
    /// Appends `events` to the outbox and, in dual-write mode, refreshes the read-model
    /// rows they change, all inside `tx` (a successful commit means write side, read
    /// models, reverse indexes and outbox agree). In async mode the consumers do it.
    pub(crate) async fn record(&self, tx: &mut D::Tx, events: &[DomainEvent], now: i64) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.append_only(tx, events, now).await?;
        if self.sync_mode() == crate::SyncMode::DualWrite {
            let refresh = project_all(events);
            if !refresh.is_empty() {
                tx.apply_refresh(&refresh, now).await?;
            }
        }
        Ok(())
    }

    /// Appends `events` to the outbox only: for a command that wrote the rows their
    /// projection would compute itself (a new group's views, by COPY), in dual-write mode.
    pub(crate) async fn append_only(&self, tx: &mut D::Tx, events: &[DomainEvent], now: i64) -> Result<()> {
        let ids = self.ids.next_many(events.len()).map_err(Error::internal)?;
        let rows: Vec<OutboxEvent> =
            events.iter().zip(ids).map(|(e, id)| OutboxEvent::new(EventId(id), now, e)).collect();
        tx.append_events(&rows).await?;
        Ok(())
    }
}

/// Runs a command, recording `command_duration_seconds{command}` and, on failure,
/// `command_errors_total{command,code}`.
pub(crate) async fn timed<T>(command: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
    let start = Instant::now();
    let result = f.await;
    metrics::histogram!("command_duration_seconds", "command" => command).record(start.elapsed().as_secs_f64());
    if let Err(e) = &result {
        metrics::counter!("command_errors_total", "command" => command, "code" => e.code()).increment(1);
    }
    result
}
