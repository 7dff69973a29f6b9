use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Db, PASSWORD, spawn_app};

async fn full_auth_flow(db: Db) {
    let app = spawn_app(db).await;
    let first = app.sign_up("ann@example.com", "Ann").await;

    // sign-in opens a second, independent session
    let r = app.sign_in("ANN@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["userId"], first.id.as_str());
    assert_eq!(r.body["tokenType"], "Bearer");
    let access = r.body["accessToken"].as_str().unwrap().to_owned();
    let refresh = r.body["refreshToken"].as_str().unwrap().to_owned();

    let me = app.get("/api/v1/users/me", &access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], "ann@example.com");
    assert_eq!(me.body["nickname"], "Ann");
    assert_eq!(me.body["profileVer"], 1);

    // the original design's header works too
    let r = app
        .client
        .get(format!("{}/api/v1/users/me", app.address))
        .header("x-access-token", &access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // with the scheme, as the original design also allows
    let r = app
        .client
        .get(format!("{}/api/v1/users/me", app.address))
        .header("x-access-token", format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // refresh: a new pair, the new access token works
    let r = app.post("/api/v1/auth/refresh-token", None, json!({"refreshToken": refresh})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let access2 = r.body["accessToken"].as_str().unwrap().to_owned();
    let refresh2 = r.body["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    assert_eq!(app.get("/api/v1/users/me", &access2).await.status, StatusCode::OK);

    // sign-out revokes that session at once: its access tokens (old and new) and its
    // refresh token stop working; the other session is untouched
    let r = app.call(Method::POST, "/api/v1/auth/sign-out", Some(&access2), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for token in [&access, &access2] {
        let r = app.get("/api/v1/users/me", token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.code(), "invalid_token");
        assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    let r = app.post("/api/v1/auth/refresh-token", None, json!({"refreshToken": refresh2})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/v1/users/me", &first.access).await.status, StatusCode::OK);

    // no token, a malformed token, a token signed with another key
    assert_eq!(app.call(Method::GET, "/api/v1/users/me", None, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/v1/users/me", "not-a-jwt").await.status, StatusCode::UNAUTHORIZED);
    let forged = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwic2lkIjoiMSIsImlhdCI6MTc5NTM3Mzg0OSwiZXhwIjo0MTAyNDQ0ODAwLCJpc3MiOiJoZXJtZXQifQ.c2lnbmF0dXJl";
    assert_eq!(app.get("/api/v1/users/me", forged).await.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn rotated_refresh_token_reuse_revokes_the_session(db: Db) {
    let app = spawn_app(db).await;
    let u = app.sign_up("bob@example.com", "Bob").await;
    let r = app.post("/api/v1/auth/refresh-token", None, json!({"refreshToken": u.refresh})).await;
    assert_eq!(r.status, StatusCode::OK);
    let access2 = r.body["accessToken"].as_str().unwrap().to_owned();
    let refresh2 = r.body["refreshToken"].as_str().unwrap().to_owned();

    // presenting the rotated-out token again: refused, and the whole session revoked
    let r = app.post("/api/v1/auth/refresh-token", None, json!({"refreshToken": u.refresh})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "refresh_token_reused");
    let r = app.post("/api/v1/auth/refresh-token", None, json!({"refreshToken": refresh2})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "invalid_refresh_token");
    assert_eq!(app.get("/api/v1/users/me", &access2).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/v1/users/me", &u.access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM session WHERE revoke_reason = 'refresh_token_reuse'").await, 1);

    // an unknown refresh token is just invalid
    let r = app.post("/api/v1/auth/refresh-token", None, json!({"refreshToken": "nope"})).await;
    assert_eq!(r.code(), "invalid_refresh_token");
    app.stop().await;
}

async fn wrong_password_and_unknown_account_get_the_same_401(db: Db) {
    let app = spawn_app(db).await;
    app.sign_up("cat@example.com", "Cat").await;
    let wrong_pw = app.sign_in("cat@example.com", "wrong password!").await;
    let unknown = app.sign_in("nobody@example.com", PASSWORD).await;
    assert_eq!(wrong_pw.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_pw.status, unknown.status);
    assert_eq!(wrong_pw.body, unknown.body);
    assert_eq!(wrong_pw.code(), "invalid_credentials");
    // an account that cannot exist is just unknown: the same 401
    for (account, account_type) in
        [("not-an-email", "email"), ("", "email"), ("", "mobile"), ("cat@example.com", "mobile")]
    {
        let r = app
            .post(
                "/api/v1/auth/sign-in",
                None,
                json!({"account": account, "accountType": account_type, "credential": PASSWORD}),
            )
            .await;
        assert_eq!((r.status, &r.body), (unknown.status, &unknown.body), "{account:?} as {account_type}");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM session").await, 1, "failed sign-ins open no session");
    app.stop().await;
}

async fn duplicate_account_is_a_conflict(db: Db) {
    let app = spawn_app(db).await;
    app.sign_up("dan@example.com", "Dan").await;
    let r = app
        .post(
            "/api/v1/auth/sign-up",
            None,
            json!({"account": " DAN@Example.com ", "accountType": "email", "credential": PASSWORD, "nickname": "Dan 2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.code(), "account_taken");
    assert_eq!(r.field(), "account");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM users").await, 1);

    // mobile accounts are unique too
    let body = json!({"account": "+8613800138000", "accountType": "mobile", "credential": PASSWORD, "nickname": "M"});
    assert_eq!(app.post("/api/v1/auth/sign-up", None, body.clone()).await.status, StatusCode::CREATED);
    let r = app
        .post(
            "/api/v1/auth/sign-up",
            None,
            json!({"account": "+86 138-0013-8000", "accountType": "mobile", "credential": PASSWORD, "nickname": "M2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .post(
            "/api/v1/auth/sign-in",
            None,
            json!({"account": "+8613800138000", "accountType": "mobile", "credential": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.stop().await;
}

async fn validation_errors_name_the_field_and_write_nothing(db: Db) {
    let app = spawn_app(db).await;
    let base = json!({"account": "eve@example.com", "accountType": "email", "credential": PASSWORD, "nickname": "Eve"});
    let cases = [
        ("account", json!({"account": "eve"})),
        ("accountType", json!({"accountType": "fax"})),
        ("credential", json!({"credential": "short"})),
        ("nickname", json!({"nickname": ""})),
        ("nickname", json!({"nickname": "x".repeat(65)})),
        ("nickname", json!({"nickname": 42})),
        ("avatar", json!({"avatar": "a".repeat(257)})),
        ("color", json!({"color": "blue"})),
    ];
    for (field, change) in cases {
        let mut body = base.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = app.post("/api/v1/auth/sign-up", None, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.body);
        assert_eq!(r.field(), field, "{}", r.body);
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
    }
    // a missing field is named too
    let r = app
        .post(
            "/api/v1/auth/sign-up",
            None,
            json!({"account": "eve@example.com", "accountType": "email", "nickname": "Eve"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.field(), "credential");
    // broken JSON, a valid body followed by anything but whitespace (not one JSON value)
    // and a wrong content type are malformed requests
    let raw = |body: String| {
        app.client
            .post(format!("{}/api/v1/auth/sign-up", app.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["{".to_owned(), format!("{base} trailing")] {
        let r = raw(body).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "malformed_request");
    }
    let r =
        app.client.post(format!("{}/api/v1/auth/sign-up", app.address)).body(base.to_string()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM users").await, 0, "no rejected request wrote a user");
    app.stop().await;
}

crate::both_backends!(
    full_auth_flow,
    rotated_refresh_token_reuse_revokes_the_session,
    wrong_password_and_unknown_account_get_the_same_401,
    duplicate_account_is_a_conflict,
    validation_errors_name_the_field_and_write_nothing,
);
