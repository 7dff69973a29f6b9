//! Structured logs with tracing: pretty for people, JSON for machines.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, filter};

use crate::config::LogFormat;

/// Installs the global subscriber; `RUST_LOG` overrides `level`. A second call (tests)
/// leaves the first in place.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let debug = filter.max_level_hint().is_some_and(|l| l >= LevelFilter::DEBUG);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        // Each line carries the span it was logged in and the spans around it (request,
        // command, store, commit, with their fields). Once `log_level` enables debug
        // (`info,hermet_app=debug,hermet_store=debug`: commands, queries and driver calls
        // have debug spans), the end of every span is a line of its own with `time.busy`
        // and `time.idle` and the same span list, so one request reads as a timed tree
        // under its request id. At the default level no line is added.
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(true))
            .with(debug.then(|| {
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_span_events(fmt::format::FmtSpan::CLOSE)
                    .with_filter(filter::filter_fn(|meta| meta.is_span()))
            }))
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
}
