//! The hermet binary's library: configuration, telemetry and start-up, shared by
//! `main.rs` and the integration tests.

pub mod bench;
pub mod cli;
pub mod config;
#[cfg(test)]
mod doc_paths;
pub mod startup;
pub mod telemetry;
