//! Domain types of hermet: ids, validated values, users, domain events and the one
//! closed error enum. This crate does no I/O and depends on no other hermet crate.

pub mod channel;
pub mod contact;
pub mod error;
pub mod event;
pub mod id;
pub mod message;
pub mod projection;
pub mod time;
pub mod user;
pub mod validate;

pub use error::{Error, ErrorCode, Result};
