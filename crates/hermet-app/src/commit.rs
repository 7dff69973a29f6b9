//! How every command ends, in order:
//!
//! 1. [`App::record`]: its events go to the outbox and, in dual-write mode, the
//!    read-model rows they change are refreshed in the same transaction
//!    ([`App::record_written`] for a command that wrote those rows itself);
//! 2. [`App::commit`]: the transaction commits; the cache generations of what it
//!    touched move forward; the relay and the consumers are woken; in `async` mode the
//!    command waits for its own projection (read-your-writes) before it answers.
//!
//! Group commit answers a whole batch of sends from one transaction, and frees the
//! batch's slot before anyone waits for the projection: it uses
//! [`App::commit_without_waiting`], which stops after step 2's wake-up and returns a
//! [`Committed`], and calls [`Committed::wait`] once the slot is free.
//!
//! Writers that append no events of their own (projectors, rebuilds) end with
//! [`App::commit_touching`]: commit and invalidate only.
//!
//! [`timed`] measures a whole command (`command_duration_seconds`,
//! `command_errors_total`).

use std::future::Future;
use std::time::Instant;

use hermet_domain::event::{DomainEvent, OutboxEvent};
use hermet_domain::id::EventId;
use hermet_domain::projection::{Refresh, project_all};
use hermet_domain::{Error, Result};
use hermet_store::{Database, LogCursor, OutboxWrites, ProjectionWrites, Touched, Transaction};

use crate::App;
use crate::cache::Scope;

/// A committed transaction whose events the author may still have to wait for: the
/// position of its last event in the log, if it appended any.
#[must_use = "a command answers after `wait`, so its author reads what it wrote"]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    cursor: Option<LogCursor>,
}

impl Committed {
    /// Nothing committed (a batch that wrote nothing).
    pub(crate) const NOTHING: Committed = Committed { cursor: None };

    /// The later of two commits: waiting for it covers both.
    pub(crate) fn and(self, other: Committed) -> Committed {
        Committed { cursor: self.cursor.max(other.cursor) }
    }

    /// In `async` mode, waits (bounded) until the projectors have applied this commit's
    /// events; at once in dual-write mode or when it appended none.
    /// False when the read models did not catch up in time (the write stays committed).
    pub(crate) async fn wait<D: Database>(self, app: &App<D>) -> bool {
        match self.cursor {
            Some(c) => app.read_your_writes(c).await,
            None => true,
        }
    }
}

impl<D: Database> App<D> {
    /// Appends `events` to the outbox and, in dual-write mode, refreshes the read-model
    /// rows they change, all inside `tx` (a successful commit means write side, read
    /// models, reverse indexes and outbox agree). In async mode the consumers do it.
    #[tracing::instrument(level = "debug", skip_all, fields(events = events.len()))]
    pub(crate) async fn record(&self, tx: &mut D::Tx, events: &[DomainEvent], now: i64) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.append_to_outbox(tx, events, now).await?;
        let refresh = project_all(events);
        touch(tx.touched(), events, &refresh);
        if self.sync_mode() == crate::SyncMode::DualWrite && !refresh.is_empty() {
            tx.apply_refresh(&refresh, now).await?;
        }
        Ok(())
    }

    /// [`App::record`] for a command that, in dual-write mode, wrote the read-model rows
    /// its events' projection would compute itself (a new group's views, by COPY) and
    /// touched them: then the events only go to the outbox. In async mode the command
    /// wrote no such rows, and this is [`App::record`].
    #[tracing::instrument(level = "debug", skip_all, fields(events = events.len()))]
    pub(crate) async fn record_written(&self, tx: &mut D::Tx, events: &[DomainEvent], now: i64) -> Result<()> {
        match self.sync_mode() {
            crate::SyncMode::DualWrite => self.append_to_outbox(tx, events, now).await,
            crate::SyncMode::Async => self.record(tx, events, now).await,
        }
    }

    async fn append_to_outbox(&self, tx: &mut D::Tx, events: &[DomainEvent], now: i64) -> Result<()> {
        // A message's event carries the message's id (both come from the one generator,
        // so it is unique among event ids): a recall finds the event by its unique
        // `event_id` to erase the content from the log too. Other events get new ids.
        let own_id = |e: &DomainEvent| match e {
            DomainEvent::MessageSent(m) => Some(EventId(m.message_id.get())),
            _ => None,
        };
        let mut ids =
            self.ids.next_many(events.iter().filter(|e| own_id(e).is_none()).count()).map_err(Error::internal)?;
        let rows: Vec<OutboxEvent> = events
            .iter()
            .map(|e| {
                let id = own_id(e).unwrap_or_else(|| EventId(ids.pop().unwrap_or_default()));
                OutboxEvent::new(id, now, e)
            })
            .collect();
        tx.append_events(&rows).await?;
        Ok(())
    }

    /// Ends a command: commits `tx`, invalidates what it touched, wakes the relay and
    /// consumers when it wrote events and, in `async` mode, waits for their projection
    /// (read-your-writes).
    pub(crate) async fn commit(&self, tx: D::Tx) -> Result<()> {
        if !self.commit_without_waiting(tx).await?.wait(self).await {
            crate::pipeline::read_model::mark_behind();
        }
        Ok(())
    }

    /// [`App::commit`] up to the read-your-writes wait, which is left to the caller
    /// ([`Committed::wait`]): group commit answers after freeing its slot.
    #[tracing::instrument(level = "debug", skip_all)]
    pub(crate) async fn commit_without_waiting(&self, tx: D::Tx) -> Result<Committed> {
        let cursor = self.commit_touching(tx).await?;
        if cursor.is_some() {
            self.wake_consumers();
        }
        Ok(Committed { cursor })
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
        match e {
            DomainEvent::MessageSent(m) if m.read_diffusion => t.channels.push(m.channel_id),
            DomainEvent::MessageRecalled(m) if m.read_diffusion => t.channels.push(m.channel_id),
            DomainEvent::MessageEdited(m) if m.read_diffusion => t.channels.push(m.channel_id),
            _ => {}
        }
    }
    t.channels.extend_from_slice(&refresh.channels);
    t.channels.extend_from_slice(&refresh.message_channels);
    t.list_owners.extend(refresh.conversations.iter().chain(&refresh.message_conversations).map(|(u, _)| *u));
}

/// Runs a command, recording `command_duration_seconds{command}` and, on failure,
/// `command_errors_total{command,code}`.
pub(crate) async fn timed<T>(command: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
    let start = Instant::now();
    let result = f.await;
    metrics::histogram!("command_duration_seconds", "command" => command).record(start.elapsed().as_secs_f64());
    if let Err(e) = &result {
        metrics::counter!("command_errors_total", "command" => command, "code" => e.code().as_str()).increment(1);
    }
    result
}
