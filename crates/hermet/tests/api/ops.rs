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
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        app.client.request(method, format!("{}/api/v1/users/me", app.address)).send().await.unwrap();
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
            "V6__inbox_by_event"
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

crate::both_backends!(
    health_readiness_metrics_and_request_ids,
    openapi_document_parses,
    migrations_apply_once_and_rerun_is_a_no_op,
    a_migration_whose_comments_were_reworded_is_not_divergent,
    the_signing_key_survives_a_restart,
);
