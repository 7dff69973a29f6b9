//! Group commit: sends that queue up while a batch is being written go out together in
//! one transaction, and each still gets its own answer: accepted, a retry of a message
//! already sent (stored or earlier in the same batch), or its own error.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, TestUser, spawn_app_with};

/// Holds the database's write side so the first batch cannot finish: a row lock on a
/// channel (PostgreSQL) or SQLite's write lock, from a connection of the test's own.
enum Blocker {
    Postgres(tokio_postgres::Client),
    Sqlite(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>),
}

impl Blocker {
    async fn hold(app: &TestApp, channel: &str) -> Blocker {
        match app.db {
            Db::Postgres => {
                let (client, conn) =
                    tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("BEGIN; SELECT 1 FROM channel WHERE id = {channel} FOR UPDATE"))
                    .await
                    .expect("lock the channel");
                Blocker::Postgres(client)
            }
            Db::Sqlite => {
                let path = app.database_url.trim_start_matches("sqlite://").to_owned();
                let (release, released) = std::sync::mpsc::channel::<()>();
                let (locked, is_locked) = std::sync::mpsc::channel::<()>();
                let holder = std::thread::spawn(move || {
                    let c = rusqlite::Connection::open(path).expect("open sqlite");
                    c.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
                    locked.send(()).expect("signal");
                    let _ = released.recv();
                    c.execute_batch("COMMIT").expect("release the write lock");
                });
                is_locked.recv().expect("write lock taken");
                Blocker::Sqlite(release, holder)
            }
        }
    }

    async fn release(self) {
        match self {
            Blocker::Postgres(client) => client.batch_execute("COMMIT").await.expect("unlock"),
            Blocker::Sqlite(release, holder) => {
                release.send(()).expect("release");
                tokio::task::spawn_blocking(move || holder.join().expect("holder")).await.expect("join");
            }
        }
    }
}

/// The value of an unlabelled metric, 0 when absent.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

async fn wait_for_metric(app: &TestApp, name: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = metric(app, name).await;
        if v >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {v}, expected {at_least}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A send in the background: (status, body).
fn spawn_send(
    app: &TestApp,
    from: &TestUser,
    channel: &str,
    body: Value,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let (client, token) = (app.client.clone(), from.access.clone());
    let url = format!("{}/api/v1/channels/{channel}/messages", app.address);
    tokio::spawn(async move {
        let r = client.post(url).bearer_auth(token).json(&body).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    })
}

fn text(t: &str, cmid: &str) -> Value {
    json!({"type": "text", "content": {"text": t}, "clientMsgId": cmid})
}

async fn one_batch_answers_each_send_on_its_own(db: Db) {
    let app = spawn_app_with(db, |c| c.group_commit.concurrency = 1).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "gc", 5).await;
    let (ann, bob, cat, eve) = (&u[0], &u[1], &u[2], &u[4]);
    let ab = app.make_friends(ann, bob).await;
    let ac = app.make_friends(ann, cat).await;
    let r = app.patch(&format!("/api/v1/contacts/{}", ann.id), &cat.access, json!({"isBlocked": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let g = app.create_group(ann, "Team", &[bob, cat]).await;
    let gone = app.create_group(ann, "Gone", &[bob]).await;
    let r = app.call(reqwest::Method::POST, &format!("/api/v1/channels/{gone}/dismiss"), Some(&ann.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // The first send takes the only slot and waits on the lock; everything sent
    // meanwhile queues up behind it.
    let blocker = Blocker::hold(&app, &ab).await;
    let before = metric(&app, "message_send_batch_size_count").await;
    let first = spawn_send(&app, ann, &ab, text("first", "gc-first"));
    wait_for_metric(&app, "message_send_batch_size_count", before + 1.0).await;
    // Queued one at a time, so the batch sees them in this order.
    let mention = json!({"type": "text", "content": {"text": "@ann @eve"}, "clientMsgId": "gc-mention",
                         "mentions": [ann.id, eve.id, bob.id]});
    let mut plan: Vec<(&str, &TestUser, &str, Value)> = Vec::new();
    for i in 0..5 {
        plan.push(("new", ann, &ab, text(&format!("n{i}"), &format!("gc-{i}"))));
    }
    for _ in 0..3 {
        plan.push(("dup", ann, &ab, text("twice", "gc-dup")));
    }
    plan.push(("again", ann, &ab, text("first", "gc-first")));
    plan.push(("reused", ann, &g, text("elsewhere", "gc-dup")));
    plan.push(("blocked", ann, &ac, text("hi cat", "gc-cat")));
    plan.push(("outsider", eve, &g, text("let me in", "gc-eve")));
    plan.push(("archived", ann, &gone, text("anyone?", "gc-gone")));
    plan.push(("unknown", ann, "4242424242", text("void", "gc-void")));
    plan.push(("mention", bob, &g, mention));
    let mut queued = Vec::new();
    for (kind, from, channel, body) in plan {
        queued.push((kind, spawn_send(&app, from, channel, body)));
        wait_for_metric(&app, "message_sends_waiting", queued.len() as f64).await;
    }
    blocker.release().await;

    let (status, first) = first.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["seq"], 1);
    let mut new_seqs = Vec::new();
    let mut dup_ids = Vec::new();
    for (kind, task) in queued {
        let (status, body) = task.await.unwrap();
        let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
        match kind {
            "new" => {
                assert_eq!(status, StatusCode::CREATED, "{body}");
                new_seqs.push(body["seq"].as_i64().unwrap());
            }
            "dup" => {
                assert_eq!(status, StatusCode::CREATED, "{body}");
                dup_ids.push((body["messageId"].clone(), body["seq"].clone()));
            }
            "again" => {
                assert_eq!(status, StatusCode::CREATED, "{body}");
                assert_eq!(body["messageId"], first["messageId"], "a retry answers the stored message");
            }
            "reused" => assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "client_msg_id_reused"), "{body}"),
            "blocked" | "outsider" => assert_eq!(status, StatusCode::FORBIDDEN, "{kind}: {body}"),
            "archived" => assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "channel_archived"), "{body}"),
            "unknown" => assert_eq!(status, StatusCode::NOT_FOUND, "{body}"),
            "mention" => assert_eq!(status, StatusCode::CREATED, "{body}"),
            _ => unreachable!(),
        }
    }
    // The retries within the batch are one message.
    assert!(dup_ids.windows(2).all(|w| w[0] == w[1]), "{dup_ids:?}");
    new_seqs.push(dup_ids[0].1.as_i64().unwrap());
    new_seqs.sort_unstable();
    assert_eq!(new_seqs, (2..=7).collect::<Vec<_>>(), "gap-free after the first");

    // Everything after the first went out in one transaction: two send times in all.
    let times = app.scalar("SELECT COUNT(DISTINCT created_at) FROM message WHERE client_msg_id LIKE 'gc-%'").await;
    assert_eq!(times, 2, "the queued sends were written as one batch");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message WHERE client_msg_id LIKE 'gc-%'").await, 8);
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) FROM message WHERE channel_id IN ({ac}, {gone}, 4242424242)")).await,
        0,
        "refused sends wrote nothing"
    );
    // Exact counts: bob has all seven unread, ann none; only the member was mentioned.
    assert_eq!(app.conversation(bob, &ab).await.unwrap()["unreadCount"], 7);
    assert_eq!(app.conversation(ann, &ab).await.unwrap()["unreadCount"], 0);
    let mentioned = app.conversation(ann, &g).await.unwrap();
    assert_eq!((mentioned["unreadCount"].as_i64(), mentioned["mentionCount"].as_i64()), (Some(1), Some(1)));
    assert_eq!(app.conversation(cat, &g).await.unwrap()["mentionCount"], 0);
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) FROM message_mention WHERE channel_id = {g}")).await,
        1,
        "a mention row only for the member mentioned"
    );
    app.assert_consistent().await;
    app.stop().await;
}

/// With `max_batch = 1` every send commits alone and the answers are the same.
async fn without_batching_each_send_commits_alone(db: Db) {
    let app = spawn_app_with(db, |c| c.group_commit.max_batch = 1).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "solo", 2).await;
    let ab = app.make_friends(&u[0], &u[1]).await;
    let sends: Vec<_> = (0..12).map(|i| spawn_send(&app, &u[0], &ab, text("x", &format!("solo-{}", i % 6)))).collect();
    let mut seqs = Vec::new();
    for s in sends {
        let (status, body) = s.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        seqs.push(body["seq"].as_i64().unwrap());
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "six client ids, six messages");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message").await, 6);
    assert_eq!(app.conversation(&u[1], &ab).await.unwrap()["unreadCount"], 6);
    app.assert_consistent().await;
    app.stop().await;
}

/// Concurrent senders into one chat and one group: every member is told of every message
/// in seq order, whatever order the batches' transactions began in (consumers read the
/// outbox in transaction-id order; see `hermet-store/src/postgres/locks.rs`).
async fn pushes_follow_seq_order_under_concurrent_sends(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.database.max_connections = 8;
        c.group_commit.concurrency = 4;
        c.group_commit.max_batch = 4;
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let chat = app.make_friends(&ann, &bob).await;
    let group = app.create_group(&ann, "Busy", &[&bob, &cat]).await;
    let senders: Vec<(&TestUser, &str)> =
        vec![(&ann, &chat), (&bob, &chat), (&ann, &chat), (&ann, &group), (&bob, &group), (&cat, &group)];
    let sends = senders.iter().enumerate().map(|(k, (who, channel))| {
        let app = &app;
        async move {
            for i in 0..15 {
                app.send_text(who, channel, &format!("s{k} m{i}"), Value::Null).await;
            }
        }
    });
    futures::future::join_all(sends).await;
    let seqs = |user: &TestUser, channel: &str| -> Vec<i64> {
        app.push
            .deliveries()
            .iter()
            .filter(|(u, n)| {
                u.to_string() == user.id && n.event_type == "message.sent" && n.payload["channelId"] == channel
            })
            .map(|(_, n)| n.payload["seq"].as_i64().unwrap())
            .collect()
    };
    crate::pipeline::eventually(30, "every message pushed", || async {
        seqs(&bob, &chat).len() == 45 && seqs(&cat, &group).len() == 45
    })
    .await;
    for (user, channel) in [(&ann, &chat), (&bob, &chat), (&ann, &group), (&bob, &group), (&cat, &group)] {
        assert_eq!(seqs(user, channel), (1..=45).collect::<Vec<_>>(), "{}'s pushes in {channel}", user.id);
    }
    app.stop().await;
}

crate::both_backends!(
    one_batch_answers_each_send_on_its_own,
    without_batching_each_send_commits_alone,
    pushes_follow_seq_order_under_concurrent_sends,
);
