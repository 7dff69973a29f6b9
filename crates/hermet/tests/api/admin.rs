use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Db, PASSWORD, spawn_app};

async fn disabled_user_is_locked_out(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.sign_up("jay@example.com", "Jay").await;
    let r = app.call(Method::POST, &format!("/api/v1/admin/users/{}/disable", u.id), Some(&admin.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // live tokens stop working at once, sign-in and refresh are refused
    assert_eq!(app.get("/api/v1/users/me", &u.access).await.status, StatusCode::UNAUTHORIZED);
    let r = app.post("/api/v1/auth/refresh-token", None, json!({"refreshToken": u.refresh})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.sign_in("jay@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // enabled again: can sign in
    let r = app.call(Method::POST, &format!("/api/v1/admin/users/{}/enable", u.id), Some(&admin.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.sign_in("jay@example.com", PASSWORD).await.status, StatusCode::OK);
    // an admin cannot lock themselves out
    let r =
        app.call(Method::POST, &format!("/api/v1/admin/users/{}/disable", admin.id), Some(&admin.access), None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

async fn deleted_user_is_gone_and_the_account_is_free_again(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.sign_up("kim@example.com", "Kim").await;
    let r = app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", u.id), Some(&admin.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/users/me", &u.access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.sign_in("kim@example.com", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&format!("/api/v1/users/{}", u.id), &admin.access).await.status, StatusCode::NOT_FOUND);
    let again = app.sign_up("kim@example.com", "Kim again").await;
    assert_ne!(again.id, u.id);
    let r = app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", u.id), Some(&admin.access), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn bulk_create_users(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let users: Vec<_> = (0..300)
        .map(|i| json!({"account": format!("bulk{i}@example.com"), "accountType": "email", "nickname": format!("Bulk {i}")}))
        .collect();
    let r = app.post("/api/v1/admin/users", Some(&admin.access), json!({"users": users, "issueTokens": true})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let created = r.body["users"].as_array().unwrap();
    assert_eq!(created.len(), 300);
    let token = created[7]["accessToken"].as_str().unwrap();
    let me = app.get("/api/v1/users/me", token).await;
    assert_eq!(me.body["nickname"], "Bulk 7");
    assert_eq!(me.body["id"], created[7]["userId"]);
    // no credential: no password sign-in
    assert_eq!(app.sign_in("bulk7@example.com", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    // with a credential, the user can sign in
    let r = app
        .post(
            "/api/v1/admin/users",
            Some(&admin.access),
            json!({"users": [{"account": "pw@example.com", "accountType": "email", "nickname": "Pw", "credential": PASSWORD}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body["users"][0].get("accessToken").is_none());
    assert_eq!(app.sign_in("pw@example.com", PASSWORD).await.status, StatusCode::OK);

    let before = app.scalar("SELECT COUNT(*) FROM users").await;
    // one bad entry rejects the whole request, naming it
    let r = app
        .post(
            "/api/v1/admin/users",
            Some(&admin.access),
            json!({"users": [
                {"account": "ok1@example.com", "accountType": "email", "nickname": "Ok"},
                {"account": "broken", "accountType": "email", "nickname": "Bad"}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.field(), "users[1].account");
    let r = app
        .post(
            "/api/v1/admin/users",
            Some(&admin.access),
            json!({"users": [
                {"account": "dup@example.com", "accountType": "email", "nickname": "A"},
                {"account": "DUP@example.com", "accountType": "email", "nickname": "B"}
            ]}),
        )
        .await;
    assert_eq!(r.field(), "users[1].account");
    // an account that already exists: 409 and nothing written
    let r = app
        .post(
            "/api/v1/admin/users",
            Some(&admin.access),
            json!({"users": [
                {"account": "new@example.com", "accountType": "email", "nickname": "New"},
                {"account": "bulk3@example.com", "accountType": "email", "nickname": "Again"}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = app.post("/api/v1/admin/users", Some(&admin.access), json!({"users": []})).await;
    assert_eq!(r.field(), "users");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM users").await, before);

    // non-admins may not
    let plain = app.sign_up("plain@example.com", "Plain").await;
    let r = app
        .post(
            "/api/v1/admin/users",
            Some(&plain.access),
            json!({"users": [{"account": "x@example.com", "accountType": "email", "nickname": "X"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    app.stop().await;
}

crate::both_backends!(
    disabled_user_is_locked_out,
    deleted_user_is_gone_and_the_account_is_free_again,
    bulk_create_users
);
