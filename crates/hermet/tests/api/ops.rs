use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, fresh_database, spawn_app, spawn_app_with, test_config};

async fn health_readiness_metrics_and_request_ids(db: Db) {
    let app = spawn_app(db).await;
    let r = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let id = r.headers().get("x-request-id").expect("request id header").to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    // a caller's request id is kept
    let r = app.client.get(format!("{}/readyz", app.address)).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("x-request-id").unwrap(), "abc-123");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], if db == Db::Sqlite { "sqlite" } else { "postgres" });

    let u = app.sign_up("lea@example.com", "Lea").await;
    app.get("/api/v1/users/me", &u.access).await;
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"route="/api/v1/users/me""#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains(r#"db_pool_connections{pool="write""#), "{text}");

    // unknown routes and oversize bodies answer in the error format
    let r = app.get("/api/v1/nope", &u.access).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    let big = json!({"nickname": "x".repeat(3 * 1024 * 1024)});
    let r = app.patch("/api/v1/users/me", &u.access, big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "payload_too_large");

    // made-up methods fold into one label value instead of a series each
    // (on connections of their own: the one the oversize body went on is closed by the
    // server, and a pooled client may be about to reuse it)
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        fresh.request(method, format!("{}/api/v1/users/me", app.address)).send().await.unwrap();
    }
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("MADEUP"), "a series per made-up method");
    assert!(text.contains(r#"method="other""#), "{text}");
    app.stop().await;
}

async fn openapi_document_parses(db: Db) {
    let app = spawn_app(db).await;
    let text =
        app.client.get(format!("{}/api/v1/openapi.json", app.address)).send().await.unwrap().text().await.unwrap();
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    let paths = spec.paths.expect("paths");
    for p in [
        "/api/v1/auth/sign-up",
        "/api/v1/auth/sign-in",
        "/api/v1/auth/refresh-token",
        "/api/v1/auth/sign-out",
        "/api/v1/users/me",
        "/api/v1/users/search",
        "/api/v1/users/{id}",
        "/api/v1/admin/users",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert!(paths["/api/v1/users/me"].patch.is_some());
    app.stop().await;
}

async fn migrations_apply_once_and_rerun_is_a_no_op(db: Db) {
    let (url, _dir) = fresh_database(db).await;
    let config = test_config(url);
    let first = hermet::commands::migrate(&config).await.expect("migrate");
    assert_eq!(
        first.applied,
        [
            "V1__initial_schema",
            "V2__event_pipeline",
            "V3__dead_letter_topics",
            "V4__user_inbox",
            "V5__large_groups",
            "V6__inbox_by_event",
            "V7__left_member_snapshot",
            "V8__no_view_channel_index",
            "V9__message_lifecycle",
            "V10__replies_forwards_pins",
            "V11__moderation",
            "V12__message_search"
        ]
    );
    let second = hermet::commands::migrate(&config).await.expect("migrate again");
    assert!(second.applied.is_empty(), "{:?}", second.applied);
    // serve on an already-migrated database works and changes nothing
    let app = spawn_app_with(db, |c| c.database_url = config.database_url.clone()).await;
    app.sign_up("max@example.com", "Max").await;
    let third = hermet::commands::migrate(&config).await.expect("migrate after serve");
    assert!(third.applied.is_empty());
    app.stop().await;
}

async fn a_migration_whose_comments_were_reworded_is_not_divergent(db: Db) {
    let app = spawn_app(db).await;
    let backend = hermet_store::Backend::from_url(&app.config.database_url).unwrap();
    let reworded = hermet_store::migrations::reworded(backend);
    assert!(!reworded.is_empty());
    for r in reworded {
        // as a database that applied the earlier wording records it
        app.exec(&format!(
            "UPDATE refinery_schema_history SET checksum = '{}' WHERE version = {}",
            r.earlier, r.version
        ))
        .await;
        let again = hermet::commands::migrate(&app.config).await.expect("the earlier wording is accepted");
        assert!(again.applied.is_empty(), "{:?}", again.applied);
        let left = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM refinery_schema_history WHERE version = {} AND checksum = '{}'",
                r.version, r.earlier
            ))
            .await;
        assert_eq!(left, 0, "V{}'s recorded checksum is brought up to date", r.version);
    }
    // any other text of a released migration is still refused
    app.exec("UPDATE refinery_schema_history SET checksum = '12345' WHERE version = 2").await;
    let e = hermet::commands::migrate(&app.config).await.expect_err("a changed migration is divergent");
    assert!(format!("{e:#}").contains("migration failed"), "{e:#}");
    app.stop().await;
}

async fn the_signing_key_survives_a_restart(db: Db) {
    // no jwt_secret configured: the generated key is kept in the database
    let (url, _dir) = fresh_database(db).await;
    let app = spawn_app_with(db, |c| c.database_url = url.clone()).await;
    let u = app.sign_up("ned@example.com", "Ned").await;
    app.stop().await;
    let app = spawn_app_with(db, |c| c.database_url = url).await;
    assert_eq!(app.get("/api/v1/users/me", &u.access).await.status, StatusCode::OK);
    app.stop().await;
}

/// Browsers: by default no other origin gets CORS headers or a WebSocket; an allowed
/// origin gets both (preflight included); every response carries the security headers.
async fn origins_and_security_headers(db: Db) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let closed = spawn_app(db).await;
    let open = spawn_app_with(db, |c| c.http.allowed_origins = vec!["https://app.example.com".into()]).await;
    let me = |app: &crate::helpers::TestApp, origin: &str| {
        app.client.get(format!("{}/api/v1/users/me", app.address)).header("origin", origin.to_owned()).send()
    };
    let r = me(&closed, "https://app.example.com").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("access-control-allow-origin").is_none(), "{:?}", r.headers());
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ] {
        assert_eq!(r.headers().get(name).and_then(|v| v.to_str().ok()), Some(value), "{name}");
    }
    let r = me(&open, "https://app.example.com").await.unwrap();
    assert_eq!(r.headers().get("access-control-allow-origin").unwrap(), "https://app.example.com");
    let r = me(&open, "https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none(), "{:?}", r.headers());
    let preflight = open
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/api/v1/channels/1/messages", open.address))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().to_owned();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");

    let upgrade = |app: &crate::helpers::TestApp, origin: Option<&str>| {
        let mut req = format!("{}/api/v1/ws", app.address.replace("http://", "ws://")).into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    let refused = upgrade(&closed, Some("https://app.example.com")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), StatusCode::FORBIDDEN),
        other => panic!("a foreign origin's socket must be refused: {:?}", other.map(|_| ())),
    }
    assert!(upgrade(&closed, None).await.is_ok(), "clients that are not browsers send no Origin");
    let own = closed.address.clone();
    assert!(upgrade(&closed, Some(&own)).await.is_ok(), "a page of the server's own origin");
    assert!(upgrade(&open, Some("https://app.example.com")).await.is_ok());
    closed.stop().await;
    open.stop().await;
}

crate::both_backends!(
    origins_and_security_headers,
    health_readiness_metrics_and_request_ids,
    openapi_document_parses,
    migrations_apply_once_and_rerun_is_a_no_op,
    a_migration_whose_comments_were_reworded_is_not_divergent,
    the_signing_key_survives_a_restart,
);
