//! Faults against a real server: the database stopped, frozen and started again (on a
//! cluster of the test's own), a read replica away, the pipeline's node restarted under
//! load. Guards are generous; recovery times are for benchmarks, not asserted here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, PASSWORD, TestApp, TestUser, free_port, hermet_process, spawn_app_with};
use crate::own_postgres::OwnPostgres;
use crate::pipeline::{KillOnDrop, eventually};
use crate::realtime::{Client, assert_consecutive, synced};

/// A server on a PostgreSQL cluster of the test's own, with one user.
async fn on_own_postgres() -> (OwnPostgres, TestApp, TestUser) {
    let pg = OwnPostgres::start();
    let url = pg.url();
    let app = spawn_app_with(Db::Postgres, move |c| c.database_url = url).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    (pg, app, ann)
}

async fn readyz(app: &TestApp) -> reqwest::Response {
    app.client.get(format!("{}/readyz", app.address)).send().await.unwrap()
}

/// PostgreSQL stopped: reads, writes and `/readyz` answer 503 `database_unavailable` with
/// `Retry-After` (not 500, not a hang), nothing is written, and once the server is back the
/// same node serves again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_answers_503_and_recovers() {
    let (pg, app, ann) = on_own_postgres().await;
    let ready = || readyz(&app);
    assert_eq!(ready().await.status(), StatusCode::OK);

    pg.stop();
    let started = Instant::now();
    let r = app.get("/api/v1/users/me", &ann.access).await;
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"), "{}", r.body);
    assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let sign_up =
        json!({"account": "bob@example.com", "accountType": "email", "credential": PASSWORD, "nickname": "Bob"});
    let r = app.post("/api/v1/auth/sign-up", None, sign_up.clone()).await;
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"), "{}", r.body);
    let r = ready().await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(20), "answered, not hung: {:?}", started.elapsed());

    pg.start_again();
    eventually(30, "the API answers again", || async {
        app.get("/api/v1/users/me", &ann.access).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(ready().await.status(), StatusCode::OK);
    // the refused sign-up wrote nothing: the account is free
    let r = app.post("/api/v1/auth/sign-up", None, sign_up).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    app.stop().await;
}

/// PostgreSQL frozen (`SIGSTOP`): connections stay open and nothing answers. Requests get
/// 503 `database_unavailable` once the watchdog sees it (not after the 30 s request
/// timeout), `/readyz` says not ready, and the node serves again once the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_frozen_answers_503_and_recovers() {
    let (pg, app, ann) = on_own_postgres().await;
    let ready = || readyz(&app);
    assert_eq!(ready().await.status(), StatusCode::OK);

    pg.freeze();
    let started = Instant::now();
    let r = app.get("/api/v1/users/me", &ann.access).await;
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(20), "answered, not hung: {:?}", started.elapsed());
    let r = app.post("/api/v1/channels/groups", Some(&ann.access), json!({"name": "Frozen", "memberIds": []})).await;
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"), "{}", r.body);
    assert_eq!(ready().await.status(), StatusCode::SERVICE_UNAVAILABLE);

    pg.thaw();
    eventually(30, "the API answers again", || async {
        app.get("/api/v1/users/me", &ann.access).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(ready().await.status(), StatusCode::OK);
    app.stop().await;
}

/// A read replica that does not answer: reads go to the primary (within a second, not
/// after each request's acquire timeout), and writes are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_primary_while_the_replica_is_away() {
    let nobody = free_port();
    let app = spawn_app_with(Db::Postgres, move |c| {
        c.read_database_url = Some(format!("postgres://postgres@127.0.0.1:{nobody}/postgres"));
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Replica away", &[&bob]).await;
    app.send_text(&ann, &g, "read me", serde_json::Value::Null).await;
    let started = Instant::now();
    for _ in 0..5 {
        let (list, unread) = app.conversation_list(&bob).await;
        assert_eq!((list.len(), unread), (1, 1));
        let r = app.get(&format!("/api/v1/channels/{g}/messages"), &bob.access).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    let ready = readyz(&app).await;
    assert_eq!(ready.status(), StatusCode::OK, "the primary serves");
    app.stop().await;
}

/// `hermet serve` as a process of its own: node `node` with the pipeline, async mode.
async fn serve_process(database_url: &str, node: u16, log: &std::path::Path) -> (KillOnDrop, String) {
    hermet_process(database_url, node, log, &[("HERMET_SYNC_MODE", "async")]).await
}

/// The node running the pipeline restarted twice under sustained sends from three
/// clients, once cleanly (SIGTERM) and once killed (SIGKILL): every acknowledged message
/// is stored once with gap-free seqs, the read models are consistent with exact unread
/// counts, and the receiver's inbox holds every message once, in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_node_restarted_under_load_loses_nothing() {
    let app = spawn_app_with(Db::Postgres, |c| {
        c.node_id = 1;
        c.sync_mode = hermet::config::SyncModeConfig::Async;
        c.pipeline.serve_runs_pipeline = false;
        c.pipeline.read_your_writes_timeout_ms = 1_000;
    })
    .await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("node2.log");
    let (mut node, address) = serve_process(&app.database_url, 2, &log).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Under load", &[&bob]).await;
    let (b, ready) = Client::connect_to(&address, &bob).await;
    let from = ready["cursor"].as_i64().unwrap();
    drop(b);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..3)
        .map(|k| {
            let (client, address, token, g) = (app.client.clone(), app.address.clone(), ann.access.clone(), g.clone());
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"type": "text", "content": {"text": format!("s{k} m{i}")}});
                    let r = client
                        .post(format!("{address}/api/v1/channels/{g}/messages"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .expect("the API node answers");
                    assert_eq!(r.status(), StatusCode::CREATED);
                    let v: serde_json::Value = r.json().await.unwrap();
                    acked.lock().unwrap().push(v["seq"].as_i64().unwrap());
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // a clean restart
    let status = std::process::Command::new("kill").args(["-TERM", &node.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    node.0.wait().unwrap();
    let (again, _) = serve_process(&app.database_url, 2, &log).await;
    node = again;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // a crash
    node.0.kill().unwrap();
    node.0.wait().unwrap();
    let (_node, address) = serve_process(&app.database_url, 2, &log).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }

    let mut acked = acked.lock().unwrap().clone();
    acked.sort_unstable();
    let n = acked.len() as i64;
    assert!(n > 0);
    assert_eq!(acked, (1..=n).collect::<Vec<_>>(), "every acknowledged seq once, no gap");
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM message WHERE channel_id = {g}")).await, n);
    let head = format!("SELECT COALESCE(MAX(seq), 0) FROM user_inbox_head WHERE user_id = {}", bob.id);
    eventually(60, "bob's inbox holds every message", || async { app.scalar(&head).await == from + n }).await;
    eventually(60, "bob's unread count is exact", || async { app.conversation_list(&bob).await.1 == n }).await;
    app.assert_consistent().await;

    let (mut b, _) = Client::connect_to(&address, &bob).await;
    b.send(json!({"type": "sync", "cursor": from})).await;
    let (frames, _) = synced(&mut b).await;
    assert_consecutive(&frames, from);
    let seqs: Vec<i64> =
        frames.iter().filter(|f| f["type"] == "message.new").map(|f| f["data"]["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, acked, "every message once, in seq order");
    // live pushes flow again after the restarts
    let last = app.send_text(&ann, &g, "after the restarts", serde_json::Value::Null).await;
    assert_eq!(b.next_of("message.new").await["data"]["seq"].as_i64(), Some(last));
    app.stop().await;
}
