//! Structured logs with tracing: pretty for people, JSON for machines.

use tracing::Level;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, filter};

use crate::config::LogFormat;

/// Installs the global subscriber; `RUST_LOG` overrides `level`. A second call (tests)
/// leaves the first in place.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        // Each line carries the span it was logged in and the spans around it (request,
        // command, store, commit, with their fields). The end of a debug-level span
        // (commands, queries, driver calls) is a line of its own with `time.busy` and
        // `time.idle`, so one request reads as a timed tree once `log_level` enables them
        // (`info,hermet_app=debug,hermet_store=debug`); at the default level nothing is
        // added, and the request span's end is not repeated (its response line says it).
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(true))
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_span_events(fmt::format::FmtSpan::CLOSE)
                    .with_filter(filter::filter_fn(|meta| meta.is_span() && *meta.level() >= Level::DEBUG)),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
}
