//! How every command ends: its events go to the outbox and, in dual-write mode, their
//! projection is applied in the same transaction; plus per-command metrics.

use std::future::Future;
use std::time::Instant;

use hermet_domain::event::{DomainEvent, OutboxEvent};
use hermet_domain::id::EventId;
use hermet_domain::projection::{Refresh, project_all};
use hermet_domain::{Error, Result};
use hermet_store::{Database, LogCursor, OutboxWrites, ProjectionWrites, Touched, Transaction};

use crate::cache::Scope;

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
        let refresh = project_all(events);
        touch(tx.touched(), events, &refresh);
        if self.sync_mode() == crate::SyncMode::DualWrite && !refresh.is_empty() {
            tx.apply_refresh(&refresh, now).await?;
        }
        Ok(())
    }

    /// Commits `tx`, then moves the cache generations of what it touched (also when the
    /// commit failed: its outcome may be unknown, and a spurious miss costs one read).
    /// Before the caller answers, so no acknowledged write is ever hidden by the cache.
    pub(crate) async fn commit_touching(&self, mut tx: D::Tx) -> Result<Option<LogCursor>> {
        let touched = std::mem::take(tx.touched());
        let result = tx.commit().await;
        if self.cache.enabled() && !touched.is_empty() {
            self.cache.invalidate(&scopes(touched)).await;
        }
        Ok(result?)
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

fn scopes(t: Touched) -> Vec<Scope> {
    let mut s: Vec<Scope> = t.list_owners.into_iter().map(Scope::Lists).collect();
    s.extend(t.channels.into_iter().map(Scope::Channel));
    s.extend(t.sessions.into_iter().map(Scope::Session));
    s.extend(t.accounts.into_iter().map(Scope::Account));
    s.sort_unstable_by_key(|x| x.stripe());
    s.dedup();
    s
}

/// What cached reads `events` make stale at the write side's commit, in either sync
/// mode: a large group's message changes every member's computed row without writing
/// one; a read, a setting or a membership changes the owner's computed row even where
/// the stored one stays neutral (the refresh reports the stored rows it rewrites).
fn touch(t: &mut Touched, events: &[DomainEvent], refresh: &Refresh) {
    for e in events {
        if let DomainEvent::MessageSent(m) = e
            && m.read_diffusion
        {
            t.channels.push(m.channel_id);
        }
    }
    t.channels.extend_from_slice(&refresh.channels);
    t.list_owners.extend(refresh.conversations.iter().map(|(u, _)| *u));
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
