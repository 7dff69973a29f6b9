//! `hermet bench conversation-list` and `hermet bench profile-fanout`: read and fan-out
//! costs on a realistic dataset, each beside its raw-SQL baseline when `--database-url`
//! names the server's PostgreSQL.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::baseline::{self, Throughput};
use crate::{Client, Stats};

#[derive(Debug, Serialize)]
pub struct ListRow {
    /// Conversations of the user whose list is read.
    pub conversations: usize,
    pub api: Throughput,
    pub baseline: Option<Throughput>,
    /// API requests/s ÷ baseline queries/s.
    pub throughput_ratio: Option<f64>,
    /// Share of first-page reads the server answered from its cache (its
    /// `cache_requests_total`) during the measurement; `None` when it does not cache.
    pub cache_hit_rate: Option<f64>,
}

/// (hits, all lookups) of the server's conversation-list cache so far.
async fn list_cache_counts(client: &Client) -> anyhow::Result<(f64, f64)> {
    let text = client.metrics().await?;
    let (mut hits, mut all) = (0.0, 0.0);
    for l in text.lines().filter(|l| l.starts_with("cache_requests_total{") && l.contains("cache=\"conversations\"")) {
        let n: f64 = l.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        all += n;
        if l.contains("result=\"hit\"") {
            hits += n;
        }
    }
    Ok((hits, all))
}

#[derive(Debug, Serialize)]
pub struct ListReport {
    pub groups: usize,
    pub group_size: usize,
    /// `user_conversation_view` rows in the database (with --database-url).
    pub dataset_rows: Option<i64>,
    pub setup_secs: f64,
    pub rows: Vec<ListRow>,
}

/// Sends `GET path` with `token` on `concurrency` workers for `duration`.
async fn drive_get(
    client: &Client,
    path: &str,
    token: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let (client, path, token) = (client.clone(), path.to_owned(), token.to_owned());
    crate::sustained(concurrency, duration, move |_, _| {
        let (client, path, token) = (client.clone(), path.clone(), token.clone());
        async move {
            let (status, v) = client.get(&path, &token).await?;
            if status != 200 {
                bail!("GET {path}: {status} {v}");
            }
            Ok(())
        }
    })
    .await
}

/// `hermet bench conversation-list`: builds a dataset of `groups` groups of `group_size`
/// through the API (each with one message), in which one user per entry of `sizes` is a
/// member of that many groups; then reads each such user's first page (20) at each
/// concurrency for `seconds`, and the same query through a prepared statement.
pub async fn conversation_list(
    client: &Client,
    sizes: &[usize],
    groups: usize,
    group_size: usize,
    concurrency: &[usize],
    seconds: f64,
    database_url: Option<&str>,
) -> anyhow::Result<ListReport> {
    let setup = Instant::now();
    let most = sizes.iter().copied().max().unwrap_or(0);
    if most > groups {
        bail!("--groups must be at least the largest --conversations ({most})");
    }
    let (probe_ids, probe_tokens) = client.users_with_tokens("lprobe", sizes.len()).await?;
    let pool_n = (group_size * 20).max(2_000);
    eprintln!("  dataset: {pool_n} users, {groups} groups of {group_size}");
    let pool = client.create_users("lpool", pool_n, |n| eprint!("\r  {n} users")).await?;
    eprintln!();
    let mut next = 0usize;
    let specs: Vec<Vec<String>> = (0..groups)
        .map(|k| {
            let mut m: Vec<String> =
                sizes.iter().zip(&probe_ids).filter(|(s, _)| k < **s).map(|(_, id)| id.clone()).collect();
            while m.len() + 1 < group_size {
                m.push(pool[next % pool_n].clone());
                next += 1;
            }
            m
        })
        .collect();
    let made = std::sync::atomic::AtomicUsize::new(0);
    let created: Vec<anyhow::Result<String>> = futures::stream::iter(specs.iter().enumerate())
        .map(|(k, members)| {
            let made = &made;
            async move {
                let (_, id) = client.create_group(&format!("list {k}"), members).await?;
                client.send(&id, &format!("hello group {k}")).await?;
                let n = made.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_multiple_of(200) {
                    eprint!("\r  {n}/{groups} groups");
                }
                Ok(id)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    eprintln!();
    for c in created {
        c?;
    }
    let dataset_rows = match database_url {
        Some(url) => {
            let pg = baseline::connect(url).await?;
            pg.batch_execute("ANALYZE").await?;
            Some(pg.query_one("SELECT COUNT(*) FROM user_conversation_view", &[]).await?.get::<_, i64>(0))
        }
        None => None,
    };
    let setup_secs = setup.elapsed().as_secs_f64();
    let duration = Duration::from_secs_f64(seconds);
    let mut rows = Vec::new();
    for ((&size, id), token) in sizes.iter().zip(&probe_ids).zip(&probe_tokens) {
        // warm the server's pools and caches for this user
        drive_get(client, "/api/v1/conversations?limit=20", token, 4, Duration::from_millis(500)).await?;
        for &c in concurrency {
            let before = list_cache_counts(client).await?;
            let api = drive_get(client, "/api/v1/conversations?limit=20", token, c, duration).await?;
            let after = list_cache_counts(client).await?;
            let lookups = after.1 - before.1;
            let cache_hit_rate = (lookups > 0.0).then(|| (after.0 - before.0) / lookups);
            let base = match database_url {
                Some(url) => Some(baseline::list_query(url, id.parse()?, c, duration).await?),
                None => None,
            };
            let throughput_ratio = base.as_ref().map(|b| api.per_sec / b.per_sec.max(1e-9));
            eprintln!(
                "  list of {size} at {c}: p50 {:.2} ms p99 {:.2} ms, {:.0}/s{}{}",
                api.latency.p50_ms,
                api.latency.p99_ms,
                api.per_sec,
                base.as_ref().map(|b| format!(" (SQL {:.0}/s)", b.per_sec)).unwrap_or_default(),
                cache_hit_rate.map(|h| format!(", cache hits {:.1}%", h * 100.0)).unwrap_or_default()
            );
            rows.push(ListRow { conversations: size, api, baseline: base, throughput_ratio, cache_hit_rate });
        }
    }
    Ok(ListReport { groups, group_size, dataset_rows, setup_secs, rows })
}

#[derive(Debug, Serialize)]
pub struct ProfileRow {
    /// Conversations (one-to-one, with friends) in which the renamed user is the peer.
    pub peers: usize,
    /// `PATCH /users/me` response time.
    pub api: Stats,
    /// From the request until a friend's list shows the new name (async mode: the
    /// projector's commit; every row changes in that one transaction).
    pub visible: Stats,
    pub baseline_update: Option<Stats>,
    /// visible p50 ÷ baseline p50.
    pub ratio: Option<f64>,
}

/// `hermet bench profile-fanout`: for each size, a user with that many friends renames
/// `repeat` times.
pub async fn profile_fanout(
    client: &Client,
    sizes: &[usize],
    repeat: usize,
    database_url: Option<&str>,
) -> anyhow::Result<Vec<ProfileRow>> {
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("  profile-fanout {n}: {n} friends");
        let (me, my_token) = client.users_with_tokens(&format!("pf{n}"), 1).await?;
        let (friends, tokens) = client.users_with_tokens(&format!("pf{n}f"), n).await?;
        let pairs: Vec<anyhow::Result<String>> = futures::stream::iter(friends.iter().zip(&tokens))
            .map(|(f, t)| client.befriend((f, t), (&me[0], &my_token[0])))
            .buffer_unordered(8)
            .collect()
            .await;
        for p in pairs {
            p?;
        }
        let baseline_update = match database_url {
            Some(url) => Some(baseline::fanout_update(url, me[0].parse()?, repeat).await?),
            None => None,
        };
        // the last friend added watches: any friend would do, as one statement changes them all
        let watcher_token = tokens.last().cloned();
        let mut api = Vec::with_capacity(repeat);
        let mut visible = Vec::with_capacity(repeat);
        for k in 0..repeat {
            let name = format!("renamed {n} {k}");
            let t = Instant::now();
            let (status, v) = client.patch("/api/v1/users/me", &my_token[0], &json!({"nickname": name})).await?;
            if status != 200 {
                bail!("rename failed: {status} {v}");
            }
            api.push(t.elapsed());
            let token = watcher_token.as_deref().unwrap_or_default();
            loop {
                let (_, v) = client.get("/api/v1/conversations?limit=1", token).await?;
                if v["items"][0]["name"] == name.as_str() {
                    break;
                }
                if t.elapsed() > Duration::from_secs(60) {
                    bail!("the rename did not show within 60 s");
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            visible.push(t.elapsed());
        }
        let (api, visible) = (Stats::of(&api), Stats::of(&visible));
        let ratio = baseline_update.as_ref().map(|b| visible.p50_ms / b.p50_ms.max(1e-9));
        eprintln!("  profile-fanout {n}: API p50 {:.2} ms, visible p50 {:.2} ms", api.p50_ms, visible.p50_ms);
        rows.push(ProfileRow { peers: n, api, visible, baseline_update, ratio });
    }
    Ok(rows)
}
