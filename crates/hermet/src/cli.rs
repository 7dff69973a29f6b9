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
}
