//! All integration tests in one binary (one link, shared harness). Each test runs once
//! on SQLite and once on PostgreSQL, on its own fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::field_reassign_with_default)]

mod admin;
mod auth;
mod authz;
mod binary;
mod cache;
mod cluster;
mod faults;
mod group_commit;
mod helpers;
mod im;
mod large_groups;
mod limits;
mod message_features;
mod moderation;
mod ops;
mod pipeline;
mod realtime;
mod rules;
mod tls;
mod users;
