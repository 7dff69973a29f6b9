//! `hermet bench`: a tool for users as much as for us. It drives a running hermet over
//! HTTP (creating its own users through the admin API), measures latencies, and, given
//! `--database-url`, measures the database's own limit for the same rows in the same run
//! (binary COPY), so results can be stated as ratios.

use std::time::{Duration, Instant};

pub mod abuse;
pub mod baseline;
pub mod fanout;
pub mod faults;
pub mod list;
pub mod processes;
pub mod prometheus;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

/// Latency summary of repeated measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Stats {
        let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len().max(1);
        let pick =
            |q: f64| v.get(((q * n as f64).ceil() as usize).saturating_sub(1).min(n - 1)).copied().unwrap_or(0.0);
        Stats {
            n: v.len(),
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
            mean_ms: v.iter().sum::<f64>() / n as f64,
            min_ms: v.first().copied().unwrap_or(0.0),
            max_ms: v.last().copied().unwrap_or(0.0),
        }
    }
}

/// Runs `op(worker, i)` on `concurrency` tasks for `duration`, each task one call after
/// another: the calls' latencies and their rate.
pub(crate) async fn sustained<F, Fut>(
    concurrency: usize,
    duration: Duration,
    op: F,
) -> anyhow::Result<baseline::Throughput>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while start.elapsed() < duration {
                    let t = Instant::now();
                    op(w, samples.len()).await?;
                    samples.push(t.elapsed());
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(baseline::Throughput {
        concurrency,
        operations: samples.len(),
        per_sec: samples.len() as f64 / secs,
        latency: Stats::of(&samples),
    })
}

/// A client of one hermet server, signed in as an administrator.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub(crate) base: String,
    pub admin_token: String,
    pub admin_id: String,
    pub(crate) tag: String,
}

impl Client {
    /// Signs in (or signs up) the admin account, which the server must list in
    /// `admin_accounts`.
    pub async fn connect(server: &str, admin_account: &str, admin_password: &str, seed: u64) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        let base = server.trim_end_matches('/').to_owned();
        let creds = json!({"account": admin_account, "accountType": "email", "credential": admin_password});
        let mut r =
            http.post(format!("{base}/api/v1/auth/sign-in")).json(&creds).send().await.context("server unreachable")?;
        if r.status() == 401 {
            let mut body = creds.clone();
            body["nickname"] = json!("bench admin");
            r = http.post(format!("{base}/api/v1/auth/sign-up")).json(&body).send().await?;
        }
        if !r.status().is_success() {
            bail!("cannot sign in as {admin_account}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        let v: Value = r.json().await?;
        let tag = format!("{seed}x{}", std::process::id());
        Ok(Client {
            http,
            base,
            admin_token: v["accessToken"].as_str().unwrap_or_default().to_owned(),
            admin_id: v["userId"].as_str().unwrap_or_default().to_owned(),
            tag,
        })
    }

    pub(crate) async fn patch(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self.http.patch(format!("{}{path}", self.base)).bearer_auth(token).json(body).send().await?;
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await?;
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// Users created in bulk with sessions issued by the server: (ids, access tokens).
    pub async fn users_with_tokens(&self, label: &str, n: usize) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let users = self.bulk_users(label, n, true, |_| {}).await?;
        let text = |u: &Value, k: &str| u[k].as_str().unwrap_or_default().to_owned();
        Ok(users.iter().map(|u| (text(u, "userId"), text(u, "accessToken"))).unzip())
    }

    /// `n` users named after `label`, 10,000 per admin request: the server's answers.
    async fn bulk_users(
        &self,
        label: &str,
        n: usize,
        issue_tokens: bool,
        progress: impl Fn(usize),
    ) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let end = (start + 10_000).min(n);
            let users: Vec<Value> = (start..end)
                .map(|i| json!({"account": format!("{label}-{}-{i}@bench.hermet", self.tag), "accountType": "email", "nickname": format!("{label} {i}")}))
                .collect();
            let body = json!({"users": users, "issueTokens": issue_tokens});
            let (status, v) = self.post("/api/v1/admin/users", &self.admin_token, &body).await?;
            if status != 201 {
                bail!("bulk user creation failed: {status} {v}");
            }
            out.extend(v["users"].as_array().into_iter().flatten().cloned());
            start = end;
            progress(out.len());
        }
        Ok(out)
    }

    /// `a` applies to `b`, `b` accepts: returns their one-to-one channel.
    pub async fn befriend(&self, a: (&str, &str), b: (&str, &str)) -> anyhow::Result<String> {
        let (status, v) = self.post("/api/v1/contacts/applications", a.1, &json!({"contactId": b.0})).await?;
        if status != 201 {
            bail!("friend application failed: {status} {v}");
        }
        let id = v["id"].as_str().unwrap_or_default();
        let (status, v) = self.post(&format!("/api/v1/contacts/applications/{id}/accept"), b.1, &json!({})).await?;
        if status != 200 {
            bail!("accepting the application failed: {status} {v}");
        }
        Ok(v["channelId"].as_str().unwrap_or_default().to_owned())
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(token).json(body).send().await?;
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// Creates `n` users (no password) in bulk; returns their ids.
    pub async fn create_users(&self, label: &str, n: usize, progress: impl Fn(usize)) -> anyhow::Result<Vec<String>> {
        let users = self.bulk_users(label, n, false, progress).await?;
        Ok(users.iter().filter_map(|u| u["userId"].as_str().map(str::to_owned)).collect())
    }

    /// Creates a group as the admin; returns (latency, channel id).
    pub async fn create_group(&self, name: &str, members: &[String]) -> anyhow::Result<(Duration, String)> {
        let body = json!({"name": name, "memberIds": members});
        let t = Instant::now();
        let (status, v) = self.post("/api/v1/channels/groups", &self.admin_token, &body).await?;
        let elapsed = t.elapsed();
        if status != 201 {
            bail!("group creation failed: {status} {v}");
        }
        Ok((elapsed, v["id"].as_str().unwrap_or_default().to_owned()))
    }

    /// Sends a text message as the admin; returns the latency.
    pub async fn send(&self, channel: &str, text: &str) -> anyhow::Result<Duration> {
        self.send_as(&self.admin_token, channel, text).await
    }

    /// Sends a text message as the holder of `token`; returns the latency.
    pub async fn send_as(&self, token: &str, channel: &str, text: &str) -> anyhow::Result<Duration> {
        let body = json!({"type": "text", "content": {"text": text}});
        let t = Instant::now();
        let (status, v) = self.post(&format!("/api/v1/channels/{channel}/messages"), token, &body).await?;
        let elapsed = t.elapsed();
        if status != 201 {
            bail!("send failed: {status} {v}");
        }
        Ok(elapsed)
    }
}

impl Client {
    /// The server's Prometheus exposition.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let r = self.http.get(format!("{}/metrics", self.base)).send().await.context("GET /metrics")?;
        if !r.status().is_success() {
            bail!("GET /metrics: {}", r.status());
        }
        Ok(r.text().await?)
    }
}

#[derive(Debug, Serialize)]
pub struct LagRow {
    pub consumer: String,
    pub events: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct SyncLagReport {
    pub target_events_per_sec: f64,
    pub achieved_events_per_sec: f64,
    pub messages: usize,
    pub groups: usize,
    /// Send latency; in async mode it includes the read-your-writes wait.
    pub api: Stats,
    /// Commit → read model updated, from the server's `sync_lag_seconds` histogram.
    pub lag: Vec<LagRow>,
}

/// `hermet bench sync-lag`: the admin sends messages to `groups` groups of three at
/// `rate` per second (open loop: a send starts on schedule whatever the others do, up to
/// `max_in_flight`) for `seconds`; once the projectors have caught up, the sync lag of
/// those events is read from the server's histogram (the difference of two scrapes).
pub async fn sync_lag(
    client: &Client,
    rate: f64,
    seconds: f64,
    groups: usize,
    max_in_flight: usize,
) -> anyhow::Result<SyncLagReport> {
    eprintln!("creating {} users and {groups} groups…", groups * 2);
    let users = client.create_users("l", groups * 2, |_| {}).await?;
    let mut channels = Vec::with_capacity(groups);
    for pair in users.chunks(2) {
        channels.push(client.create_group("lag bench", pair).await?.1);
    }
    for c in channels.iter().take(5) {
        client.send(c, "warm-up").await?;
    }
    let messages = (rate * seconds).round() as usize;
    let before = prometheus::histogram_buckets(&client.metrics().await?, "sync_lag_seconds", "consumer");
    let counted = |h: &std::collections::BTreeMap<String, Vec<(f64, f64)>>| {
        h.get("conversation-view-updater").and_then(|b| b.last()).map(|(_, c)| *c).unwrap_or(0.0)
    };
    if before.is_empty() {
        bail!("the server reports no sync_lag_seconds: run it with sync_mode = \"async\" (HERMET_SYNC_MODE=async)");
    }
    let base = counted(&before);
    eprintln!("sending {messages} messages at {rate}/s…");
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
    let channels = std::sync::Arc::new(channels);
    let mut tasks = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    for i in 0..messages {
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let permit = slots.clone().acquire_owned().await?;
        let (client, channels) = (client.clone(), channels.clone());
        tasks.spawn(async move {
            let r = client.send(&channels[i % channels.len()], &format!("lag {i}")).await;
            drop(permit);
            r
        });
        if i % 1000 == 0 {
            eprint!("\r  {i}/{messages}");
        }
    }
    let mut samples = Vec::with_capacity(messages);
    while let Some(r) = tasks.join_next().await {
        samples.push(r??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    eprintln!("\r  {messages}/{messages} sent in {elapsed:.1} s; waiting for the projectors");
    let deadline = Instant::now() + Duration::from_secs(120);
    let after = loop {
        let h = prometheus::histogram_buckets(&client.metrics().await?, "sync_lag_seconds", "consumer");
        if counted(&h) - base >= messages as f64 {
            break h;
        }
        if Instant::now() > deadline {
            bail!("the projectors did not catch up within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lag = after
        .iter()
        .map(|(consumer, b)| {
            let empty = Vec::new();
            let a = before.get(consumer).unwrap_or(&empty);
            LagRow {
                consumer: consumer.clone(),
                events: b.last().map(|x| x.1).unwrap_or(0.0) - a.last().map(|x| x.1).unwrap_or(0.0),
                p50_ms: prometheus::quantile_between(a, b, 0.5).unwrap_or(0.0) * 1000.0,
                p99_ms: prometheus::quantile_between(a, b, 0.99).unwrap_or(0.0) * 1000.0,
            }
        })
        .collect();
    Ok(SyncLagReport {
        target_events_per_sec: rate,
        achieved_events_per_sec: messages as f64 / elapsed,
        messages,
        groups,
        api: Stats::of(&samples),
        lag,
    })
}

#[derive(Debug, Serialize)]
pub struct GroupRow {
    pub members: usize,
    pub api: Stats,
    pub baseline_copy: Option<Stats>,
    /// API p50 / baseline p50.
    pub ratio: Option<f64>,
}

/// `hermet bench create-group`.
pub async fn create_group(
    client: &Client,
    sizes: &[usize],
    repeat: usize,
    database_url: Option<&str>,
) -> anyhow::Result<Vec<GroupRow>> {
    let max = sizes.iter().copied().max().unwrap_or(0);
    eprintln!("creating {} users…", max.saturating_sub(1));
    let users = client.create_users("g", max.saturating_sub(1), |n| eprint!("\r  {n} users")).await?;
    eprintln!();
    let mut rows = Vec::new();
    for (k, &n) in sizes.iter().enumerate() {
        let members = &users[..n.saturating_sub(1)];
        // one warm-up, not measured
        client.create_group("warm-up", &members[..members.len().min(10)]).await?;
        // API creations and COPYs alternate, so both see the same background (checkpoints,
        // autovacuum after the previous size's rows), each after a pause in which the
        // server's notifier finishes with the previous group's inbox rows (for 500
        // members and more; below, that work is short, and an idle pause costs more in
        // wake-ups than it saves).
        let settle = Duration::from_millis(if n >= 500 { n as u64 / 10 } else { 0 });
        let mut pg = match database_url {
            Some(url) => Some(crate::baseline::connect(url).await.context("baseline: cannot connect")?),
            None => None,
        };
        let (mut samples, mut copies, mut channels) = (Vec::new(), Vec::new(), Vec::new());
        let mut large = None;
        for r in 0..repeat {
            if !settle.is_zero() {
                tokio::time::sleep(settle).await;
            }
            let (d, id) = client.create_group(&format!("bench {n} #{r}"), members).await?;
            samples.push(d);
            if let Some(pg) = pg.as_mut() {
                if !settle.is_zero() {
                    tokio::time::sleep(settle).await;
                }
                let large = match large {
                    Some(l) => l,
                    None => {
                        let (_, g) = client.get(&format!("/api/v1/channels/{id}"), &client.admin_token).await?;
                        *large.insert(g["largeGroup"].as_bool().unwrap_or(false))
                    }
                };
                let channel = -1_000_000 - (k as i64) * 1_000 - r as i64;
                copies.push(baseline::copy_group(pg, n, channel, large).await?);
                channels.push(channel);
            }
            eprint!("\r  {n} members: {}/{repeat}", r + 1);
        }
        eprintln!();
        if let Some(pg) = &pg {
            baseline::remove_copied(pg, &channels).await?;
        }
        let api = Stats::of(&samples);
        let baseline = (!copies.is_empty()).then(|| Stats::of(&copies));
        let ratio = baseline.as_ref().map(|b| api.p50_ms / b.p50_ms.max(1e-9));
        rows.push(GroupRow { members: n, api, baseline_copy: baseline, ratio });
    }
    Ok(rows)
}

#[derive(Debug, Serialize)]
pub struct SendRow {
    /// Members of the group; 2 is a one-to-one chat between friends.
    pub members: usize,
    /// Senders sending at once (each one after another): group members, or for 1:1 chats
    /// one pair of friends each.
    pub concurrency: usize,
    pub messages: usize,
    pub api: Stats,
    pub messages_per_sec: f64,
    /// The server put the group in read diffusion (`largeGroup`).
    pub large_group: bool,
    /// CPU time per message during the measured sends (`/proc`, this machine only).
    pub cpu_us_per_message: Option<CpuPerMessage>,
}

/// CPU time per message, in µs, by who spent it: every `postgres` process, every
/// process whose name starts with `hermet` but this bench, and this bench.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuPerMessage {
    pub database: f64,
    pub server: f64,
    pub bench: f64,
}

impl CpuPerMessage {
    /// From two [`cpu_seconds`] samples around `messages` messages.
    pub(crate) fn between(before: Option<[f64; 3]>, after: Option<[f64; 3]>, messages: usize) -> Option<Self> {
        let (b, a) = (before?, after?);
        let per = |i: usize| (a[i] - b[i]) * 1e6 / messages.max(1) as f64;
        Some(Self { database: per(0), server: per(1), bench: per(2) })
    }

    /// The report's column: "database, server, bench" in whole µs, or "-".
    pub fn column(cpu: Option<Self>) -> String {
        cpu.map(|c| format!("{:.0}, {:.0}, {:.0}", c.database, c.server, c.bench)).unwrap_or_else(|| "-".into())
    }
}

/// CPU seconds spent so far (user + system, `/proc/*/stat`) by `postgres` processes,
/// `hermet*` processes other than this one, and this one. `None` where there is no `/proc`.
pub(crate) fn cpu_seconds() -> Option<[f64; 3]> {
    // /proc reports clock ticks of USER_HZ, 100 on Linux.
    const TICKS: f64 = 100.0;
    let me = std::process::id().to_string();
    let mut sums = [0.0; 3];
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid …`: comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after comm.
        let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) else { continue };
        let ticks = u.parse::<f64>().unwrap_or(0.0) + s.parse::<f64>().unwrap_or(0.0);
        let who = if pid == me {
            2
        } else if comm == "postgres" {
            0
        } else if comm.starts_with("hermet") {
            1
        } else {
            continue;
        };
        sums[who] += ticks / TICKS;
    }
    Some(sums)
}

/// `hermet bench send`: for each size, `messages` sends by `concurrency` senders at once.
/// Size 2 is a one-to-one chat: `concurrency` pairs of friends, each pair's first user
/// sending. Otherwise one group of that size with `concurrency` of its members sending.
/// Every channel is set up first and the database given `settle` to finish its own
/// work (autovacuum after a 50,000-row insert), so each size is measured on the same
/// database.
pub async fn send(
    client: &Client,
    sizes: &[usize],
    messages: usize,
    concurrency: usize,
    settle: Duration,
) -> anyhow::Result<Vec<SendRow>> {
    let concurrency = concurrency.max(1);
    // (size, senders' tokens, their channels, large group)
    let mut setups = Vec::new();
    for &n in sizes {
        setups.push(if n <= 2 {
            eprintln!("  send 1:1: {concurrency} pairs of friends");
            let (ids, tokens) = client.users_with_tokens(&format!("p{concurrency}"), concurrency * 2).await?;
            let mut channels = Vec::with_capacity(concurrency);
            for k in 0..concurrency {
                channels
                    .push(client.befriend((&ids[2 * k], &tokens[2 * k]), (&ids[2 * k + 1], &tokens[2 * k + 1])).await?);
            }
            let senders: Vec<String> = tokens.iter().step_by(2).cloned().collect();
            (2, senders, channels, false)
        } else {
            eprintln!("  send {n}: creating the group's members");
            let others = n.saturating_sub(1);
            let with_tokens = concurrency.min(others);
            let (mut ids, tokens) = client.users_with_tokens(&format!("s{n}t"), with_tokens).await?;
            ids.extend(
                client.create_users(&format!("s{n}"), others - with_tokens, |k| eprint!("\r  {k} users")).await?,
            );
            eprintln!();
            let (_, channel) = client.create_group(&format!("send {n}"), &ids).await?;
            let (_, info) = client.get(&format!("/api/v1/channels/{channel}"), &client.admin_token).await?;
            let large = info["largeGroup"].as_bool().unwrap_or(false);
            (n, tokens, vec![channel; with_tokens], large)
        });
    }
    eprintln!("  settling {} s", settle.as_secs());
    tokio::time::sleep(settle).await;
    let mut rows = Vec::new();
    for (n, senders, channels, large) in setups {
        for (t, c) in senders.iter().zip(&channels).take(10) {
            client.send_as(t, c, "warm-up").await?;
        }
        let per_sender = messages.div_ceil(senders.len());
        let total = per_sender * senders.len();
        let cpu_before = cpu_seconds();
        let start = Instant::now();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<anyhow::Result<Vec<Duration>>> =
            futures::future::join_all(senders.iter().zip(&channels).map(|(t, c)| {
                let done = &done;
                async move {
                    let mut v = Vec::with_capacity(per_sender);
                    for i in 0..per_sender {
                        v.push(client.send_as(t, c, &format!("message {i}")).await?);
                        let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if k.is_multiple_of(100) {
                            eprint!("\r  {k}/{total}");
                        }
                    }
                    Ok(v)
                }
            }))
            .await;
        let secs = start.elapsed().as_secs_f64();
        let cpu_after = cpu_seconds();
        eprintln!();
        let mut samples = Vec::new();
        for r in results {
            samples.extend(r?);
        }
        let cpu_us_per_message = CpuPerMessage::between(cpu_before, cpu_after, samples.len());
        let row = SendRow {
            members: n,
            concurrency: senders.len(),
            messages: samples.len(),
            messages_per_sec: samples.len() as f64 / secs,
            api: Stats::of(&samples),
            large_group: large,
            cpu_us_per_message,
        };
        eprintln!(
            "  send {}: p50 {:.2} ms p99 {:.2} ms, {:.0} msg/s",
            row.members, row.api.p50_ms, row.api.p99_ms, row.messages_per_sec
        );
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let st = Stats::of(&s);
        assert_eq!((st.p50_ms, st.p99_ms, st.min_ms, st.max_ms), (50.0, 99.0, 1.0, 100.0));
    }
}
