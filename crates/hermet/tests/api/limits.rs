//! Rate limits against a real server: budgets per user, per address and per account,
//! answered 429 `rate_limited` with `Retry-After`, writing nothing; a WebSocket `send` over
//! the budget gets an `error` frame and the socket stays open.

use std::time::Duration;

use hermet_app::rate_limits::Rate;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, PASSWORD, spawn_app_with};
use crate::realtime::Client;

fn retry_after(r: &crate::helpers::Resp) -> u64 {
    r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Three sends in a burst, then 429 for the fourth, over HTTP and over the socket.
async fn sends_over_the_budget_are_refused(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.sends_per_user = Rate { count: 1, per_secs: 3600, burst: 3 };
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Limited", &[&bob]).await;
    for i in 0..3 {
        app.send_text(&ann, &g, &format!("m{i}"), serde_json::Value::Null).await;
    }
    let path = format!("/api/v1/channels/{g}/messages");
    let r = app.post(&path, Some(&ann.access), json!({"type": "text", "content": {"text": "one too many"}})).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{}", r.body);
    assert_eq!(r.body["error"]["details"]["limit"], "sends_per_user");
    assert!((3000..=3600).contains(&retry_after(&r)), "Retry-After: {:?}", r.headers.get("retry-after"));
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM message WHERE channel_id = {g}")).await, 3);
    // bob has a budget of his own
    app.send_text(&bob, &g, "mine", serde_json::Value::Null).await;

    let (mut c, _) = Client::connect(&app, &ann).await;
    c.send(json!({"type": "send", "channelId": g, "msgType": "text", "content": {"text": "x"}, "clientMsgId": "w-1"}))
        .await;
    let e = c.next_of("error").await;
    assert_eq!((e["error"]["code"].as_str(), e["replyTo"].as_str()), (Some("rate_limited"), Some("w-1")), "{e}");
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.next_of("pong").await["type"], "pong", "the socket stays open");
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM message WHERE channel_id = {g}")).await, 4);
    app.stop().await;
}

/// After the free failures, each further attempt on the account waits longer (even with
/// the right password); the owner's open session and its refresh keep working; a right
/// password after the wait signs in and resets the count.
async fn failed_sign_ins_back_off(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.sign_in_free_failures = 2;
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let sign_in = |pw: &str| json!({"account": "ann@example.com", "accountType": "email", "credential": pw});
    for _ in 0..3 {
        let r = app.post("/api/v1/auth/sign-in", None, sign_in("wrong password!")).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"), "{}", r.body);
    }
    let r = app.post("/api/v1/auth/sign-in", None, sign_in(PASSWORD)).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{}", r.body);
    assert_eq!(r.body["error"]["details"]["limit"], "sign_in_failures_per_account");
    assert_eq!(retry_after(&r), 1);
    // an unknown account backs off alike: the answer tells nothing about existence
    for _ in 0..3 {
        app.post(
            "/api/v1/auth/sign-in",
            None,
            json!({"account": "nobody@example.com", "accountType": "email", "credential": "wrong password!"}),
        )
        .await;
    }
    let r = app
        .post(
            "/api/v1/auth/sign-in",
            None,
            json!({"account": "nobody@example.com", "accountType": "email", "credential": "wrong password!"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // the owner is not locked out of what is already open
    assert_eq!(app.get("/api/v1/users/me", &ann.access).await.status, StatusCode::OK);
    let r = app.post("/api/v1/auth/refresh-token", None, json!({"refreshToken": ann.refresh})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = app.post("/api/v1/auth/sign-in", None, sign_in(PASSWORD)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.post("/api/v1/auth/sign-in", None, sign_in("wrong password!")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the success reset the count");
    app.stop().await;
}

/// Sign-ups from one address: the budget, then 429, and nothing written.
async fn sign_ups_per_address(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.sign_up_per_ip = Rate { count: 1, per_secs: 3600, burst: 2 };
    })
    .await;
    app.sign_up("a@example.com", "A").await;
    app.sign_up("b@example.com", "B").await;
    let body = json!({"account": "c@example.com", "accountType": "email", "credential": PASSWORD, "nickname": "C"});
    let r = app.post("/api/v1/auth/sign-up", None, body).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{}", r.body);
    assert_eq!(r.body["error"]["details"]["limit"], "sign_up_per_ip");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM users WHERE email = 'c@example.com'").await, 0);
    app.stop().await;
}

/// With Redis, nodes take from one budget: two sign-ups on one node and one on another
/// spend a burst of three for the address, and failed sign-ins counted on one node hold
/// back the account on the other. With Redis gone, each node limits on its own budgets
/// and nothing fails.
async fn nodes_share_budgets_through_redis(db: Db) {
    let mut redis = hermet_bench::processes::Redis::start().await;
    let url = redis.url();
    let node = |id: u16| {
        let url = url.clone();
        spawn_app_with(db, move |c| {
            c.node_id = id;
            c.redis_url = Some(url);
            c.rate_limits.enabled = true;
            c.rate_limits.sign_up_per_ip = Rate { count: 1, per_secs: 3600, burst: 3 };
            c.rate_limits.sign_in_free_failures = 2;
        })
    };
    let (one, two) = (node(1).await, node(2).await);
    one.sign_up("a@example.com", "A").await;
    one.sign_up("b@example.com", "B").await;
    two.sign_up("c@example.com", "C").await;
    let body = json!({"account": "d@example.com", "accountType": "email", "credential": PASSWORD, "nickname": "D"});
    let r = two.post("/api/v1/auth/sign-up", None, body.clone()).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{}", r.body);
    assert_eq!(r.body["error"]["details"]["limit"], "sign_up_per_ip");
    assert!(retry_after(&r) >= 3000, "one period of 3600 s, less what passed: {:?}", r.headers);

    for _ in 0..3 {
        assert_eq!(one.sign_in("a@example.com", "wrong password").await.status, StatusCode::UNAUTHORIZED);
    }
    let r = two.sign_in("a@example.com", PASSWORD).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{}", r.body);

    redis.kill();
    let r = two.post("/api/v1/auth/sign-up", None, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "node two's own budget serves while Redis is away: {}", r.body);
    one.stop().await;
    two.stop().await;
}

crate::both_backends!(
    sends_over_the_budget_are_refused,
    failed_sign_ins_back_off,
    sign_ups_per_address,
    nodes_share_budgets_through_redis
);
