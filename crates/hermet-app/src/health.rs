//! The database's health as a watchdog sees it. A stopped server refuses connections and
//! every request fails fast on its own; a frozen one (a hung host, a stalled disk, a
//! `SIGSTOP`) accepts and never answers, and every request would hang until the request
//! timeout while holding its connection. So, on PostgreSQL, a watchdog asks the server
//! every [`PROBE_EVERY`] on a connection of its own ([`Database::probe`]) and gives it
//! [`PROBE_TIMEOUT`]. A probe that fails (refused, broken) marks the database down, and so
//! do two in a row that time out (one slow answer on a loaded machine is not an outage);
//! down answers waiting and new requests 503 `database_unavailable` at once
//! (`hermet-api`). The first probe that succeeds marks it up again.
//!
//! `database_up` (gauge) is 1 or 0. SQLite is a file in this process and is always up.

use std::time::Duration;

use hermet_store::Database;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::App;

/// How often the watchdog asks.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long an answer may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(750);

pub(crate) struct Health {
    up: watch::Sender<bool>,
}

impl Health {
    pub(crate) fn new() -> Self {
        Self { up: watch::channel(true).0 }
    }
}

impl<D: Database> App<D> {
    /// Whether the database answers, as the watchdog last saw it (always true without one).
    pub fn database_up(&self) -> watch::Receiver<bool> {
        self.health.up.subscribe()
    }

    /// Probes the database until `shutdown` (PostgreSQL; returns at once on SQLite).
    pub async fn run_database_watchdog(self, shutdown: CancellationToken) {
        if self.db.backend() == "sqlite" {
            return;
        }
        metrics::gauge!("database_up").set(1.0);
        let mut timeouts = 0;
        loop {
            // after a timeout, the next probe at once
            let pause = if timeouts > 0 { Duration::ZERO } else { PROBE_EVERY };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => return,
            }
            let answer = match tokio::time::timeout(PROBE_TIMEOUT, self.db.probe()).await {
                Ok(Ok(())) => {
                    timeouts = 0;
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => {
                    timeouts += 1;
                    if timeouts < 2 {
                        continue;
                    }
                    Err(format!("no answer within {PROBE_TIMEOUT:?}, twice"))
                }
            };
            let up = answer.is_ok();
            let was = self.health.up.send_replace(up);
            if was != up {
                metrics::gauge!("database_up").set(if up { 1.0 } else { 0.0 });
                match answer {
                    Ok(()) => tracing::info!("the database answers again"),
                    Err(e) => {
                        tracing::error!(error = %e, "the database does not answer: requests get 503 until it does")
                    }
                }
            }
        }
    }
}
