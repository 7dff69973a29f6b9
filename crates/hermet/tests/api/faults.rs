//! Faults against a real server: the database stopped, frozen and started again (on a
//! cluster of the test's own), a read replica away; and the scenarios of `hermet bench
//! faults` under load (Redis killed, the broker down, the database stopped, the
//! pipeline's node restarted and killed). Guards are generous; recovery times are for the
//! benchmark (docs/RELIABILITY.md), not asserted here.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, PASSWORD, TestApp, TestUser, free_port, fresh_database, spawn_app_with};
use crate::pipeline::eventually;
use hermet_bench::faults::{Fault, Plan, Tools, run_once};
use hermet_bench::processes::OwnPostgres;

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

/// A scenario of `hermet bench faults`, once, on a fresh database, under steady sends
/// from three clients with two WebSocket receivers online: every acknowledged message
/// stored once with gap-free seqs, every receiver got every message in seq order, unread
/// counts exact, the consistency checker clean, and writes, pushes (and projections,
/// presence where they apply) recovered within the run's 30 s guard.
async fn under_load(fault: Fault, outage: Duration, rate: f64) {
    let (url, _keep) = fresh_database(Db::Postgres).await;
    let logs = tempfile::Builder::new().prefix("hermet-fault-test-").tempdir().unwrap();
    let mut plan = Plan::new(fault);
    plan.outage = outage;
    plan.rate = rate;
    plan.recovery_limit = Duration::from_secs(30);
    let tools = Tools { hermet: env!("CARGO_BIN_EXE_hermet").into() };
    let run = run_once(&plan, &tools, &url, logs.path()).await.unwrap();
    if !run.holds() {
        panic!("{run:#?}\nthe nodes' logs: {}", logs.keep().display());
    }
    assert!(run.acknowledged > 20, "load was held: {run:#?}");
    assert_eq!((run.lost, run.duplicated), (0, 0));
    assert!(run.write_recovery_ms.is_some() && run.push_recovery_ms.is_some(), "{run:#?}");
    match fault {
        Fault::Redis => assert!(run.presence_recovery_ms.is_some(), "{run:#?}"),
        Fault::Broker | Fault::Restart | Fault::Kill => assert!(run.projection_recovery_ms.is_some(), "{run:#?}"),
        Fault::Database => {
            assert!(run.refused_attempts > 0, "sends were refused while the database was away");
            assert!(run.unavailable_after_ms.is_some() && run.not_ready_after_ms.is_some(), "{run:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_for_20_s_under_load() {
    under_load(Fault::Redis, Duration::from_secs(20), 20.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_for_60_s_under_load() {
    under_load(Fault::Broker, Duration::from_secs(60), 20.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_and_started_under_load() {
    under_load(Fault::Database, Duration::from_secs(10), 20.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_node_restarted_under_load() {
    under_load(Fault::Restart, Duration::ZERO, 20.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_node_killed_under_load() {
    under_load(Fault::Kill, Duration::ZERO, 20.0).await;
}
