//! `hermet bench faults`: a dependency fault under sustained load, measured. Each run
//! starts its own world on loopback (hermet nodes as processes of the binary, a
//! redis-server, a tansu broker, a PostgreSQL cluster where the fault needs one), has
//! several clients sending at a steady rate and WebSocket receivers online, injects the
//! fault, and measures how long writes, pushes, projections and presence take to recover
//! once the dependency is back. Then it checks what must hold whatever happened: every
//! acknowledged message stored exactly once with gap-free seqs, every receiver got every
//! message in seq order, unread counts exact, `hermet check-consistency` clean.
//!
//! The integration tests run each scenario once and assert the invariants (with generous
//! recovery guards); the bench runs them many times and writes docs/RELIABILITY.md.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::processes::{Broker, Node, OwnPostgres, Redis};
use crate::{Client, Stats};

/// What goes wrong in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// Two nodes sharing Redis; Redis killed (SIGKILL) and started again empty.
    Redis,
    /// Async mode on Kafka (tansu); the broker killed and started again on its data.
    Broker,
    /// PostgreSQL stopped (`pg_ctl stop -m immediate`) and started again.
    Database,
    /// The node running the pipeline stopped cleanly (SIGTERM) and started again.
    Restart,
    /// The node running the pipeline killed (SIGKILL) and started again.
    Kill,
}

impl Fault {
    pub const ALL: [Fault; 5] = [Fault::Redis, Fault::Broker, Fault::Database, Fault::Restart, Fault::Kill];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Redis => "redis",
            Fault::Broker => "broker",
            Fault::Database => "database",
            Fault::Restart => "restart",
            Fault::Kill => "kill",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Fault> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .with_context(|| format!("unknown fault {s:?}: one of {}", Fault::ALL.map(Fault::name).join(", ")))
    }

    /// How long the dependency stays away by default.
    pub fn default_outage(self) -> Duration {
        match self {
            Fault::Redis | Fault::Database => Duration::from_secs(20),
            Fault::Broker => Duration::from_secs(60),
            Fault::Restart | Fault::Kill => Duration::ZERO,
        }
    }

    /// The world the fault happens in, for the report.
    pub fn setting(self) -> &'static str {
        match self {
            Fault::Redis => "two nodes, dual-write, Redis; Redis killed and started empty",
            Fault::Broker => "one node, async mode on Kafka (tansu); broker killed and started again",
            Fault::Database => "one node, dual-write, own PostgreSQL cluster; stopped (immediate) and started",
            Fault::Restart => "API node + pipeline node, async mode, Redis; pipeline node SIGTERM, started again",
            Fault::Kill => "API node + pipeline node, async mode, Redis; pipeline node SIGKILL, started again",
        }
    }

    /// Whether the read models are projected asynchronously in this world.
    fn projected(self) -> bool {
        matches!(self, Fault::Broker | Fault::Restart | Fault::Kill)
    }
}

/// One run's shape.
#[derive(Debug, Clone)]
pub struct Plan {
    pub fault: Fault,
    pub outage: Duration,
    /// Sending clients (users), each with one request in flight.
    pub senders: usize,
    /// Messages per second, all senders together.
    pub rate: f64,
    /// Load before the fault.
    pub warmup: Duration,
    /// How long after the dependency's return recovery may take before the run says it
    /// did not recover.
    pub recovery_limit: Duration,
}

impl Plan {
    pub fn new(fault: Fault) -> Plan {
        Plan {
            fault,
            outage: fault.default_outage(),
            senders: 3,
            rate: 30.0,
            warmup: Duration::from_secs(3),
            recovery_limit: Duration::from_secs(60),
        }
    }
}

/// What one run measured and found.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub fault: Fault,
    pub outage_secs: f64,
    /// Acknowledged messages per second over the whole load.
    pub msg_per_sec: f64,
    pub acknowledged: usize,
    /// Acknowledged, not stored.
    pub lost: usize,
    /// Stored more than once (same client message id).
    pub duplicated: usize,
    /// Attempts answered with an error (retried with the same client message id).
    pub refused_attempts: usize,
    /// Latency of the send attempts made while the dependency was away.
    pub writes_during_fault: Option<Stats>,
    /// From the dependency's return to the first acknowledged send started after it.
    pub write_recovery_ms: Option<f64>,
    /// From the return until every receiver got a message sent after it (the slowest).
    pub push_recovery_ms: Option<f64>,
    /// From the return until the read model holds every message acknowledged before it
    /// (async worlds).
    pub projection_recovery_ms: Option<f64>,
    /// From Redis's return until a user on the other node shows online again.
    pub presence_recovery_ms: Option<f64>,
    /// Database: from the stop to the first 503 answer to a send.
    pub unavailable_after_ms: Option<f64>,
    /// Database: from the stop to `/readyz` answering 503.
    pub not_ready_after_ms: Option<f64>,
    /// What did not hold; empty when the run is clean.
    pub findings: Vec<String>,
}

impl Run {
    pub fn holds(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The programs a run starts: the hermet binary (redis-server from `PATH`, tansu from
/// `TANSU_BIN` or the test script's install, PostgreSQL's from `pg_config`).
#[derive(Debug, Clone)]
pub struct Tools {
    pub hermet: PathBuf,
}

const ADMIN: &str = "faults-admin@bench.hermet";
const ADMIN_PASSWORD: &str = "faults-admin-password";
const RECEIVERS: usize = 2;
/// Receivers ping this often, as a client keeping its connection alive would.
const PING: Duration = Duration::from_secs(10);

/// The processes of one run; they end with it.
struct World {
    nodes: Vec<Node>,
    redis: Option<Redis>,
    broker: Option<Broker>,
    pg: Option<OwnPostgres>,
    database_url: String,
}

impl World {
    async fn start(fault: Fault, hermet: &Path, database_url: &str, logs: &Path) -> anyhow::Result<World> {
        let mut w = World { nodes: Vec::new(), redis: None, broker: None, pg: None, database_url: database_url.into() };
        let mut common: Vec<(String, String)> = [
            ("HERMET_ADMIN_ACCOUNTS", ADMIN),
            ("HERMET_LOG_FORMAT", "json"),
            ("HERMET_LOG_LEVEL", "info,rdkafka=warn"),
            // sign-ups are not what is measured
            ("HERMET_AUTH__ARGON2_MEMORY_KIB", "256"),
            ("HERMET_AUTH__ARGON2_ITERATIONS", "1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let mut set = |k: &str, v: String| common.push((k.to_owned(), v));
        match fault {
            Fault::Redis | Fault::Restart | Fault::Kill => {
                let redis = Redis::start().await;
                set("HERMET_REDIS_URL", redis.url());
                w.redis = Some(redis);
            }
            Fault::Broker => {
                let broker = Broker::start_new().await;
                set("HERMET_KAFKA_BROKERS", broker.brokers());
                w.broker = Some(broker);
            }
            Fault::Database => {
                let pg = tokio::task::spawn_blocking(OwnPostgres::start).await?;
                w.database_url = pg.url();
                w.pg = Some(pg);
            }
        }
        if fault.projected() {
            set("HERMET_SYNC_MODE", "async".into());
        }
        let env = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
            let mut e = common.clone();
            e.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            e
        };
        let start = |id: u16, env: Vec<(String, String)>| {
            let log = logs.join(format!("node{id}.log"));
            let url = w.database_url.clone();
            async move {
                let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Node::start(hermet, &url, id, &pairs, &log).await
            }
        };
        let nodes = match fault {
            // node 1 starts first and so runs the notifier; node 2 gets pushes through Redis
            Fault::Redis => vec![start(1, env(&[])).await?, start(2, env(&[])).await?],
            Fault::Broker | Fault::Database => vec![start(1, env(&[])).await?],
            // node 1 serves the API only; node 2 runs the pipeline and is the one that goes
            Fault::Restart | Fault::Kill => vec![
                start(1, env(&[("HERMET_PIPELINE__SERVE_RUNS_PIPELINE", "false")])).await?,
                start(2, env(&[])).await?,
            ],
        };
        w.nodes = nodes;
        Ok(w)
    }
}

impl World {
    /// A `pg_ctl` step on the world's own cluster, off the async workers (it blocks).
    async fn pg_ctl(&mut self, step: fn(&OwnPostgres)) -> anyhow::Result<()> {
        let pg = self.pg.take().context("no PostgreSQL cluster")?;
        self.pg = Some(
            tokio::task::spawn_blocking(move || {
                step(&pg);
                pg
            })
            .await?,
        );
        Ok(())
    }
}

/// A message as its sender saw it.
#[derive(Debug, Clone)]
struct Sent {
    client_msg_id: String,
    seq: i64,
    first_try: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    started: Instant,
    took: Duration,
    ok: bool,
    unavailable: bool,
}

#[derive(Default)]
struct Log {
    sent: Vec<Sent>,
    attempts: Vec<Attempt>,
    unacknowledged: usize,
}

/// A `message.new` frame as a receiver got it.
#[derive(Debug, Clone, Copy)]
struct Got {
    seq: i64,
    at: Instant,
    connection: usize,
}

#[derive(Default)]
struct Inbox {
    got: Vec<Got>,
    resets: usize,
    connections: usize,
}

struct Receiver {
    user: String,
    token: String,
    inbox: Arc<Mutex<Inbox>>,
    task: tokio::task::JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A WebSocket client that stays online: it reconnects after a close (every 100 ms) and
/// asks for what it missed from its last cursor, and pings every [`PING`].
fn receive(
    address: String,
    token: String,
    group: String,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Inbox>>, tokio::task::JoinHandle<()>) {
    let inbox = Arc::new(Mutex::new(Inbox::default()));
    let out = inbox.clone();
    let url = format!("{}/api/v1/ws", address.replace("http://", "ws://"));
    let task = tokio::spawn(async move {
        let mut cursor: Option<i64> = None;
        let mut connection = 0;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut req) = url.as_str().into_client_request() else { return };
            let Ok(header) = format!("Bearer {token}").parse() else { return };
            req.headers_mut().insert("Authorization", header);
            let Ok((ws, _)) = tokio_tungstenite::connect_async(req).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            connection += 1;
            lock(&out).connections = connection;
            let (mut sink, mut stream) = ws.split();
            let mut ping = tokio::time::interval(PING);
            ping.tick().await;
            let mut check = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    frame = stream.next() => {
                        let Some(Ok(Message::Text(t))) = frame else {
                            if matches!(frame, Some(Ok(_))) { continue }
                            break;
                        };
                        let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                        match v["type"].as_str() {
                            Some("ready") => match cursor {
                                Some(c) => {
                                    let sync = json!({"type": "sync", "cursor": c}).to_string();
                                    if sink.send(Message::text(sync)).await.is_err() { break }
                                }
                                None => cursor = v["cursor"].as_i64(),
                            },
                            Some("sync.reset") => {
                                lock(&out).resets += 1;
                                cursor = v["cursor"].as_i64();
                            }
                            Some(kind) => {
                                if let Some(c) = v["cursor"].as_i64() {
                                    cursor = Some(cursor.map_or(c, |old| old.max(c)));
                                }
                                if kind == "message.new" && v["data"]["channelId"].as_str() == Some(group.as_str())
                                    && let Some(seq) = v["data"]["seq"].as_i64()
                                {
                                    lock(&out).got.push(Got { seq, at: Instant::now(), connection });
                                }
                            }
                            None => {}
                        }
                    }
                    _ = ping.tick() => {
                        if sink.send(Message::text(r#"{"type":"ping"}"#)).await.is_err() { break }
                    }
                    _ = check.tick() => {
                        if stop.load(Ordering::Relaxed) { return }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (inbox, task)
}

/// One sender: a message every `interval`, each retried with its client message id
/// until acknowledged (as a client with an outbox would), one request in flight.
#[allow(clippy::too_many_arguments)]
fn send_steadily(
    http: reqwest::Client,
    address: String,
    token: String,
    group: String,
    tag: String,
    interval: Duration,
    offset: Duration,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let url = format!("{address}/api/v1/channels/{group}/messages");
        let mut next = tokio::time::Instant::now() + offset;
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep_until(next).await;
            next += interval;
            let id = format!("{tag}-{i}");
            i += 1;
            let body = json!({"type": "text", "content": {"text": format!("steady {id}")}, "clientMsgId": id});
            let first_try = Instant::now();
            // a message under way when the load stops gets 30 s more to be acknowledged
            let mut deadline: Option<Instant> = None;
            loop {
                let started = Instant::now();
                let r = http.post(&url).bearer_auth(&token).json(&body).timeout(Duration::from_secs(30)).send().await;
                let took = started.elapsed();
                let (ok, unavailable, seq) = match r {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or_default();
                        (true, false, v["seq"].as_i64())
                    }
                    Ok(r) => (false, r.status() == 503, None),
                    Err(_) => (false, false, None),
                };
                let acknowledged = {
                    let mut l = lock(&log);
                    l.attempts.push(Attempt { started, took, ok, unavailable });
                    if let (true, Some(seq)) = (ok, seq) {
                        l.sent.push(Sent { client_msg_id: id.clone(), seq, first_try });
                    }
                    ok && seq.is_some()
                };
                if acknowledged {
                    break;
                }
                if stop.load(Ordering::Relaxed) {
                    let d = *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
                    if Instant::now() > d {
                        lock(&log).unacknowledged += 1;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The caller's unread count in `group` (the conversation list's first page).
async fn unread(http: &reqwest::Client, address: &str, token: &str, group: &str) -> Option<i64> {
    let r = http
        .get(format!("{address}/api/v1/conversations?limit=50"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["items"].as_array()?.iter().find(|c| c["channelId"].as_str() == Some(group))?["unreadCount"].as_i64()
}

async fn online(http: &reqwest::Client, address: &str, token: &str, user: &str) -> bool {
    let r = http
        .get(format!("{address}/api/v1/users/{user}/presence"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.is_ok_and(|v| v["online"] == true),
        _ => false,
    }
}

/// One run of `plan` on an empty PostgreSQL database `database_url` (migrated by the
/// first node; a database fault uses a cluster of its own instead), logging the nodes to
/// `logs`.
pub async fn run_once(plan: &Plan, tools: &Tools, database_url: &str, logs: &Path) -> anyhow::Result<Run> {
    let fault = plan.fault;
    let mut world = World::start(fault, &tools.hermet, database_url, logs).await?;
    let front = world.nodes[0].address();
    let client = Client::connect(&front, ADMIN, ADMIN_PASSWORD, 7).await?;
    let http = client.http.clone();
    let (sender_ids, sender_tokens) = client.users_with_tokens("fault-sender", plan.senders).await?;
    let (receiver_ids, receiver_tokens) = client.users_with_tokens("fault-receiver", RECEIVERS).await?;
    let members: Vec<String> = sender_ids.iter().chain(&receiver_ids).cloned().collect();
    let (_, group) = client.create_group("faults", &members).await?;

    // receivers stay online until the end; senders stop first
    let stop = Arc::new(AtomicBool::new(false));
    let stop_sending = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    for (k, (user, token)) in receiver_ids.iter().zip(&receiver_tokens).enumerate() {
        // the first receiver on the first node, the second on the last one
        let node = if k == 0 { &world.nodes[0] } else { &world.nodes[world.nodes.len() - 1] };
        let (inbox, task) = receive(node.address(), token.clone(), group.clone(), stop.clone());
        receivers.push(Receiver { user: user.clone(), token: token.clone(), inbox, task });
    }
    let connected = Instant::now();
    while receivers.iter().any(|r| lock(&r.inbox).connections == 0) {
        if connected.elapsed() > Duration::from_secs(30) {
            bail!("receivers could not connect");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let log = Arc::new(Mutex::new(Log::default()));
    let interval = Duration::from_secs_f64(plan.senders as f64 / plan.rate.max(0.1));
    let load_started = Instant::now();
    let senders: Vec<_> = sender_tokens
        .iter()
        .enumerate()
        .map(|(k, token)| {
            // senders spread over the nodes, except the one that is restarted
            let node = match fault {
                Fault::Redis => &world.nodes[k % world.nodes.len()],
                _ => &world.nodes[0],
            };
            send_steadily(
                http.clone(),
                node.address(),
                token.clone(),
                group.clone(),
                format!("s{k}"),
                interval,
                interval.mul_f64(k as f64 / plan.senders as f64),
                stop_sending.clone(),
                log.clone(),
            )
        })
        .collect();
    tokio::time::sleep(plan.warmup).await;

    // the fault
    let ready_probe = Arc::new(Mutex::new(None::<Instant>));
    let fault_at = Instant::now();
    let probe = (fault == Fault::Database).then(|| {
        let (http, url, out) = (http.clone(), format!("{front}/readyz"), ready_probe.clone());
        tokio::spawn(async move {
            loop {
                let r = http.get(&url).timeout(Duration::from_secs(5)).send().await;
                if r.is_ok_and(|r| r.status() == 503) {
                    *lock(&out) = Some(Instant::now());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });
    match fault {
        Fault::Redis => world.redis.as_mut().context("no redis-server")?.kill(),
        Fault::Broker => world.broker.as_mut().context("no broker")?.stop(),
        Fault::Database => world.pg_ctl(OwnPostgres::stop).await?,
        Fault::Restart => world.nodes[1].terminate(),
        Fault::Kill => world.nodes[1].kill(),
    }
    tokio::time::sleep(plan.outage).await;
    match fault {
        Fault::Redis => world.redis.as_mut().context("no redis-server")?.start_again().await,
        Fault::Broker => world.broker.as_mut().context("no broker")?.start().await,
        Fault::Database => world.pg_ctl(OwnPostgres::start_again).await?,
        Fault::Restart | Fault::Kill => world.nodes[1].spawn(),
    }
    let back = Instant::now();
    if let Some(p) = probe {
        p.abort();
    }

    // recovery
    let before_back = lock(&log).sent.iter().filter(|s| s.first_try < back).count() as i64;
    let mut projection = None;
    let mut presence = None;
    let wants_presence = fault == Fault::Redis;
    let (r0, r1) = (&receivers[0], &receivers[RECEIVERS - 1]);
    let recovered = loop {
        let now = Instant::now();
        if fault.projected()
            && projection.is_none()
            && unread(&http, &front, &r0.token, &group).await.is_some_and(|u| u >= before_back)
        {
            projection = Some(now - back);
        }
        if wants_presence && presence.is_none() && online(&http, &front, &r1.token, &r1.user).await {
            presence = Some(now - back);
        }
        let (writes, pushes) = recoveries(&lock(&log), &receivers, back);
        let done = writes.is_some()
            && pushes.is_some()
            && (!fault.projected() || projection.is_some())
            && (!wants_presence || presence.is_some());
        if done {
            break true;
        }
        if back.elapsed() > plan.recovery_limit {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_senders(&stop_sending, senders).await;
    let load_secs = load_started.elapsed().as_secs_f64();

    let mut findings = Vec::new();
    if !recovered {
        findings.push(format!("not recovered within {:?} of the dependency's return", plan.recovery_limit));
    }
    let log = std::mem::take(&mut *lock(&log));
    let acked: HashMap<&str, i64> = log.sent.iter().map(|s| (s.client_msg_id.as_str(), s.seq)).collect();
    let n = log.sent.len() as i64;
    let last = log.sent.iter().map(|s| s.seq).max().unwrap_or(0);

    // every receiver gets everything, and its unread count is exact
    let settle = Instant::now();
    loop {
        let mut behind = Vec::new();
        for r in &receivers {
            let got = lock(&r.inbox).got.iter().map(|g| g.seq).max().unwrap_or(0);
            let count = unread(&http, &front, &r.token, &group).await;
            if got < last || count != Some(n) {
                behind.push(format!("receiver {}: last seq {got} of {last}, unread {count:?} of {n}", r.user));
            }
        }
        if behind.is_empty() {
            break;
        }
        if settle.elapsed() > Duration::from_secs(60) {
            findings.extend(behind);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (write_recovery, push_recovery) = recoveries(&log, &receivers, back);
    stop.store(true, Ordering::Relaxed);
    for r in &receivers {
        let inbox = lock(&r.inbox);
        findings.extend(in_order(&inbox, last).map(|f| format!("receiver {}: {f}", r.user)));
    }
    for r in receivers {
        r.task.abort();
    }

    // the write side
    let db = crate::baseline::connect(&world.database_url).await?;
    let rows = db
        .query("SELECT seq, client_msg_id FROM message WHERE channel_id = $1::TEXT::BIGINT ORDER BY seq", &[&group])
        .await?;
    let stored: Vec<(i64, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut seen = HashSet::new();
    let mut duplicated = 0;
    for (_, id) in &stored {
        if let Some(id) = id
            && !seen.insert(id.as_str())
        {
            duplicated += 1;
        }
    }
    let lost = acked.keys().filter(|id| !seen.contains(**id)).count();
    if lost > 0 {
        findings.push(format!("{lost} acknowledged messages not stored"));
    }
    if duplicated > 0 {
        findings.push(format!("{duplicated} messages stored twice"));
    }
    if stored.iter().map(|(s, _)| *s).ne(1..=stored.len() as i64) {
        findings.push("stored seqs are not 1..n".into());
    }
    let wrong_seq = acked
        .iter()
        .filter(|(id, seq)| stored.get(**seq as usize - 1).is_none_or(|(_, s)| s.as_deref() != Some(**id)))
        .count();
    if wrong_seq > 0 {
        findings.push(format!("{wrong_seq} messages stored under another seq than acknowledged"));
    }
    let extra = stored.len().saturating_sub(acked.len());
    if extra > log.unacknowledged {
        findings.push(format!("{extra} stored messages never acknowledged"));
    }
    if !consistent(&tools.hermet, &world.database_url).await? {
        findings.push("hermet check-consistency found inconsistent read-model rows".into());
    }
    let fault_window = |a: &&Attempt| a.started >= fault_at && a.started < back;
    let during: Vec<Duration> = log.attempts.iter().filter(fault_window).map(|a| a.took).collect();
    let first_503 =
        log.attempts.iter().filter(|a| a.unavailable && a.started >= fault_at).map(|a| a.started + a.took).min();
    let database = fault == Fault::Database;
    if let Some(b) = &world.broker {
        let _ = std::fs::copy(b.log(), logs.join("broker.log"));
    }
    drop(world);
    Ok(Run {
        fault,
        outage_secs: plan.outage.as_secs_f64(),
        msg_per_sec: n as f64 / load_secs,
        acknowledged: n as usize,
        lost,
        duplicated,
        refused_attempts: log.attempts.iter().filter(|a| !a.ok).count(),
        writes_during_fault: (!during.is_empty()).then(|| Stats::of(&during)),
        write_recovery_ms: write_recovery.map(ms),
        push_recovery_ms: push_recovery.map(ms),
        projection_recovery_ms: projection.map(ms),
        presence_recovery_ms: presence.map(ms),
        unavailable_after_ms: database.then(|| first_503.map(|t| ms(t - fault_at))).flatten(),
        not_ready_after_ms: database.then(|| lock(&ready_probe).map(|t| ms(t - fault_at))).flatten(),
        findings,
    })
}

async fn stop_senders(stop: &AtomicBool, senders: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }
}

/// Writes: from `back` to the first acknowledged attempt started at or after it. Pushes:
/// until every receiver got a message first sent at or after it (the slowest receiver).
fn recoveries(log: &Log, receivers: &[Receiver], back: Instant) -> (Option<Duration>, Option<Duration>) {
    let writes = log.attempts.iter().filter(|a| a.ok && a.started >= back).map(|a| a.started + a.took - back).min();
    let after: HashSet<i64> = log.sent.iter().filter(|s| s.first_try >= back).map(|s| s.seq).collect();
    let mut pushes = Some(Duration::ZERO);
    for r in receivers {
        let first = lock(&r.inbox).got.iter().filter(|g| after.contains(&g.seq)).map(|g| g.at).min();
        pushes = match (pushes, first) {
            (Some(p), Some(at)) => Some(p.max(at.saturating_duration_since(back))),
            _ => None,
        };
    }
    (writes, pushes)
}

/// What is wrong with a receiver's frames: within a connection seqs go up one by one and
/// never repeat; over its connections (each one's catch-up may repeat what an earlier one
/// had) every seq up to `last` arrived.
fn in_order(inbox: &Inbox, last: i64) -> Option<String> {
    if inbox.resets > 0 {
        return Some(format!("{} sync.reset", inbox.resets));
    }
    let mut prev: HashMap<usize, i64> = HashMap::new();
    let mut all = HashSet::new();
    for g in &inbox.got {
        if let Some(p) = prev.get(&g.connection)
            && g.seq != p + 1
        {
            return Some(format!("seq {} after {p} on connection {}", g.seq, g.connection));
        }
        prev.insert(g.connection, g.seq);
        all.insert(g.seq);
    }
    let missing = (1..=last).filter(|s| !all.contains(s)).count();
    (missing > 0).then(|| format!("{missing} of {last} messages never arrived"))
}

/// `hermet check-consistency` on the database: whether it found nothing.
async fn consistent(hermet: &Path, database_url: &str) -> anyhow::Result<bool> {
    let mut c = std::process::Command::new(hermet);
    for (k, _) in std::env::vars() {
        if k.starts_with("HERMET_") {
            c.env_remove(k);
        }
    }
    c.arg("check-consistency").env("HERMET_DATABASE_URL", database_url).env("HERMET_LOG_LEVEL", "warn");
    let out = tokio::task::spawn_blocking(move || c.output()).await?.context("run hermet check-consistency")?;
    Ok(out.status.success())
}

/// `repeat` runs of each plan, each on a database of its own created on the PostgreSQL
/// server at `admin_url` (and dropped after it); progress on stderr.
pub async fn bench(plans: &[Plan], repeat: usize, tools: &Tools, admin_url: &str) -> anyhow::Result<Vec<Run>> {
    let admin = crate::baseline::connect(admin_url).await?;
    let mut runs = Vec::new();
    for plan in plans {
        for k in 0..repeat {
            let name = format!("hermet_faults_{}_{}_{k}", std::process::id(), plan.fault.name());
            admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
            let logs = tempfile::Builder::new().prefix("hermet-faults-").tempdir()?;
            let url = with_database(admin_url, &name);
            let run = run_once(plan, tools, &url, logs.path()).await;
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            let run = run.with_context(|| format!("{} run {}", plan.fault.name(), k + 1))?;
            let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} ms"));
            eprintln!(
                "  {} {}/{repeat}: {:.1} msg/s, {} acknowledged, {} lost, {} duplicated; writes {}, pushes {}, projections {}, presence {}{}",
                plan.fault.name(),
                k + 1,
                run.msg_per_sec,
                run.acknowledged,
                run.lost,
                run.duplicated,
                show(run.write_recovery_ms),
                show(run.push_recovery_ms),
                show(run.projection_recovery_ms),
                show(run.presence_recovery_ms),
                if run.holds() { String::new() } else { format!("; FINDINGS: {}", run.findings.join("; ")) }
            );
            if !run.holds() {
                // the nodes' logs stay for a look
                eprintln!("    logs kept in {}", logs.keep().display());
            }
            runs.push(run);
        }
    }
    Ok(runs)
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(i) => &base[..authority_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// p50 / max of one recovery over runs, in ms; a run without it did not recover.
fn spread(runs: &[&Run], f: impl Fn(&Run) -> Option<f64>) -> String {
    let v: Vec<Duration> = runs.iter().filter_map(|r| f(r)).map(|ms| Duration::from_secs_f64(ms / 1000.0)).collect();
    if v.is_empty() {
        return "–".into();
    }
    let s = Stats::of(&v);
    let missing = runs.len() - v.len();
    let note = if missing > 0 { format!(" ({missing} not recovered)") } else { String::new() };
    format!("{:.0} / {:.0}{note}", s.p50_ms, s.max_ms)
}

/// p50 of the runs' medians / the largest max of the sends made during the fault; a run
/// whose fault was too short to see a send has none.
fn during(runs: &[&Run]) -> String {
    let with: Vec<&Stats> = runs.iter().filter_map(|r| r.writes_during_fault.as_ref()).collect();
    if with.is_empty() {
        return "–".into();
    }
    let p50 = Stats::of(&with.iter().map(|s| Duration::from_secs_f64(s.p50_ms / 1000.0)).collect::<Vec<_>>()).p50_ms;
    let max = with.iter().map(|s| s.max_ms).fold(0.0, f64::max);
    let note =
        if with.len() < runs.len() { format!(" (in {} of {} runs)", with.len(), runs.len()) } else { String::new() };
    format!("{p50:.0} / {max:.0}{note}")
}

/// The results as the tables of docs/RELIABILITY.md.
pub fn markdown(runs: &[Run]) -> String {
    let mut out = String::new();
    out.push_str(
        "| fault | setting | runs | outage | load (msg/s) | acknowledged | lost | duplicated | all invariants |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    let by_fault: Vec<(Fault, Vec<&Run>)> = Fault::ALL
        .into_iter()
        .map(|f| (f, runs.iter().filter(|r| r.fault == f).collect::<Vec<_>>()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    for (f, rs) in &by_fault {
        let load = rs.iter().map(|r| r.msg_per_sec).sum::<f64>() / rs.len() as f64;
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} s | {load:.1} | {} | {} | {} | {} of {} |\n",
            f.name(),
            f.setting(),
            rs.len(),
            rs[0].outage_secs,
            rs.iter().map(|r| r.acknowledged).sum::<usize>(),
            rs.iter().map(|r| r.lost).sum::<usize>(),
            rs.iter().map(|r| r.duplicated).sum::<usize>(),
            rs.iter().filter(|r| r.holds()).count(),
            rs.len(),
        ));
    }
    out.push_str(
        "\nRecovery, p50 / max in ms, from the dependency's return (for a restart: from the old process's end):\n\n",
    );
    out.push_str("| fault | writes | pushes | projections | presence | sends during the fault p50 / max | first 503 | `/readyz` 503 |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for (f, rs) in &by_fault {
        let during = during(rs);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {during} | {} | {} |\n",
            f.name(),
            spread(rs, |r| r.write_recovery_ms),
            spread(rs, |r| r.push_recovery_ms),
            spread(rs, |r| r.projection_recovery_ms),
            spread(rs, |r| r.presence_recovery_ms),
            spread(rs, |r| r.unavailable_after_ms),
            spread(rs, |r| r.not_ready_after_ms),
        ));
    }
    let findings: Vec<String> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.holds())
        .map(|(i, r)| format!("- {} (run {}): {}", r.fault.name(), i + 1, r.findings.join("; ")))
        .collect();
    if !findings.is_empty() {
        out.push_str("\nWhat did not hold:\n\n");
        out.push_str(&findings.join("\n"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    }

    #[test]
    fn a_receiver_with_a_gap_or_a_repeat_is_reported() {
        let at = Instant::now();
        let inbox = |seqs: &[(i64, usize)]| Inbox {
            got: seqs.iter().map(|&(seq, connection)| Got { seq, at, connection }).collect(),
            resets: 0,
            connections: 2,
        };
        assert_eq!(in_order(&inbox(&[(1, 1), (2, 1), (3, 1)]), 3), None);
        // a reconnect's catch-up repeats 2: fine across connections
        assert_eq!(in_order(&inbox(&[(1, 1), (2, 1), (2, 2), (3, 2)]), 3), None);
        assert!(in_order(&inbox(&[(1, 1), (3, 1)]), 3).is_some_and(|f| f.contains("seq 3 after 1")));
        assert!(in_order(&inbox(&[(1, 1), (1, 1)]), 1).is_some());
        assert!(in_order(&inbox(&[(1, 1), (2, 1)]), 3).is_some_and(|f| f.contains("1 of 3")));
    }
}
