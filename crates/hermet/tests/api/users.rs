use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Db, spawn_app};

async fn profile_update_bumps_version_and_records_an_event(db: Db) {
    let app = spawn_app(db).await;
    let u = app.sign_up("fay@example.com", "Fay").await;
    let r = app
        .patch(
            "/api/v1/users/me",
            &u.access,
            json!({"nickname": "Fay Z", "avatar": "https://cdn.example.com/f.png", "gender": "female", "region": "Lyon", "birthday": "1991-03-04", "tagline": "hi"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["nickname"], "Fay Z");
    assert_eq!(r.body["gender"], "female");
    assert_eq!(r.body["birthday"], "1991-03-04");
    assert_eq!(r.body["profileVer"], 2);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'user.profile_updated'").await, 1);

    // null clears the birthday; an unchanged value writes nothing
    let r = app.patch("/api/v1/users/me", &u.access, json!({"birthday": null})).await;
    assert_eq!(r.body["birthday"], serde_json::Value::Null);
    assert_eq!(r.body["profileVer"], 3);
    let r = app.patch("/api/v1/users/me", &u.access, json!({"nickname": "Fay Z"})).await;
    assert_eq!(r.body["profileVer"], 3);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 2);

    // invalid values name the field and change nothing
    for (field, body) in [
        ("birthday", json!({"birthday": "1991-02-30"})),
        ("gender", json!({"gender": "robot"})),
        ("nickname", json!({"nickname": "   "})),
        ("tagline", json!({"tagline": "t".repeat(257)})),
        ("profileVer", json!({"profileVer": 99})),
    ] {
        let r = app.patch("/api/v1/users/me", &u.access, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.field(), field);
    }
    let me = app.get("/api/v1/users/me", &u.access).await;
    assert_eq!(me.body["profileVer"], 3);
    assert_eq!(me.body["nickname"], "Fay Z");
    app.stop().await;
}

async fn a_user_cannot_change_another_user(db: Db) {
    let app = spawn_app(db).await;
    let a = app.sign_up("gus@example.com", "Gus").await;
    let b = app.sign_up("hal@example.com", "Hal").await;
    // there is no route to change someone else's profile…
    let r = app.patch(&format!("/api/v1/users/{}", b.id), &a.access, json!({"nickname": "pwned"})).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    // …and admin routes refuse non-admins
    let r = app.call(Method::POST, &format!("/api/v1/admin/users/{}/disable", b.id), Some(&a.access), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", b.id), Some(&a.access), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // PATCH /users/me changes only the caller
    app.patch("/api/v1/users/me", &a.access, json!({"nickname": "Gus 2"})).await;
    let other = app.get(&format!("/api/v1/users/{}", b.id), &a.access).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body["nickname"], "Hal");
    assert_eq!(other.body["profileVer"], 1);
    assert!(other.body.get("email").is_none(), "public profiles hide accounts");
    assert_eq!(app.get("/api/v1/users/me", &b.access).await.status, StatusCode::OK);
    app.stop().await;
}

async fn public_profiles_and_search(db: Db) {
    let app = spawn_app(db).await;
    let me = app.sign_up("ivy@example.com", "Ivy").await;
    for (acct, nick) in [
        ("zed1@example.com", "Zed Alpha"),
        ("zed2@example.com", "zed beta"),
        ("zed3@example.com", "Zedd"),
        ("zoe@example.com", "Zoë"),
    ] {
        app.sign_up(acct, nick).await;
    }
    // nickname prefix, case-folded, paged by cursor in nickname order
    let r = app.get("/api/v1/users/search?q=ZED&limit=2", &me.access).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let names: Vec<_> =
        r.body["items"].as_array().unwrap().iter().map(|u| u["nickname"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["Zed Alpha", "zed beta"]);
    let cursor = r.body["nextCursor"].as_str().expect("a next page").to_owned();
    let r = app.get(&format!("/api/v1/users/search?q=ZED&limit=2&cursor={cursor}"), &me.access).await;
    let names: Vec<_> =
        r.body["items"].as_array().unwrap().iter().map(|u| u["nickname"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["Zedd"]);
    assert!(r.body["nextCursor"].is_null());
    // non-ASCII folds the same way on both backends
    let r = app.get("/api/v1/users/search?q=zoË", &me.access).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    // exact e-mail
    let r = app.get("/api/v1/users/search?q=ZED3@example.com", &me.access).await;
    assert_eq!(r.body["items"][0]["nickname"], "Zedd");
    // bad parameters
    assert_eq!(app.get("/api/v1/users/search?q=", &me.access).await.field(), "q");
    assert_eq!(app.get("/api/v1/users/search?q=z&limit=500", &me.access).await.field(), "limit");
    assert_eq!(app.get("/api/v1/users/search?q=z&cursor=garbage", &me.access).await.field(), "cursor");
    assert_eq!(app.get("/api/v1/users/search", &me.access).await.field(), "q");
    // unknown and malformed ids
    assert_eq!(app.get("/api/v1/users/123456789", &me.access).await.status, StatusCode::NOT_FOUND);
    let r = app.get("/api/v1/users/abc", &me.access).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.field(), "id");
    app.stop().await;
}

crate::both_backends!(
    profile_update_bumps_version_and_records_an_event,
    a_user_cannot_change_another_user,
    public_profiles_and_search
);
