//! The realtime gateway's core, independent of the WebSocket library: the registry of
//! this node's connections (user → connections, each with a bounded send queue), the
//! server frames of the protocol (docs/PROTOCOL.md), and [`GatewayPush`], the
//! [`PushSink`] the notifier delivers through.
//!
//! Backpressure: every connection has a queue of `send_queue` frames; a connection whose
//! queue is full is dropped from the registry and told to close ("slow consumer"), so a
//! client that cannot keep up costs bounded memory and never slows the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hermet_domain::id::{SessionId, UserId};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::pipeline::notify::{Notification, PushFuture, PushSink};

/// The protocol version announced in `ready`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The `[gateway]` section of hermet's configuration.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Connections one user may hold at once (devices, tabs).
    pub max_connections_per_user: usize,
    /// Frames queued per connection before it counts as a slow consumer.
    pub send_queue: usize,
    /// A connection that sends nothing (not even `ping`) for this long is closed.
    pub idle_timeout_secs: u64,
    /// How long a browser has to send its `auth` frame.
    pub auth_timeout_secs: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self { max_connections_per_user: 10, send_queue: 1_024, idle_timeout_secs: 90, auth_timeout_secs: 10 }
    }
}

/// Why the server closes a connection (sent in the close frame; code 4000 + n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its send queue overflowed: reconnect and resync.
    SlowConsumer,
    /// The session was signed out or the user disabled.
    Revoked,
    TooManyConnections,
    IdleTimeout,
    Unauthenticated,
    ShuttingDown,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Unauthenticated => 4001,
            CloseReason::Revoked => 4003,
            CloseReason::SlowConsumer => 4008,
            CloseReason::TooManyConnections => 4009,
            CloseReason::IdleTimeout => 4010,
            CloseReason::ShuttingDown => 4011,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Unauthenticated => "unauthenticated",
            CloseReason::Revoked => "session revoked",
            CloseReason::SlowConsumer => "slow consumer: reconnect and resync",
            CloseReason::TooManyConnections => "too many connections for this user",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::ShuttingDown => "server shutting down",
        }
    }
}

/// A server → client frame that is not a reply (replies are built by the socket).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventFrame<'a> {
    #[serde(rename = "type")]
    pub frame_type: &'static str,
    /// The domain event's id: the same event pushed twice (at-least-once) has the same id.
    pub event_id: String,
    pub occurred_at: i64,
    pub data: &'a serde_json::Value,
}

/// The frame type a domain event is pushed as (docs/PROTOCOL.md).
pub fn frame_type(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "message.sent" => "message.new",
        "channel.created" => "channel.created",
        "channel.updated" => "channel.updated",
        "channel.dismissed" => "channel.dismissed",
        "channel.member_added" => "member.added",
        "channel.member_removed" => "member.removed",
        "channel.member_role_changed" | "channel.member_updated" => "member.updated",
        "channel.application_created" | "channel.application_reviewed" => "channel.application",
        "contact.application_created" | "contact.application_reviewed" => "contact.application",
        "friendship.created" | "friendship.updated" | "friendship.deleted" => "contact.updated",
        "user.profile_updated" => "profile.updated",
        "conversation.read" => "read.updated",
        "conversation.settings_changed" => "conversation.settings",
        _ => return None,
    })
}

struct Conn {
    id: u64,
    session: SessionId,
    tx: mpsc::Sender<Arc<str>>,
    close: watch::Sender<Option<CloseReason>>,
}

/// A registered connection, held by its socket task.
pub struct Registration {
    pub id: u64,
    /// Frames to send, in order.
    pub frames: mpsc::Receiver<Arc<str>>,
    /// Set when the server wants the connection closed.
    pub close: watch::Receiver<Option<CloseReason>>,
}

/// This node's connections.
pub struct Registry {
    settings: GatewaySettings,
    conns: Mutex<HashMap<UserId, Vec<Conn>>>,
    next_id: AtomicU64,
}

impl Registry {
    pub fn new(settings: GatewaySettings) -> Self {
        Self { settings, conns: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1) }
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Vec<Conn>>> {
        // A panic while holding the lock leaves the map consistent (no multi-step edits).
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection of `user`; refused beyond `max_connections_per_user`.
    pub fn register(&self, user: UserId, session: SessionId) -> Result<Registration, CloseReason> {
        let mut conns = self.lock();
        let list = conns.entry(user).or_default();
        if list.len() >= self.settings.max_connections_per_user {
            return Err(CloseReason::TooManyConnections);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, frames) = mpsc::channel(self.settings.send_queue.max(1));
        let (close_tx, close) = watch::channel(None);
        list.push(Conn { id, session, tx, close: close_tx });
        metrics::gauge!("gateway_connections").increment(1.0);
        Ok(Registration { id, frames, close })
    }

    pub fn unregister(&self, user: UserId, id: u64) {
        let mut conns = self.lock();
        if let Some(list) = conns.get_mut(&user) {
            let before = list.len();
            list.retain(|c| c.id != id);
            if list.len() < before {
                metrics::gauge!("gateway_connections").decrement(1.0);
            }
            if list.is_empty() {
                conns.remove(&user);
            }
        }
    }

    /// Connections open on this node (all users).
    pub fn connection_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Queues `frame` on every connection of `users`; a connection whose queue is full is
    /// removed and told to close (slow consumer). Returns how many connections got it.
    pub fn deliver(&self, users: &[UserId], frame: &Arc<str>) -> usize {
        let mut delivered = 0;
        let mut conns = self.lock();
        for u in users {
            let Some(list) = conns.get_mut(u) else { continue };
            list.retain(|c| match c.tx.try_send(frame.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = c.close.send(Some(CloseReason::SlowConsumer));
                    metrics::counter!("gateway_slow_consumers_total").increment(1);
                    metrics::gauge!("gateway_connections").decrement(1.0);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    metrics::gauge!("gateway_connections").decrement(1.0);
                    false
                }
            });
            if list.is_empty() {
                conns.remove(u);
            }
        }
        delivered
    }

    /// Closes every connection of `session` (signed out) or, with `None`, of `user`.
    pub fn close(&self, user: UserId, session: Option<SessionId>, reason: CloseReason) -> usize {
        let conns = self.lock();
        let mut n = 0;
        for c in conns.get(&user).into_iter().flatten() {
            if session.is_none_or(|s| s == c.session) {
                let _ = c.close.send(Some(reason));
                n += 1;
            }
        }
        n
    }
}

/// The notifier's sink on a node that runs the gateway: each notification is serialized
/// once and queued on the recipients' connections on this node.
pub struct GatewayPush {
    registry: Arc<Registry>,
}

impl GatewayPush {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

impl PushSink for GatewayPush {
    fn push<'a>(&'a self, users: &'a [UserId], n: &'a Arc<Notification>) -> PushFuture<'a> {
        Box::pin(async move {
            let Some(frame_type) = frame_type(&n.event_type) else { return Ok(()) };
            let frame = EventFrame {
                frame_type,
                event_id: n.event_id.to_string(),
                occurred_at: n.occurred_at,
                data: &n.payload,
            };
            let text: Arc<str> = serde_json::to_string(&frame)?.into();
            self.registry.deliver(users, &text);
            Ok(())
        })
    }
}

/// Pushes to several sinks (the gateway and an in-process observer).
pub struct TeePush(pub Vec<Arc<dyn PushSink>>);

impl PushSink for TeePush {
    fn push<'a>(&'a self, users: &'a [UserId], n: &'a Arc<Notification>) -> PushFuture<'a> {
        Box::pin(async move {
            for sink in &self.0 {
                sink.push(users, n).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_connection_and_asks_it_to_close() {
        let r = Registry::new(GatewaySettings { send_queue: 2, max_connections_per_user: 2, ..Default::default() });
        let (slow, fast) = (UserId(1), UserId(2));
        let mut s = r.register(slow, SessionId(1)).unwrap();
        let mut f = r.register(fast, SessionId(2)).unwrap();
        let frame: Arc<str> = Arc::from("{}");
        for _ in 0..2 {
            assert_eq!(r.deliver(&[slow, fast], &frame), 2);
            f.frames.try_recv().unwrap();
        }
        assert_eq!(r.deliver(&[slow, fast], &frame), 1, "the slow one is dropped");
        assert_eq!(*s.close.borrow_and_update(), Some(CloseReason::SlowConsumer));
        assert_eq!(r.connection_count(), 1);
        assert!(r.register(fast, SessionId(3)).is_ok());
        assert_eq!(r.register(fast, SessionId(4)).err(), Some(CloseReason::TooManyConnections));
        assert!(s.frames.try_recv().is_ok(), "what was queued before stays readable");
    }
}
