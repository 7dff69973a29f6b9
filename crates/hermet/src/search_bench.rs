//! `hermet bench search`: message search on a large history, in-process on the configured
//! database (a fresh one): groups of members and `--messages` text messages in English,
//! Chinese, Japanese and Korean, written straight through the store's batch append (no
//! sends, so a million messages take a minute, not an hour), then each kind of query
//! timed as a member of `--member-of` groups. PostgreSQL is analyzed after the writes, as
//! autovacuum would (a server without it plans these queries blind).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use hermet_app::messages::Search;
use hermet_app::{App, MemoryPush, Principal};
use hermet_domain::id::{ChannelId, IdGenerator, SessionId, UserId};
use hermet_domain::message::{Message, MessageType};
use hermet_store::{Database, MessageWrites, Transaction};
use serde::Serialize;

use crate::config::Config;

/// Words of the generated messages, most frequent first (drawn with a Zipf-like skew).
const WORDS: &[&str] = &[
    "the",
    "ok",
    "yes",
    "see",
    "you",
    "tomorrow",
    "meeting",
    "lunch",
    "today",
    "please",
    "thanks",
    "project",
    "update",
    "call",
    "later",
    "done",
    "review",
    "deploy",
    "weekend",
    "coffee",
    "好的",
    "谢谢",
    "今天",
    "明天",
    "开会",
    "吃饭",
    "天气",
    "项目",
    "上线",
    "周末",
    "はい",
    "ありがとう",
    "会議",
    "明日",
    "よろしく",
    "お疲れ様",
    "네",
    "감사합니다",
    "내일",
    "회의",
    "점심",
    "주말",
    "release",
    "invoice",
    "budget",
    "travel",
    "airport",
    "hotel",
    "birthday",
    "party",
    "photo",
    "video",
    "music",
    "football",
    "weather",
    "rain",
    "sunny",
    "train",
];

/// What is searched for, and how often it occurs in the generated history.
const QUERIES: &[(&str, &str)] = &[
    ("rare English word (~1 in 10,000 messages)", "zebracorn"),
    ("common English word", "meeting"),
    ("Chinese, 2 characters", "天气"),
    ("Chinese, 4 characters", "今天天气"),
    ("Japanese", "ありがとう"),
    ("Korean", "감사합니다"),
    ("absent", "qxqxqxqx"),
];

#[derive(Debug, Clone, Serialize)]
pub struct QueryTiming {
    pub kind: &'static str,
    pub q: &'static str,
    /// With `channelId` of one of the searcher's groups.
    pub one_channel: bool,
    /// Results on the first page (at most 50).
    pub first_page: usize,
    pub runs: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    pub backend: &'static str,
    pub messages: usize,
    pub groups: usize,
    pub members_per_group: usize,
    /// Groups the searcher is in (their messages are what the searcher may find).
    pub member_of: usize,
    pub seed_secs: f64,
    pub queries: Vec<QueryTiming>,
}

fn err(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

/// xorshift64*: a deterministic stream, so every run searches the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A word index skewed to the front of [`WORDS`].
    fn word(&mut self) -> &'static str {
        let a = self.below(WORDS.len());
        let b = self.below(WORDS.len());
        WORDS[a.min(b)]
    }
}

/// One generated message text: 3 to 10 words, spaces between Latin and Korean words only
/// (Chinese and Japanese run together); sometimes a rare word.
fn text(rng: &mut Rng) -> String {
    let n = 3 + rng.below(8);
    let mut s = String::new();
    for _ in 0..n {
        let w = if rng.below(10_000) == 0 { "zebracorn" } else { rng.word() };
        let cjk = w.chars().next().is_some_and(|c| ('\u{3040}'..='\u{9fff}').contains(&c));
        if !s.is_empty() && !cjk {
            s.push(' ');
        }
        s.push_str(w);
    }
    s
}

/// What `hermet bench search` writes and runs (its command-line options).
#[derive(Debug, Clone, Copy)]
pub struct SearchBench {
    pub messages: usize,
    pub groups: usize,
    pub members_per_group: usize,
    /// Groups the searcher is a member of.
    pub member_of: usize,
    /// Times each query runs.
    pub runs: usize,
}

pub(crate) async fn run<D: Database>(
    db: D,
    config: &Config,
    b: SearchBench,
    progress: impl Fn(String),
) -> anyhow::Result<SearchReport> {
    let SearchBench { messages, groups, members_per_group, member_of, runs } = b;
    if member_of > groups || members_per_group < 2 {
        bail!("--member-of must be at most --groups, and groups need 2 members or more");
    }
    db.migrate().await.context("migration failed")?;
    if db.events_after((0, 0)).await.map_err(err)? > 0 {
        bail!("the database already holds events; the bench writes its own history: give it a fresh database");
    }
    let ids = Arc::new(IdGenerator::new(config.node_id)?);
    let app = App::new(
        db.clone(),
        ids.clone(),
        config.auth_settings(),
        config.limits(),
        config.pipeline_settings(),
        Arc::new(MemoryPush::new(1_000)),
    )
    .await
    .map_err(err)?
    .with_rate_limits(hermet_app::rate_limits::RateLimits { enabled: false, ..Default::default() }, None);
    let admin = Principal { user_id: UserId(0), session_id: SessionId(0), is_admin: true, lists_generation: None };
    // users: the searcher, then the others of each group
    let total_users = 1 + groups * (members_per_group - 1);
    let mut users = Vec::with_capacity(total_users);
    while users.len() < total_users {
        let from = users.len();
        let chunk: Vec<hermet_app::admin::BulkUser> = (from..total_users.min(from + 5_000))
            .map(|i| hermet_app::admin::BulkUser {
                account_type: hermet_domain::user::AccountType::Email,
                account: format!("search-bench-{i}@bench.hermet"),
                credential: None,
                nickname: format!("bench {i}"),
                avatar: None,
            })
            .collect();
        let created = app.bulk_create_users(admin, chunk, false).await.map_err(err)?;
        users.extend(created.into_iter().map(|u| u.user_id));
    }
    let searcher = Principal { user_id: users[0], session_id: SessionId(0), is_admin: false, lists_generation: None };
    let mut channels: Vec<(ChannelId, Vec<UserId>)> = Vec::with_capacity(groups);
    for (g, others) in users[1..].chunks(members_per_group - 1).enumerate() {
        let owner = Principal { user_id: others[0], session_id: SessionId(0), is_admin: false, lists_generation: None };
        let mut members: Vec<UserId> = others[1..].to_vec();
        if g < member_of {
            members.push(searcher.user_id);
        }
        let c = app.create_group(owner, &format!("search bench {g}"), None, members.clone()).await.map_err(err)?;
        members.push(owner.user_id);
        channels.push((c.id, members));
    }
    progress(format!("{groups} groups created; writing {messages} messages"));

    // the history, in batches of the store's set-based append
    let start = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seqs = vec![0i64; channels.len()];
    let t0 = hermet_domain::time::now_ms() - 30 * 86_400_000;
    let step = (30 * 86_400_000 / messages.max(1) as i64).max(1);
    let mut written = 0;
    while written < messages {
        let n = (messages - written).min(5_000);
        let mut batch = Vec::with_capacity(n);
        for i in written..written + n {
            let k = rng.below(channels.len());
            let (channel, members) = &channels[k];
            seqs[k] += 1;
            let sender = members[rng.below(members.len())];
            batch.push(Message {
                id: ids.next()?,
                channel_id: *channel,
                seq: seqs[k],
                sender_id: sender,
                sender_name: String::new(),
                msg_type: MessageType::Text,
                content: serde_json::json!({ "text": text(&mut rng) }),
                mentions: Vec::new(),
                mention_all: false,
                client_msg_id: None,
                created_at: t0 + i as i64 * step,
                recalled: None,
                edited_at: None,
                edit_count: 0,
                reply_to: None,
                forwarded_from: None,
            });
        }
        let mut tx = db.begin().await.map_err(err)?;
        tx.append_messages(&batch, hermet_domain::time::now_ms()).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        written += n;
        if written % 100_000 == 0 {
            progress(format!("{written} messages written"));
        }
    }
    if db.backend() == "postgres" {
        // the statistics autovacuum would gather on a server that runs it (the planner
        // picks the trigram index or a newest-first walk by them)
        hermet_bench::baseline::analyze(&config.database_url).await?;
    }
    let seed_secs = start.elapsed().as_secs_f64();
    progress(format!("{messages} messages in {seed_secs:.0} s; searching"));

    let mut queries = Vec::new();
    for one_channel in [false, true] {
        for (kind, q) in QUERIES {
            let mut times = Vec::with_capacity(runs);
            let mut first_page = 0;
            for _ in 0..runs.max(1) {
                let search =
                    Search { q: (*q).to_owned(), channel: one_channel.then_some(channels[0].0), ..Search::default() };
                let t = Instant::now();
                let page = app.search(searcher, search).await.map_err(err)?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                first_page = page.items.len();
            }
            times.sort_by(f64::total_cmp);
            let at = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
            let timing =
                QueryTiming { kind, q, one_channel, first_page, runs: times.len(), p50_ms: at(0.5), p99_ms: at(0.99) };
            progress(format!(
                "{kind}{}: p50 {:.2} ms, p99 {:.2} ms, {} on the first page",
                if one_channel { " (one channel)" } else { "" },
                timing.p50_ms,
                timing.p99_ms,
                first_page
            ));
            queries.push(timing);
        }
    }
    db.close();
    Ok(SearchReport { backend: db.backend(), messages, groups, members_per_group, member_of, seed_secs, queries })
}
