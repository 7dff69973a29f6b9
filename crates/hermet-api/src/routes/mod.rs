//! Handlers, one module per resource. Each handler's doc line gives its method and path.

pub mod admin;
pub mod auth;
pub mod channels;
pub mod contacts;
pub mod conversations;
pub mod ops;
pub mod users;
pub mod ws;
