//! `hermet bench fanout` and `hermet bench idle`: real WebSocket clients against a
//! running server. Fan-out: N members online, one sends, and the time until every member
//! has the message. Idle: the server's resident memory with many authenticated,
//! idle connections.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde::Serialize;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{Client, CpuPerMessage, Stats, cpu_seconds};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `tokens.len()` authenticated connections (`concurrency` handshakes at a time)
/// and waits for each one's `ready`.
async fn open_all(client: &Client, tokens: &[String], concurrency: usize) -> anyhow::Result<Vec<Socket>> {
    let url = format!("{}/api/v1/ws", client.base.replace("http://", "ws://"));
    let sockets: Vec<anyhow::Result<Socket>> = futures::stream::iter(tokens.iter().cloned())
        .map(|token| {
            let url = url.clone();
            async move {
                let mut req = url.into_client_request()?;
                req.headers_mut().insert("Authorization", format!("Bearer {token}").parse()?);
                let (mut ws, _) = tokio_tungstenite::connect_async(req).await.context("WebSocket upgrade")?;
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.contains("\"ready\"") => Ok(ws),
                    other => bail!("no ready frame: {other:?}"),
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    sockets.into_iter().collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutRow {
    pub members: usize,
    pub messages: usize,
    /// Per message: from the send until the last member has it.
    pub all_members: Stats,
    /// Per delivery: from the send until one member has it.
    pub delivery: Stats,
    /// Deliveries per second while messages are in flight.
    pub deliveries_per_sec: f64,
    /// CPU time per measured message (`/proc`, this machine only; see `bench send`).
    pub cpu_us_per_message: Option<CpuPerMessage>,
}

/// For each size: that many members online, `warmup` and then `messages` sends (one at a
/// time, each waited for until every member has it); the first `warmup` are not measured.
pub async fn fanout(
    client: &Client,
    sizes: &[usize],
    messages: usize,
    warmup: usize,
) -> anyhow::Result<Vec<FanoutRow>> {
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("  fanout {n}: creating members and opening {n} connections");
        let (ids, tokens) = client.users_with_tokens(&format!("fan{n}"), n).await?;
        let (_, group) = client.create_group(&format!("fanout {n}"), &ids).await?;
        let sockets = open_all(client, &tokens, 64).await?;
        // Each reader reports (message number, when) for every bench message it gets.
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
        let readers: Vec<_> = sockets
            .into_iter()
            .map(|ws| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (mut sink, mut stream) = ws.split();
                    while let Some(Ok(m)) = stream.next().await {
                        if let Message::Text(t) = m
                            && t.contains("\"message.new\"")
                            && let Some(i) = t.split("fanout-msg-").nth(1).and_then(|r| r.split('"').next())
                            && let Ok(i) = i.parse::<usize>()
                        {
                            let _ = tx.send((i, Instant::now()));
                        }
                    }
                    let _ = sink.close().await;
                })
            })
            .collect();
        drop(tx);
        let mut all = Vec::with_capacity(messages);
        let mut each = Vec::with_capacity(messages * n);
        let mut busy = Duration::ZERO;
        let mut cpu_before = None;
        for i in 0..warmup + messages {
            if i == warmup {
                cpu_before = cpu_seconds();
            }
            let t = Instant::now();
            client.send(&group, &format!("fanout-msg-{i}")).await?;
            let mut got = 0;
            let mut last = t;
            while got < n {
                let (j, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .with_context(|| format!("message {i}: only {got} of {n} members got it within 30 s"))?
                    .context("readers ended")?;
                if j == i {
                    got += 1;
                    last = last.max(at);
                    if i >= warmup {
                        each.push(at - t);
                    }
                }
            }
            if i >= warmup {
                all.push(last - t);
                busy += last - t;
            }
        }
        let cpu_us_per_message = CpuPerMessage::between(cpu_before, cpu_seconds(), messages);
        for r in readers {
            r.abort();
        }
        let row = FanoutRow {
            members: n,
            messages,
            all_members: Stats::of(&all),
            delivery: Stats::of(&each),
            deliveries_per_sec: (n * messages) as f64 / busy.as_secs_f64().max(1e-9),
            cpu_us_per_message,
        };
        eprintln!(
            "  fanout {n}: all members p50 {:.2} ms p99 {:.2} ms max {:.2} ms; {:.0} deliveries/s",
            row.all_members.p50_ms, row.all_members.p99_ms, row.all_members.max_ms, row.deliveries_per_sec
        );
        rows.push(row);
    }
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub connections: usize,
    pub rss_before_mb: f64,
    pub rss_after_mb: f64,
    pub per_connection_kb: f64,
}

/// Resident memory of process `pid` (Linux `/proc`), in bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the server's /proc status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kb * 1024)
}

/// Opens `n` authenticated connections that then stay idle (pinging within the idle
/// timeout), and reports the server's resident size before and after.
pub async fn idle(client: &Client, n: usize, server_pid: u32, hold_secs: u64) -> anyhow::Result<IdleReport> {
    eprintln!("  idle: creating {n} users");
    let (_, tokens) = client.users_with_tokens("idle", n).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss(server_pid)?;
    eprintln!("  idle: server RSS {:.1} MB; opening {n} connections", before as f64 / 1e6);
    let sockets = open_all(client, &tokens, 128).await?;
    // settle, with one ping each so every connection has exercised its read path
    let mut sockets = sockets;
    for ws in sockets.iter_mut() {
        ws.send(Message::Text(r#"{"type":"ping"}"#.into())).await?;
    }
    for ws in sockets.iter_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss(server_pid)?;
    let report = IdleReport {
        connections: sockets.len(),
        rss_before_mb: before as f64 / 1e6,
        rss_after_mb: after as f64 / 1e6,
        per_connection_kb: (after.saturating_sub(before)) as f64 / 1e3 / sockets.len().max(1) as f64,
    };
    if hold_secs > 0 {
        eprintln!("  idle: server RSS {:.1} MB; holding the connections {hold_secs} s", after as f64 / 1e6);
        tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    }
    drop(sockets);
    Ok(report)
}
