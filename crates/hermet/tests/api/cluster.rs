//! Several `hermet` nodes sharing PostgreSQL and Redis (a real redis-server per test):
//! pushes cross nodes, a killed node's users reconnect elsewhere and miss nothing, the
//! notifier fails over, revocation reaches every node.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, hermet_process, spawn_app_with};
use crate::pipeline::{KillOnDrop, eventually};
use crate::realtime::{Client, assert_consecutive, synced};
use hermet_bench::processes::Redis;

/// `hermet serve` as its own process: node `node`, sharing `app`'s database and `redis`.
async fn node_process(app: &TestApp, redis: &Redis, node: u16, log: &std::path::Path) -> (KillOnDrop, String) {
    let url = redis.url();
    let env = [
        ("HERMET_REDIS_URL", url.as_str()),
        ("HERMET_LOG_FORMAT", "json"),
        ("HERMET_PIPELINE__CONSUMER_LEASE_MS", "1500"),
        ("HERMET_GATEWAY__HEARTBEAT_SECS", "1"),
        ("HERMET_GATEWAY__NODE_TTL_SECS", "3"),
    ];
    hermet_process(&app.database_url, node, log, &env).await
}

/// Three nodes: node 1 in process (API only, no pipeline), nodes 2 and 3 as processes;
/// node 2 starts first, so it runs the notifier. A message sent through node 1 reaches
/// users on nodes 2 and 3; node 2 is killed; node 3 takes over the notifier; bob, who was
/// on node 2, reconnects to node 3 with his cursor and misses nothing; presence and
/// revocation work across nodes.
async fn three_nodes_with_redis(_db: Db) {
    let redis = Redis::start().await;
    let url = redis.url();
    let app = spawn_app_with(Db::Postgres, |c| {
        c.redis_url = Some(url.clone());
        c.node_id = 1;
        c.pipeline.serve_runs_pipeline = false;
        c.gateway.heartbeat_secs = 1;
        c.gateway.node_ttl_secs = 3;
    })
    .await;
    let logs = tempfile::tempdir().unwrap();
    let (mut node2, addr2) = node_process(&app, &redis, 2, &logs.path().join("node2.log")).await;
    eventually(30, "node 2 runs the notifier", || async {
        std::fs::read_to_string(logs.path().join("node2.log")).unwrap_or_default().contains("consumers start")
    })
    .await;
    let (_node3, addr3) = node_process(&app, &redis, 3, &logs.path().join("node3.log")).await;

    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    app.make_friends(&ann, &bob).await;
    let (mut a, _) = Client::connect_to(&app.address, &ann).await;
    let (mut b, _) = Client::connect_to(&addr2, &bob).await;
    let (mut c, _) = Client::connect_to(&addr3, &cat).await;
    let g = app.create_group(&ann, "Cluster", &[&bob, &cat]).await;
    let created = b.next_of("channel.created").await;
    c.next_of("channel.created").await;
    a.next_of("channel.created").await;

    // cross-node delivery: sent through node 1, heard on nodes 2 and 3
    a.send(json!({"type": "send", "channelId": g, "msgType": "text", "content": {"text": "hello nodes"}})).await;
    let seq = a.next_of("ack").await["seq"].as_i64().unwrap();
    let on2 = b.next_of("message.new").await;
    assert_eq!(on2["data"]["seq"], seq);
    assert_eq!(c.next_of("message.new").await["data"]["seq"], seq);
    let bob_cursor = on2["cursor"].as_i64().unwrap();
    assert_eq!(bob_cursor, created["cursor"].as_i64().unwrap() + 1);
    let presence = format!("/api/v1/users/{}/presence", bob.id);
    let r = app.get(&presence, &ann.access).await;
    assert_eq!((r.body["online"].as_bool(), r.body["connections"].as_u64()), (Some(true), Some(1)), "{}", r.body);

    // node 2 dies (with the notifier); messages keep coming through node 1
    node2.0.kill().expect("SIGKILL");
    node2.0.wait().unwrap();
    let mut seqs = Vec::new();
    for i in 0..50 {
        seqs.push(app.send_text(&ann, &g, &format!("while node 2 is down {i}"), Value::Null).await);
    }
    // cat, on node 3, hears them all once node 3 has taken over the notifier
    for s in &seqs {
        assert_eq!(c.next_of("message.new").await["data"]["seq"].as_i64(), Some(*s));
    }
    // bob's node is gone: he shows offline once its liveness key lapses
    eventually(15, "bob offline after his node died", || async {
        app.get(&presence, &ann.access).await.body["online"] == false
    })
    .await;
    // bob reconnects to node 3 with his cursor and gets everything he missed, once
    drop(b);
    let (mut b, _) = Client::connect_to(&addr3, &bob).await;
    b.send(json!({"type": "sync", "cursor": bob_cursor})).await;
    let (frames, done) = synced(&mut b).await;
    assert_consecutive(&frames, bob_cursor);
    let got: Vec<i64> =
        frames.iter().filter(|f| f["type"] == "message.new").map(|f| f["data"]["seq"].as_i64().unwrap()).collect();
    assert_eq!(got, seqs, "every message sent while he was away, in order, once");
    assert_eq!(done["cursor"].as_i64(), Some(bob_cursor + 50));
    let r = app.get(&presence, &ann.access).await;
    assert_eq!(r.body["online"], true, "{}", r.body);

    // signing out through node 1 closes bob's socket on node 3
    let r = app.call(reqwest::Method::POST, "/api/v1/auth/sign-out", Some(&bob.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(b.closed().await, 4003);
    app.stop().await;
}

/// Two nodes caching through Redis (`cache.mode = auto` with `redis_url`): what node 2
/// has cached never hides a write acknowledged by node 1 — a message, a read, a large
/// group's message (no member row written), a sign-out.
async fn caches_across_nodes_never_hide_a_write(_db: Db) {
    use crate::cache::{Trio, cache_count, first_page, trio_with_large_group};
    let redis = Redis::start().await;
    let url = redis.url();
    let app = spawn_app_with(Db::Postgres, |c| {
        c.redis_url = Some(url.clone());
        c.node_id = 1;
        c.limits.large_group_threshold = 3;
    })
    .await;
    let logs = tempfile::tempdir().unwrap();
    let (_node2, addr2) = node_process(&app, &redis, 2, &logs.path().join("node2.log")).await;
    // node 2's threshold is the default (500): node 1 creates the group, so it is large
    let Trio { ann, bob, cat, pair, big } = trio_with_large_group(&app).await;

    // bob's first page, read on node 2 until it is served from node 2's cache
    let once = first_page(&addr2, &bob).await;
    first_page(&addr2, &bob).await;
    let hits = cache_count(&addr2, "conversations", "hit").await;
    assert_eq!(first_page(&addr2, &bob).await, once);
    assert!(cache_count(&addr2, "conversations", "hit").await > hits, "node 2 served it from its cache");

    for round in 0..3 {
        // a one-to-one message through node 1: node 2 shows it at once
        let s = app.send_text(&ann, &pair, &format!("hi {round}"), Value::Null).await;
        let (items, _) = first_page(&addr2, &bob).await;
        assert_eq!(items[0]["channelId"], pair.as_str(), "round {round}");
        assert_eq!(items[0]["lastMessage"]["seq"].as_i64(), Some(s), "round {round}");
        // a large group's message: no row of bob's is written, his list still moves
        let s = app.send_text(&cat, &big, &format!("all {round}"), Value::Null).await;
        let (items, total) = first_page(&addr2, &bob).await;
        assert_eq!(items[0]["channelId"], big.as_str(), "round {round}");
        assert_eq!(items[0]["lastMessage"]["seq"].as_i64(), Some(s), "round {round}");
        // bob reads both through node 1: node 2 shows no unread
        for (c, seq) in [(&pair, 1000), (&big, 1000)] {
            let r = app.post(&format!("/api/v1/channels/{c}/read"), Some(&bob.access), json!({"seq": seq})).await;
            assert!(r.status.is_success(), "{}", r.body);
        }
        let (_, after) = first_page(&addr2, &bob).await;
        assert!(total > 0, "round {round}: unread before reading");
        assert_eq!(after, 0, "round {round}: read through node 1, seen on node 2");
    }

    // a session node 2 has cached stops working there once node 1 signs it out
    let client = reqwest::Client::new();
    let ok = client.get(format!("{addr2}/api/v1/users/me")).bearer_auth(&bob.access).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let r = app.call(reqwest::Method::POST, "/api/v1/auth/sign-out", Some(&bob.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let gone = client.get(format!("{addr2}/api/v1/users/me")).bearer_auth(&bob.access).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Redis killed under two nodes and started again, empty: meanwhile the API answers and
/// pushes to sockets on the notifier's node keep flowing (routing to the other node waits
/// for Redis, behind a circuit breaker, instead of holding up every push); once Redis is
/// back the nodes put back their liveness keys and presence, and the other node's user
/// gets every message he missed, in order.
async fn redis_outage_keeps_local_pushes_and_recovers(_db: Db) {
    let mut redis = Redis::start().await;
    let url = redis.url();
    let app = spawn_app_with(Db::Postgres, |c| {
        c.redis_url = Some(url.clone());
        c.node_id = 1;
        c.gateway.heartbeat_secs = 1;
        c.gateway.node_ttl_secs = 3;
    })
    .await;
    let logs = tempfile::tempdir().unwrap();
    let (_node2, addr2) = node_process(&app, &redis, 2, &logs.path().join("node2.log")).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    app.make_friends(&ann, &bob).await;
    let (mut c, _) = Client::connect_to(&app.address, &cat).await;
    let (mut b, _) = Client::connect_to(&addr2, &bob).await;
    let g = app.create_group(&ann, "Outage", &[&bob, &cat]).await;
    b.next_of("channel.created").await;
    c.next_of("channel.created").await;
    let first = app.send_text(&ann, &g, "before", Value::Null).await;
    assert_eq!(b.next_of("message.new").await["data"]["seq"].as_i64(), Some(first));
    assert_eq!(c.next_of("message.new").await["data"]["seq"].as_i64(), Some(first));

    redis.kill();
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(app.send_text(&ann, &g, &format!("during {i}"), Value::Null).await);
    }
    // cat is on the notifier's node: every message reaches her while Redis is away
    for s in &sent {
        assert_eq!(c.next_of("message.new").await["data"]["seq"].as_i64(), Some(*s));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    redis.start_again().await;
    let presence = format!("/api/v1/users/{}/presence", bob.id);
    eventually(30, "bob's presence (node 2's key and entries) back in Redis", || async {
        app.get(&presence, &ann.access).await.body["online"] == true
    })
    .await;
    // the next message reaches bob on node 2, preceded by everything he missed, in order
    let last = app.send_text(&ann, &g, "after", Value::Null).await;
    sent.push(last);
    let mut got = Vec::new();
    while got.last() != Some(&last) {
        got.push(b.next_of("message.new").await["data"]["seq"].as_i64().unwrap());
    }
    assert_eq!(got, sent, "bob gets each message once, in order");
    assert_eq!(c.next_of("message.new").await["data"]["seq"].as_i64(), Some(last));
    app.stop().await;
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_outage_keeps_local_pushes_and_recovers() {
        super::redis_outage_keeps_local_pushes_and_recovers(crate::helpers::Db::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_with_redis() {
        super::three_nodes_with_redis(crate::helpers::Db::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn caches_across_nodes_never_hide_a_write() {
        super::caches_across_nodes_never_hide_a_write(crate::helpers::Db::Postgres).await;
    }
}
