//! Read caches (docs/ARCHITECTURE.md "Read caches"): a conversation list's first page
//! and the session check are served from memory, and never hide a write the API has
//! acknowledged: every write below is followed at once by a read that must show it.

use hermet_app::cache::CacheMode;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, TestUser, spawn_app_with};

/// `cache_requests_total{cache=…, result=…}` of the server's process.
pub async fn cache_count(address: &str, cache: &str, result: &str) -> u64 {
    let text = reqwest::get(format!("{address}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("cache_requests_total{")
                && l.contains(&format!("cache=\"{cache}\""))
                && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The first page (as clients ask for it) and the total unread.
pub async fn first_page(address: &str, u: &TestUser) -> (Vec<Value>, i64) {
    let r = reqwest::Client::new()
        .get(format!("{address}/api/v1/conversations?limit=20"))
        .bearer_auth(&u.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    (body["items"].as_array().unwrap().clone(), body["totalUnread"].as_i64().unwrap())
}

/// Ann, Bob and Cat; Ann and Bob friends (`pair`); the three in a group `big` that the
/// server (threshold 3) makes a large one.
pub struct Trio {
    pub ann: TestUser,
    pub bob: TestUser,
    pub cat: TestUser,
    pub pair: String,
    pub big: String,
}

pub async fn trio_with_large_group(app: &TestApp) -> Trio {
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let pair = app.make_friends(&ann, &bob).await;
    let big = app.create_group(&ann, "big", &[&bob, &cat]).await;
    let r = app.get(&format!("/api/v1/channels/{big}"), &bob.access).await;
    assert_eq!(r.body["largeGroup"], true, "three members reach the threshold of 3: {}", r.body);
    Trio { ann, bob, cat, pair, big }
}

fn row<'a>(items: &'a [Value], channel: &str) -> Option<&'a Value> {
    items.iter().find(|c| c["channelId"] == channel)
}

async fn cached_reads_never_hide_an_acknowledged_write(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.cache.mode = CacheMode::Local;
        c.limits.large_group_threshold = 3;
    })
    .await;
    let at = app.address.as_str();
    let admin = app.admin().await;
    let Trio { ann, bob, cat, pair, big } = trio_with_large_group(&app).await;

    // a first page read again with no write in between is a hit (bob is in a large
    // group: the first fill learns which, the second stores the page)
    let once = first_page(at, &bob).await;
    assert_eq!(first_page(at, &bob).await, once);
    let (hits, sessions) = (cache_count(at, "conversations", "hit").await, cache_count(at, "sessions", "hit").await);
    assert_eq!(first_page(at, &bob).await, once);
    assert!(cache_count(at, "conversations", "hit").await > hits, "the repeated read was served from the cache");
    assert!(cache_count(at, "sessions", "hit").await > sessions, "the session check was served from the cache");

    // one-to-one message (write diffusion: the refresh rewrites bob's row)
    let s = app.send_text(&ann, &pair, "hi bob", Value::Null).await;
    let (items, total) = first_page(at, &bob).await;
    assert_eq!(items[0]["channelId"], pair.as_str());
    assert_eq!((items[0]["lastMessage"]["seq"].as_i64(), items[0]["unreadCount"].as_i64()), (Some(s), Some(1)));
    assert_eq!(total, 1);

    // large-group message (read diffusion: no stored row of bob's changes)
    first_page(at, &bob).await;
    let s = app.send_text(&ann, &big, "hello all", json!([bob.id])).await;
    let (items, total) = first_page(at, &bob).await;
    assert_eq!(items[0]["channelId"], big.as_str());
    assert_eq!(items[0]["lastMessage"]["seq"].as_i64(), Some(s));
    assert_eq!((items[0]["unreadCount"].as_i64(), items[0]["mentionCount"].as_i64()), (Some(1), Some(1)));
    assert_eq!(total, 2);

    // bob reads the large group: only his read position moves
    let r = app.post(&format!("/api/v1/channels/{big}/read"), Some(&bob.access), json!({"seq": s})).await;
    assert!(r.status.is_success(), "{}", r.body);
    let (items, total) = first_page(at, &bob).await;
    let g = row(&items, &big).unwrap();
    assert_eq!((g["unreadCount"].as_i64(), g["mentionCount"].as_i64(), total), (Some(0), Some(0), 1));

    // pin, then hide; a new message brings a hidden conversation back
    app.patch(&format!("/api/v1/conversations/{pair}"), &bob.access, json!({"isPinned": true})).await;
    let (items, _) = first_page(at, &bob).await;
    assert_eq!((items[0]["channelId"].as_str(), items[0]["isPinned"].as_bool()), (Some(pair.as_str()), Some(true)));
    app.patch(&format!("/api/v1/conversations/{big}"), &bob.access, json!({"isHidden": true})).await;
    assert!(row(&first_page(at, &bob).await.0, &big).is_none(), "hidden");
    app.send_text(&cat, &big, "back again", Value::Null).await;
    assert!(row(&first_page(at, &bob).await.0, &big).is_some(), "a new message unhides it");

    // the peer renames: bob's one-to-one row shows the new name (refresh through the
    // reverse index, rows of another user's write)
    first_page(at, &bob).await;
    let r = app.patch("/api/v1/users/me", &ann.access, json!({"nickname": "Annie"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (items, _) = first_page(at, &bob).await;
    assert_eq!(row(&items, &pair).unwrap()["name"], "Annie");

    // membership: cat leaves (the group falls below 90% of the threshold and switches
    // to write diffusion), then a message; both lists follow
    first_page(at, &cat).await;
    let r = app.call(Method::POST, &format!("/api/v1/channels/{big}/leave"), Some(&cat.access), None).await;
    assert!(r.status.is_success(), "{}", r.body);
    let s = app.send_text(&ann, &big, "just us", Value::Null).await;
    let r = app.get(&format!("/api/v1/channels/{big}"), &bob.access).await;
    assert_eq!(r.body["largeGroup"], false, "{}", r.body);
    let (items, _) = first_page(at, &bob).await;
    assert_eq!(row(&items, &big).unwrap()["lastMessage"]["seq"].as_i64(), Some(s));

    // sessions: a cached session stops working the moment it is signed out or its
    // user is disabled
    first_page(at, &bob).await;
    let r = app.call(Method::POST, "/api/v1/auth/sign-out", Some(&bob.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/conversations", &bob.access).await.status, StatusCode::UNAUTHORIZED);
    first_page(at, &cat).await;
    let r = app.call(Method::POST, &format!("/api/v1/admin/users/{}/disable", cat.id), Some(&admin.access), None).await;
    assert!(r.status.is_success(), "{}", r.body);
    assert_eq!(app.get("/api/v1/conversations", &cat.access).await.status, StatusCode::UNAUTHORIZED);

    app.assert_consistent().await;
    app.stop().await;
}

/// The embedded default caches without being told (and `off` does not).
async fn embedded_default_caches_and_off_does_not(_db: Db) {
    for (mode, cached) in [(None, true), (Some(CacheMode::Off), false)] {
        let app = spawn_app_with(Db::Sqlite, |c| {
            if let Some(m) = mode {
                c.cache.mode = m;
            }
        })
        .await;
        let ann = app.sign_up("ann@example.com", "Ann").await;
        let before = cache_count(&app.address, "conversations", "hit").await;
        first_page(&app.address, &ann).await;
        first_page(&app.address, &ann).await;
        let after = cache_count(&app.address, "conversations", "hit").await;
        assert_eq!(after > before, cached, "mode {mode:?}");
        app.stop().await;
    }
}

/// `database.statement_cache = false` (PostgreSQL): every statement is prepared for its
/// use; the pipelined paths (send, group creation, refresh, commit) keep their order.
async fn without_statement_cache(_db: Db) {
    let app = spawn_app_with(Db::Postgres, |c| c.database.statement_cache = false).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let pair = app.make_friends(&ann, &bob).await;
    let group = app.create_group(&ann, "g", &[&bob, &cat]).await;
    for i in 0..3 {
        app.send_text(&ann, &pair, &format!("hi {i}"), json!([bob.id])).await;
        app.send_text(&bob, &group, &format!("all {i}"), Value::Null).await;
    }
    let r = app.patch("/api/v1/users/me", &ann.access, json!({"nickname": "Annie"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (items, total) = app.conversation_list(&bob).await;
    assert_eq!(total, 3, "three unread from ann; his own group messages are read");
    let p = row(&items, &pair).unwrap();
    assert_eq!((p["name"].as_str(), p["mentionCount"].as_i64()), (Some("Annie"), Some(3)));
    assert_eq!(app.conversation_list(&cat).await.1, 3);
    app.assert_consistent().await;
    app.stop().await;
}

crate::both_backends!(cached_reads_never_hide_an_acknowledged_write);

mod statements {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_without_statement_cache() {
        super::without_statement_cache(crate::helpers::Db::Postgres).await;
    }
}

mod embedded {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn default_caches_and_off_does_not() {
        super::embedded_default_caches_and_off_does_not(crate::helpers::Db::Sqlite).await;
    }
}
