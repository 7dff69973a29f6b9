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
pub enum Command {
    /// Run every role in one process: HTTP API (the default).
    Serve,
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
    /// Rebuild the read models (conversation and contact views, reverse indexes) from
    /// the write side.
    RebuildViews {
        /// Rebuild only this user's rows.
        #[arg(long)]
        user: Option<i64>,
    },
}
