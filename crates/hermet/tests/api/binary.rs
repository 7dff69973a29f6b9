//! The real `hermet` binary: starts with no configuration, creates its SQLite file,
//! serves, and stops cleanly on SIGTERM; bad configuration exits with a clear message.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::free_port;

fn hermet() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hermet"));
    // a clean environment: no HERMET_* from the caller
    for (k, _) in std::env::vars() {
        if k.starts_with("HERMET_") {
            c.env_remove(k);
        }
    }
    c
}

#[tokio::test]
async fn serve_with_no_configuration_uses_sqlite_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = hermet()
        .arg("serve")
        .current_dir(dir.path())
        .env("HERMET_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERMET_LOG_FORMAT", "json")
        .env("HERMET_AUTH__ARGON2_MEMORY_KIB", "256")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(format!("{base}/readyz")).send().await.map(|r| r.status().is_success()).unwrap_or(false) {
            break;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dir.path().join("data/hermet.db").exists(), "the embedded database is created on first run");
    let r = client
        .post(format!("{base}/api/v1/auth/sign-up"))
        .json(&serde_json::json!({"account": "o@example.com", "accountType": "email", "credential": "password123", "nickname": "O"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit: {:?}", out.status);
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("hermet stopped"), "{logs}");
    assert!(
        logs.lines().any(|l| l.starts_with('{') && l.contains("request_id")),
        "JSON logs carry request ids: {logs}"
    );
}

#[test]
fn invalid_configuration_is_refused_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = hermet()
        .arg("serve")
        .current_dir(dir.path())
        .env("HERMET_LISTEN", "not-an-address")
        .env("HERMET_NODE_ID", "5000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HERMET_LISTEN") && err.contains("HERMET_NODE_ID"), "{err}");
    let out = hermet().arg("serve").current_dir(dir.path()).env("HERMET_LISTN", "x").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a misspelt setting is an error, not ignored");
}

#[test]
fn config_command_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = hermet()
        .arg("config")
        .current_dir(dir.path())
        .env("HERMET_DATABASE_URL", "postgres://app:hunter2@127.0.0.1/hermet")
        .env("HERMET_AUTH__JWT_SECRET", "s".repeat(40))
        .env("HERMET_ADMIN_ACCOUNTS", "a@example.com, b@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hunter2") && !text.contains(&"s".repeat(40)), "{text}");
    assert!(text.contains("a@example.com") && text.contains("b@example.com"), "{text}");
}

#[tokio::test]
async fn check_consistency_and_rebuild_commands() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("h.db").display());
    // a database with some rows, made by a real server
    let app = crate::helpers::spawn_app_with(crate::helpers::Db::Sqlite, |c| c.database_url = url.clone()).await;
    let a = app.sign_up("a@example.com", "A").await;
    let b = app.sign_up("b@example.com", "B").await;
    let channel = app.make_friends(&a, &b).await;
    app.send_text(&a, &channel, "hi", serde_json::Value::Null).await;
    app.stop().await;

    let run =
        |args: &[&str]| hermet().args(args).current_dir(dir.path()).env("HERMET_DATABASE_URL", &url).output().unwrap();
    let out = run(&["check-consistency"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("consistency 100.0000%"), "{text}");

    let conn = rusqlite::Connection::open(dir.path().join("h.db")).unwrap();
    conn.execute("UPDATE user_conversation_view SET unread_count = 7", []).unwrap();
    drop(conn);
    let out = run(&["check-consistency"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("conversation mismatch") && text.contains("unread_count: expected"), "{text}");
    let out = run(&["rebuild-views"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rebuilt the read models of 2 users"));
    let out = run(&["check-consistency"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn config_file_named_by_hermet_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nnode_id = 7\n[database]\nmax_connections = 3\n").unwrap();
    let out = hermet()
        .arg("config")
        .current_dir(dir.path())
        .env("HERMET_CONFIG", &file)
        .env("HERMET_NODE_ID", "9")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:9999"), "the file is read: {text}");
    assert!(text.contains("max_connections: 3"), "{text}");
    assert!(text.contains("node_id: 9"), "the environment wins over the file: {text}");
}
