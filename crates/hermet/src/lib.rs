//! The hermet binary's library: configuration, telemetry, start-up and the one-shot commands, shared by
//! `main.rs` and the integration tests.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
#[cfg(test)]
mod doc_paths;
pub mod search_bench;
pub mod startup;
pub mod telemetry;
