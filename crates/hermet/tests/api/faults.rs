//! Faults of the dependencies, against a real server: the database stopped and started
//! again (on a cluster of the test's own). Guards are generous; the recovery times
//! themselves are measured by `hermet bench`, not asserted here.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, PASSWORD, spawn_app_with};
use crate::own_postgres::OwnPostgres;
use crate::pipeline::eventually;

/// PostgreSQL stopped: reads, writes and `/readyz` answer 503 `database_unavailable` with
/// `Retry-After` (not 500, not a hang), nothing is written, and once the server is back the
/// same node serves again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_answers_503_and_recovers() {
    let pg = OwnPostgres::start();
    let url = pg.url();
    let app = spawn_app_with(Db::Postgres, move |c| c.database_url = url).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let ready = || async { app.client.get(format!("{}/readyz", app.address)).send().await.unwrap() };
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
    let pg = OwnPostgres::start();
    let url = pg.url();
    let app = spawn_app_with(Db::Postgres, move |c| c.database_url = url).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let ready = || async { app.client.get(format!("{}/readyz", app.address)).send().await.unwrap() };
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
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
    let ready = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "the primary serves");
    app.stop().await;
}
