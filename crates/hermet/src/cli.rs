//! Command line: one binary, roles chosen by subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "hermet", version, about = "hermet instant-messaging server")]
pub struct Cli {
    /// TOML configuration file (default: ./hermet.toml if present).
    #[arg(long, global = true, env = "HERMET_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum BenchScenario {
    /// Group creation latency per size; with --database-url also the raw COPY of the same rows.
    CreateGroup {
        #[arg(long, value_delimiter = ',', default_value = "10,100,500,1000,5000,10000")]
        members: Vec<usize>,
        /// PostgreSQL to measure the baseline on (the server's database).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Sequential message sends to a group.
    Send {
        #[arg(long, default_value_t = 500)]
        members: usize,
        #[arg(long, default_value_t = 200)]
        messages: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process (the default): the HTTP API and, in async sync mode,
    /// the read-model consumers.
    Serve,
    /// Run only the consumers that keep the read models up to date (async sync mode),
    /// without HTTP, until SIGTERM/SIGINT.
    Project,
    /// Rewind (or move) a consumer of the event log; it re-projects from there.
    Replay {
        /// conversation-view-updater or contact-view-updater.
        #[arg(long)]
        consumer: String,
        /// `earliest`, a log cursor `TX:POSITION`, or a Unix time in milliseconds.
        #[arg(long, default_value = "earliest")]
        from: String,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Recompute every read-model row from the write side and report missing, extra and
    /// mismatched rows field by field; exits 1 when anything is inconsistent.
    CheckConsistency {
        /// Rewrite the inconsistent rows from the write side.
        #[arg(long)]
        repair: bool,
        /// Check only this user's rows.
        #[arg(long)]
        user: Option<i64>,
        /// Print at most this many findings.
        #[arg(long, default_value_t = 50)]
        show: usize,
    },
    /// Benchmarks against a running server (see docs/BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        scenario: BenchScenario,
        /// The server to drive.
        #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// An account listed in the server's admin_accounts (signed up if missing).
        #[arg(long, global = true, default_value = "bench-admin@bench.hermet")]
        admin_account: String,
        #[arg(long, global = true, default_value = "bench-admin-password")]
        admin_password: String,
        /// Repeats per measurement.
        #[arg(long, global = true, default_value_t = 5)]
        repeat: usize,
        /// Seed of the workload (names and order).
        #[arg(long, global = true, default_value_t = 42)]
        seed: u64,
        /// Also write the results as JSON here.
        #[arg(long, global = true)]
        json: Option<PathBuf>,
    },
    /// Rebuild the read models (conversation and contact views, reverse indexes) from
    /// the write side.
    RebuildViews {
        /// Rebuild only this user's rows.
        #[arg(long)]
        user: Option<i64>,
    },
}
