//! hermet's cluster layer on Redis ([`RedisCluster`]): several `hermet` nodes share
//! presence and route pushes to each other (docs/PROTOCOL.md "How pushes reach sockets", "Presence").
//!
//! Keys (all under `hermet:`):
//! - `node:{id}`: the node is alive; `SET … EX node_ttl_secs`, renewed every
//!   `heartbeat_secs`. A node that stops renewing counts as gone: its presence entries
//!   are ignored, and removed when it starts again.
//! - `presence:{user}`: hash node → that node's open connections of the user. Written
//!   with the node's exact local count (never incremented), so a lost write is corrected
//!   by the next heartbeat, which re-asserts every local user.
//! - `node:{id}:users`: the users a node wrote presence for (its clean-up list).
//! - `lastseen:{user}`: when the user's last connection on some node closed.
//!
//! Channels: `push:{id}` carries [`Pushes`] for the node's connections; `control`
//! carries revocations to every node. Pub/sub is at-most-once: a push lost here is
//! caught up by cursor (docs/PROTOCOL.md), which is what makes delivery at-least-once.
//!
//! A `rediss://` URL connects over TLS (rustls, ring provider), trusting the system's
//! store or the CA file of [`RedisTls`], with a client certificate when the server asks
//! for one (redis-server's `tls-auth-clients`).

pub mod breaker;
mod budgets;
mod generations;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hermet_app::gateway::{CloseReason, Cluster, GatewaySettings, PresenceStatus, Pushes, Registry};
use hermet_app::push::BoxFuture;
use hermet_domain::id::{SessionId, UserId};
use hermet_domain::time::now_ms;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use budgets::RedisBudgets;
pub use generations::RedisGenerations;

use crate::breaker::{Breaker, Refused};

/// How long a Redis call may take before it counts as failed: presence, routing and
/// heartbeats must not hold up a push or a request while Redis is away.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// A connection manager that gives up quickly (the breaker decides when to try again)
/// instead of retrying with a backoff that grows for minutes.
/// TLS files for a `rediss://` URL (PEM): a private CA to trust instead of the system's
/// store, and a client certificate with its key.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl RedisTls {
    fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// Problems with these files for `url`, each naming its setting (`redis_ca_file`, …).
    pub fn problems(&self, url: &str) -> Vec<String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut p = Vec::new();
        if self.is_empty() {
            return p;
        }
        if !url.starts_with("rediss://") {
            p.push("redis_ca_file, redis_cert_file, redis_key_file: only for a rediss:// redis_url".into());
        }
        let certs = |name: &str, path: &Path, p: &mut Vec<String>| match CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        {
            Ok(c) if c.is_empty() => p.push(format!("{name}: no PEM certificate in {}", path.display())),
            Ok(_) => {}
            Err(e) => p.push(format!("{name}: cannot read certificates from {}: {e}", path.display())),
        };
        if let Some(ca) = &self.ca_file {
            certs("redis_ca_file (HERMET_REDIS_CA_FILE)", ca, &mut p);
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                certs("redis_cert_file (HERMET_REDIS_CERT_FILE)", cert, &mut p);
                if let Err(e) = PrivateKeyDer::from_pem_file(key) {
                    p.push(format!(
                        "redis_key_file (HERMET_REDIS_KEY_FILE): cannot read a key from {}: {e}",
                        key.display()
                    ));
                }
            }
            (None, None) => {}
            _ => p.push("redis_cert_file and redis_key_file: set both or neither".into()),
        }
        p
    }
}

/// The client for `url`: over TLS for `rediss://`, with `tls`'s files when given.
pub fn client(url: &str, tls: &RedisTls) -> anyhow::Result<redis::Client> {
    if !url.starts_with("rediss://") {
        return Ok(redis::Client::open(url)?);
    }
    // The redis crate builds its rustls configuration with the process's provider: ring,
    // as for PostgreSQL (a no-op when already installed). rustls 0.23.48 deprecates ring
    // for lacking post-quantum key exchange; it is kept for the lighter build.
    #[allow(deprecated, reason = "ring is the chosen provider")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    if tls.is_empty() {
        return Ok(redis::Client::open(url)?);
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()));
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig { client_cert: read(cert)?, client_key: read(key)? }),
        _ => None,
    };
    let root_cert = tls.ca_file.as_deref().map(read).transpose()?;
    Ok(redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls, root_cert })?)
}

pub(crate) async fn connection(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(CALL_TIMEOUT)
        .set_response_timeout(CALL_TIMEOUT)
        .set_number_of_retries(1)
        .set_max_delay(100);
    ConnectionManager::new_with_config(client.clone(), config).await
}

const PRESENCE_KEY_TTL_SECS: i64 = 24 * 3600;
const LAST_SEEN_TTL_SECS: u64 = 30 * 24 * 3600;

fn node_key(node: u16) -> String {
    format!("hermet:node:{node}")
}
fn node_users_key(node: u16) -> String {
    format!("hermet:node:{node}:users")
}
fn presence_key(user: UserId) -> String {
    format!("hermet:presence:{user}")
}
fn last_seen_key(user: UserId) -> String {
    format!("hermet:lastseen:{user}")
}
fn push_channel(node: u16) -> String {
    format!("hermet:push:{node}")
}
const CONTROL_CHANNEL: &str = "hermet:control";

/// A revocation, sent to every node.
#[derive(Debug, Serialize, Deserialize)]
struct Revoke {
    from: u16,
    user: UserId,
    session: Option<SessionId>,
}

/// Presence and routing through Redis for the node `node`.
pub struct RedisCluster {
    client: redis::Client,
    conn: ConnectionManager,
    breaker: Breaker,
    node: u16,
    registry: Arc<Registry>,
    settings: GatewaySettings,
}

impl RedisCluster {
    /// Connects, and clears what this node left behind in an earlier life (entries of
    /// connections that died with it).
    pub async fn connect(url: &str, tls: &RedisTls, node: u16, registry: Arc<Registry>) -> anyhow::Result<Self> {
        let client = client(url, tls)?;
        let conn = connection(&client).await?;
        let settings = registry.settings().clone();
        let cluster = Self { client, conn, breaker: Breaker::new("cluster"), node, registry, settings };
        let stale = cluster.forget_node().await?;
        if stale > 0 {
            tracing::info!(node, users = stale, "cleared presence left by this node's previous run");
        }
        cluster.heartbeat().await?;
        Ok(cluster)
    }

    /// Removes this node's presence entries; returns how many users it had.
    async fn forget_node(&self) -> anyhow::Result<usize> {
        let mut c = self.conn.clone();
        let (users, _): (Vec<i64>, _) = self.breaker.call(CALL_TIMEOUT, c.smembers(node_users_key(self.node))).await?;
        let mut p = redis::pipe();
        for u in &users {
            p.hdel(presence_key(UserId(*u)), self.node).ignore();
        }
        p.del(node_users_key(self.node)).ignore();
        self.breaker.call(CALL_TIMEOUT, p.query_async::<()>(&mut c)).await?;
        Ok(users.len())
    }

    /// Renews the liveness key and re-asserts every local user's presence. After an
    /// outage this is also what puts back the node key and the presence Redis lost.
    async fn heartbeat(&self) -> Result<(), Refused> {
        let mut c = self.conn.clone();
        let mut p = redis::pipe();
        p.set_ex(node_key(self.node), now_ms(), self.settings.node_ttl_secs).ignore();
        for (user, n) in self.registry.users() {
            self.record(&mut p, user, n);
        }
        self.breaker.call(CALL_TIMEOUT, p.query_async::<()>(&mut c)).await?;
        Ok(())
    }

    /// Adds to `p`: `user` has `n` connections on this node.
    fn record(&self, p: &mut redis::Pipeline, user: UserId, n: usize) {
        p.hset(presence_key(user), self.node, n)
            .ignore()
            .expire(presence_key(user), PRESENCE_KEY_TTL_SECS)
            .ignore()
            .sadd(node_users_key(self.node), user.get())
            .ignore();
    }

    /// Writes the exact local connection count of `user`.
    async fn assert_presence(&self, user: UserId) -> anyhow::Result<()> {
        let n = self.registry.connections_of(user);
        let mut c = self.conn.clone();
        let mut p = redis::pipe();
        if n > 0 {
            self.record(&mut p, user, n);
        } else {
            p.hdel(presence_key(user), self.node)
                .ignore()
                .srem(node_users_key(self.node), user.get())
                .ignore()
                .set_ex(last_seen_key(user), now_ms(), LAST_SEEN_TTL_SECS)
                .ignore();
        }
        self.breaker.call(CALL_TIMEOUT, p.query_async::<()>(&mut c)).await?;
        Ok(())
    }

    /// The live nodes among `nodes`.
    async fn alive(&self, nodes: &BTreeSet<u16>) -> anyhow::Result<BTreeSet<u16>> {
        if nodes.is_empty() {
            return Ok(BTreeSet::new());
        }
        let keys: Vec<String> = nodes.iter().map(|n| node_key(*n)).collect();
        let mut c = self.conn.clone();
        let (found, _): (Vec<Option<i64>>, _) =
            self.breaker.call(CALL_TIMEOUT, redis::cmd("MGET").arg(&keys).query_async(&mut c)).await?;
        Ok(nodes.iter().zip(found).filter(|(_, f)| f.is_some()).map(|(n, _)| *n).collect())
    }

    /// Heartbeats and the subscription to this node's channels, until `shutdown`; then
    /// removes this node's presence, so others see its users offline at once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // Set when the subscription is (re)established: Redis answers again, so beat now.
        let beat_now = Arc::new(tokio::sync::Notify::new());
        let beat = {
            let (me, token, now) = (self.clone(), shutdown.clone(), beat_now.clone());
            tokio::spawn(async move {
                let every = Duration::from_secs(me.settings.heartbeat_secs.max(1));
                let mut beating = true;
                loop {
                    // After a failed heartbeat (or while the breaker is open) the heartbeat
                    // is also the probe: it runs every cool-down, so the node key and
                    // presence are back within one of Redis returning rather than one
                    // heartbeat interval later. A node that makes no other Redis calls
                    // (no notifier on it) never opens its breaker, hence the own flag.
                    let pause = if beating && me.breaker.is_closed() { every } else { breaker::COOL_DOWN };
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = now.notified() => {}
                        _ = token.cancelled() => break,
                    }
                    beating = match me.heartbeat().await {
                        Ok(()) => true,
                        Err(Refused::Open) => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "presence heartbeat failed");
                            false
                        }
                    };
                }
            })
        };
        while !shutdown.is_cancelled() {
            match self.subscribe(&shutdown, &beat_now).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "Redis subscription lost; resubscribing (devices catch up by cursor)");
                    tokio::select! {
                        _ = tokio::time::sleep(breaker::COOL_DOWN) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        let _ = beat.await;
        let mut c = self.conn.clone();
        let _ = self.breaker.call(CALL_TIMEOUT, c.del::<_, ()>(node_key(self.node))).await;
        if let Err(e) = self.forget_node().await {
            tracing::warn!(error = %e, "cannot clear this node's presence on shutdown");
        }
    }

    /// Delivers what other nodes send here until `shutdown` (Ok) or a connection error.
    /// Tells `subscribed` once the subscription stands.
    async fn subscribe(&self, shutdown: &CancellationToken, subscribed: &tokio::sync::Notify) -> anyhow::Result<()> {
        let mut pubsub = tokio::time::timeout(CALL_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| anyhow::anyhow!("connecting to Redis timed out"))??;
        let mine = push_channel(self.node);
        pubsub.subscribe(&mine).await?;
        pubsub.subscribe(CONTROL_CHANNEL).await?;
        tracing::info!(node = self.node, "subscribed to pushes from other nodes");
        subscribed.notify_one();
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                m = messages.next() => m,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let Some(msg) = msg else { anyhow::bail!("subscription closed") };
            let payload: Vec<u8> = msg.get_payload()?;
            if msg.get_channel_name() == mine {
                match serde_json::from_slice::<Pushes>(&payload) {
                    Ok(p) => {
                        metrics::counter!("gateway_routed_in_total").increment(p.to.len() as u64);
                        self.registry.deliver(&p);
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable push from another node"),
                }
            } else {
                match serde_json::from_slice::<Revoke>(&payload) {
                    Ok(r) if r.from != self.node => {
                        self.registry.close(r.user, r.session, CloseReason::Revoked);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable control message"),
                }
            }
        }
    }

    /// Other live nodes holding each of `users`.
    async fn remote_nodes(&self, users: &[UserId]) -> anyhow::Result<HashMap<u16, BTreeSet<UserId>>> {
        let mut c = self.conn.clone();
        let mut p = redis::pipe();
        for u in users {
            p.hkeys(presence_key(*u));
        }
        let (found, _): (Vec<Vec<u16>>, _) = self.breaker.call(CALL_TIMEOUT, p.query_async(&mut c)).await?;
        let all: BTreeSet<u16> = found.iter().flatten().copied().filter(|n| *n != self.node).collect();
        let alive = self.alive(&all).await?;
        let mut by_node: HashMap<u16, BTreeSet<UserId>> = HashMap::new();
        for (u, nodes) in users.iter().zip(found) {
            for n in nodes.into_iter().filter(|n| alive.contains(n)) {
                by_node.entry(n).or_default().insert(*u);
            }
        }
        Ok(by_node)
    }
}

impl Cluster for RedisCluster {
    fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn connected(&self, user: UserId) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.assert_presence(user).await {
                tracing::warn!(error = %e, "cannot record presence (the next heartbeat retries)");
            }
        })
    }

    fn disconnected(&self, user: UserId) -> BoxFuture<'_, ()> {
        self.connected(user)
    }

    fn route(&self, pushes: Pushes) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.registry.deliver(&pushes);
            let users: Vec<UserId> = pushes.to.iter().map(|t| t.0).collect::<BTreeSet<_>>().into_iter().collect();
            let by_node = self.remote_nodes(&users).await?;
            if by_node.is_empty() {
                return Ok(());
            }
            let mut c = self.conn.clone();
            let mut p = redis::pipe();
            for (node, users) in by_node {
                let share = pushes.only(|u| users.contains(&u));
                metrics::counter!("gateway_routed_out_total").increment(share.to.len() as u64);
                p.publish(push_channel(node), serde_json::to_vec(&share)?).ignore();
            }
            self.breaker.call(CALL_TIMEOUT, p.query_async::<()>(&mut c)).await?;
            Ok(())
        })
    }

    fn presence(&self, user: UserId) -> BoxFuture<'_, anyhow::Result<PresenceStatus>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let (counts, _): (HashMap<u16, u64>, _) =
                self.breaker.call(CALL_TIMEOUT, c.hgetall(presence_key(user))).await?;
            let alive = self.alive(&counts.keys().copied().collect()).await?;
            let connections: u64 = counts.iter().filter(|(n, _)| alive.contains(n)).map(|(_, k)| *k).sum();
            let last_seen_at = if connections == 0 {
                self.breaker.call(CALL_TIMEOUT, c.get(last_seen_key(user))).await?.0
            } else {
                None
            };
            Ok(PresenceStatus { online: connections > 0, connections, last_seen_at })
        })
    }

    fn online<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, anyhow::Result<Vec<UserId>>> {
        Box::pin(async move {
            let mut online: BTreeSet<UserId> =
                users.iter().copied().filter(|u| self.registry.connections_of(*u) > 0).collect();
            let elsewhere: Vec<UserId> = users.iter().copied().filter(|u| !online.contains(u)).collect();
            if !elsewhere.is_empty() {
                online.extend(self.remote_nodes(&elsewhere).await?.into_values().flatten());
            }
            Ok(online.into_iter().collect())
        })
    }

    fn revoke(&self, user: UserId, session: Option<SessionId>) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.registry.close(user, session, CloseReason::Revoked);
            let msg = serde_json::to_vec(&Revoke { from: self.node, user, session })?;
            let mut c = self.conn.clone();
            self.breaker.call(CALL_TIMEOUT, c.publish::<_, _, ()>(CONTROL_CHANNEL, msg)).await?;
            Ok(())
        })
    }
}
