//! The realtime gateway's core, independent of the WebSocket library: the registry of
//! this node's connections (user → connections, each with a bounded send queue), the
//! nodes as one ([`Cluster`]), and [`GatewayPush`], the [`PushSink`] the notifier
//! delivers through. The frames themselves are in [`crate::push`].
//!
//! Backpressure: every connection has a queue of `send_queue` frames; a connection whose
//! queue is full is dropped from the registry and told to close ("slow consumer"), so a
//! client that cannot keep up costs bounded memory and never slows the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hermet_domain::id::{SessionId, UserId};
use hermet_store::ConversationRow;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::push::{BoxFuture, EventFrame, Frame, Notification, PushFuture, PushSink};

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
    /// A frame the socket cannot write within this long (the client stopped reading)
    /// makes it a slow consumer: closed, so it never pins memory.
    pub write_timeout_secs: u64,
    /// Catch-up reads the inbox in pages of this many entries.
    pub sync_page_size: u32,
    /// How often a node renews its liveness key and re-asserts its users' presence in
    /// Redis.
    pub heartbeat_secs: u64,
    /// A node that has not renewed its liveness key for this long counts as gone: its
    /// presence entries are ignored (and removed when it restarts).
    pub node_ttl_secs: u64,
    /// Each connection checks this often that its session is still live, and closes with
    /// 4003 when it is not: the fallback for a revocation broadcast lost between nodes
    /// (Redis away). 0: never.
    pub session_check_secs: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            max_connections_per_user: 10,
            send_queue: 1_024,
            idle_timeout_secs: 90,
            auth_timeout_secs: 10,
            write_timeout_secs: 10,
            sync_page_size: 200,
            heartbeat_secs: 10,
            node_ttl_secs: 30,
            session_check_secs: 30,
        }
    }
}

/// The largest frame a client may send (a `send` carries at most 64 KiB of content);
/// a larger one closes the socket with 1009.
pub const MAX_CLIENT_FRAME: usize = 256 * 1024;

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
    /// A client frame over the size limit (docs/PROTOCOL.md).
    FrameTooLarge,
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
            CloseReason::FrameTooLarge => 1009,
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
            CloseReason::FrameTooLarge => "frame larger than 262144 bytes",
        }
    }
}

/// Pushes on their way to connections, possibly on other nodes: distinct bodies and who
/// gets which, with which cursor. This is also the message nodes exchange.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pushes {
    pub bodies: Vec<Arc<str>>,
    /// (user, cursor or 0, index into `bodies`).
    pub to: Vec<(UserId, i64, u32)>,
}

impl Pushes {
    /// Keeps only the recipients `keep` accepts (a node's share).
    pub fn only(&self, keep: impl Fn(UserId) -> bool) -> Pushes {
        Pushes { bodies: self.bodies.clone(), to: self.to.iter().filter(|t| keep(t.0)).copied().collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.to.is_empty()
    }
}

struct Conn {
    id: u64,
    session: SessionId,
    tx: mpsc::Sender<Frame>,
    close: watch::Sender<Option<CloseReason>>,
}

/// A registered connection, held by its socket task.
pub struct Registration {
    pub id: u64,
    /// Frames to send, in order.
    pub frames: mpsc::Receiver<Frame>,
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

    /// Connections of `user` on this node.
    pub fn connections_of(&self, user: UserId) -> usize {
        self.lock().get(&user).map_or(0, Vec::len)
    }

    /// Every user with a connection here, with how many (presence heartbeats).
    pub fn users(&self) -> Vec<(UserId, usize)> {
        self.lock().iter().map(|(u, l)| (*u, l.len())).collect()
    }

    /// Queues each push on every connection of its user on this node; a connection whose
    /// queue is full is removed and told to close (slow consumer). Returns how many
    /// frames were queued.
    pub fn deliver(&self, pushes: &Pushes) -> usize {
        let mut delivered = 0;
        let mut conns = self.lock();
        for &(user, cursor, body) in &pushes.to {
            let Some(body) = pushes.bodies.get(body as usize) else { continue };
            let Some(list) = conns.get_mut(&user) else { continue };
            list.retain(|c| match c.tx.try_send(Frame { cursor, body: body.clone() }) {
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
                conns.remove(&user);
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

    /// Asks every connection to close (the node is shutting down).
    pub fn close_all(&self, reason: CloseReason) {
        for c in self.lock().values().flatten() {
            let _ = c.close.send(Some(reason));
        }
    }
}

/// Whether and where a user is connected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceStatus {
    pub online: bool,
    /// Open connections, all nodes together.
    pub connections: u64,
    /// When the user's last connection closed (ms), if known and offline.
    pub last_seen_at: Option<i64>,
}

/// The gateway nodes as one: presence (user → node → connections), push routing to the
/// nodes that hold the recipients, and session revocation everywhere. [`LocalCluster`]
/// is a single node (the embedded default); `hermet-redis` spans nodes.
pub trait Cluster: Send + Sync + 'static {
    /// This node's connections.
    fn registry(&self) -> &Arc<Registry>;
    /// A connection of `user` opened on this node (after [`Registry::register`]).
    fn connected(&self, user: UserId) -> BoxFuture<'_, ()>;
    /// A connection of `user` closed on this node (after [`Registry::unregister`]).
    fn disconnected(&self, user: UserId) -> BoxFuture<'_, ()>;
    /// Delivers `pushes` on this node and sends the rest to the nodes that hold them.
    /// Best effort: a device that misses a push catches up by cursor.
    fn route(&self, pushes: Pushes) -> BoxFuture<'_, anyhow::Result<()>>;
    fn presence(&self, user: UserId) -> BoxFuture<'_, anyhow::Result<PresenceStatus>>;
    /// Which of `users` have a connection on some node.
    fn online<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, anyhow::Result<Vec<UserId>>>;
    /// Closes the connections of `session` (or all of `user`'s) on every node.
    fn revoke(&self, user: UserId, session: Option<SessionId>) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// One node: presence is this node's registry.
pub struct LocalCluster {
    registry: Arc<Registry>,
    last_seen: Mutex<HashMap<UserId, i64>>,
}

impl LocalCluster {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry, last_seen: Mutex::new(HashMap::new()) }
    }
}

impl Cluster for LocalCluster {
    fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn connected(&self, _user: UserId) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn disconnected(&self, user: UserId) -> BoxFuture<'_, ()> {
        if self.registry.connections_of(user) == 0
            && let Ok(mut seen) = self.last_seen.lock()
        {
            seen.insert(user, hermet_domain::time::now_ms());
        }
        Box::pin(async {})
    }

    fn route(&self, pushes: Pushes) -> BoxFuture<'_, anyhow::Result<()>> {
        self.registry.deliver(&pushes);
        Box::pin(async { Ok(()) })
    }

    fn presence(&self, user: UserId) -> BoxFuture<'_, anyhow::Result<PresenceStatus>> {
        let connections = self.registry.connections_of(user) as u64;
        let last_seen_at =
            if connections == 0 { self.last_seen.lock().ok().and_then(|s| s.get(&user).copied()) } else { None };
        Box::pin(async move { Ok(PresenceStatus { online: connections > 0, connections, last_seen_at }) })
    }

    fn online<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, anyhow::Result<Vec<UserId>>> {
        let online = users.iter().copied().filter(|u| self.registry.connections_of(*u) > 0).collect();
        Box::pin(async move { Ok(online) })
    }

    fn revoke(&self, user: UserId, session: Option<SessionId>) -> BoxFuture<'_, anyhow::Result<()>> {
        self.registry.close(user, session, CloseReason::Revoked);
        Box::pin(async { Ok(()) })
    }
}

/// Turns a conversation-view row into the text of its `conversation.updated` frame (the
/// row as the API's DTO, given by the HTTP layer), serialized in one pass.
pub type ConversationFrame = fn(&ConversationRow) -> String;

/// The notifier's sink on a node that runs the gateway (or on a `hermet project` node
/// with a cluster): each notification is serialized once and routed to the recipients'
/// connections, here or on their nodes.
pub struct GatewayPush {
    cluster: Arc<dyn Cluster>,
    conversation_frame: ConversationFrame,
}

impl GatewayPush {
    pub fn new(cluster: Arc<dyn Cluster>, conversation_frame: ConversationFrame) -> Self {
        Self { cluster, conversation_frame }
    }
}

impl PushSink for GatewayPush {
    fn push<'a>(&'a self, targets: &'a [(UserId, i64)], n: &'a Arc<Notification>) -> PushFuture<'a> {
        Box::pin(async move {
            let Some(body) = EventFrame::body(&n.event_type, n.event_id, n.occurred_at, &n.payload) else {
                return Ok(());
            };
            let pushes = Pushes { bodies: vec![body], to: targets.iter().map(|&(u, c)| (u, c, 0)).collect() };
            self.cluster.route(pushes).await
        })
    }

    fn push_conversations<'a>(&'a self, rows: &'a [ConversationRow]) -> PushFuture<'a> {
        Box::pin(async move {
            let mut pushes = Pushes::default();
            for row in rows {
                pushes.to.push((row.user_id, 0, pushes.bodies.len() as u32));
                pushes.bodies.push((self.conversation_frame)(row).into());
            }
            self.cluster.route(pushes).await
        })
    }

    fn push_state<'a>(&'a self, users: &'a [UserId], body: Arc<str>) -> PushFuture<'a> {
        Box::pin(async move {
            let pushes = Pushes { bodies: vec![body], to: users.iter().map(|u| (*u, 0, 0)).collect() };
            self.cluster.route(pushes).await
        })
    }

    fn online<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, anyhow::Result<Vec<UserId>>> {
        self.cluster.online(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(users: &[UserId], cursor: i64) -> Pushes {
        Pushes { bodies: vec![Arc::from("{\"type\":\"x\"}")], to: users.iter().map(|u| (*u, cursor, 0)).collect() }
    }

    #[test]
    fn a_full_queue_drops_the_connection_and_asks_it_to_close() {
        let r = Registry::new(GatewaySettings { send_queue: 2, max_connections_per_user: 2, ..Default::default() });
        let (slow, fast) = (UserId(1), UserId(2));
        let mut s = r.register(slow, SessionId(1)).unwrap();
        let mut f = r.register(fast, SessionId(2)).unwrap();
        for i in 0..2 {
            assert_eq!(r.deliver(&one(&[slow, fast], i + 1)), 2);
            f.frames.try_recv().unwrap();
        }
        assert_eq!(r.deliver(&one(&[slow, fast], 3)), 1, "the slow one is dropped");
        assert_eq!(*s.close.borrow_and_update(), Some(CloseReason::SlowConsumer));
        assert_eq!(r.connection_count(), 1);
        assert!(r.register(fast, SessionId(3)).is_ok());
        assert_eq!(r.register(fast, SessionId(4)).err(), Some(CloseReason::TooManyConnections));
        assert!(s.frames.try_recv().is_ok(), "what was queued before stays readable");
    }
}
