//! Test harness: `spawn_app(Db::…)` starts a real server on port 0 with its own fresh
//! database (a temporary SQLite file, or a new PostgreSQL database), so tests never
//! share state.

use std::path::PathBuf;

use hermet::config::Config;
use hermet::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const ADMIN: &str = "admin@hermet.test";
pub const PASSWORD: &str = "correct horse battery";

/// The PostgreSQL server tests create their databases on (`PG_TEST_URL`).
pub fn pg_admin_url() -> String {
    std::env::var("PG_TEST_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database URL for `db`, plus what keeps it alive.
pub async fn fresh_database(db: Db) -> (String, Option<tempfile::TempDir>) {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("hermet.db").display());
            (url, Some(dir))
        }
        Db::Postgres => {
            let name = format!("hermet_t_{}", random_suffix());
            let (client, conn) = tokio_postgres::connect(&pg_admin_url(), tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL must be running for the postgres tests (see scripts/test.sh)");
            tokio::spawn(conn);
            client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
            (hermet_bench::faults::with_database(&pg_admin_url(), &name), None)
        }
    }
}

fn random_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

pub fn test_config(database_url: String) -> Config {
    let mut c = Config::default();
    c.listen = "127.0.0.1:0".into();
    c.database_url = database_url;
    c.admin_accounts = vec![ADMIN.into()];
    // cheap hashing keeps the suite fast; production defaults are tested by config tests
    c.auth.argon2_memory_kib = 256;
    c.auth.argon2_iterations = 1;
    c.database.max_connections = 4;
    c.http.shutdown_grace_secs = 2;
    // tests send in bursts; limits.rs turns the limits on
    c.rate_limits.enabled = false;
    // the count tests send @all from any member; rules.rs tests the default (owner and admins)
    c.limits.mention_all_by_members = true;
    c
}

pub struct TestApp {
    pub address: String,
    /// What the notifier delivered (the in-process push sink).
    pub push: std::sync::Arc<hermet_app::MemoryPush>,
    /// The configuration the server runs with (for the maintenance functions).
    pub config: Config,
    pub client: reqwest::Client,
    pub db: Db,
    pub database_url: String,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

pub async fn spawn_app_with(db: Db, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let (url, dir) = fresh_database(db).await;
    let mut config = test_config(url);
    tweak(&mut config);
    let url = config.database_url.clone();
    let kept = config.clone();
    let app = Application::build(config).await.expect("build app");
    let push = app.push_hub();
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        push,
        config: kept,
        client: reqwest::Client::new(),
        db,
        database_url: url,
        shutdown,
        server: Some(server),
        _dir: dir,
    }
}

/// A signed-in user of a test.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub access: String,
    pub refresh: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    /// The error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.address, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Resp { status, body, headers }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(body)).await
    }

    pub async fn sign_up(&self, account: &str, nickname: &str) -> TestUser {
        let r = self
            .post(
                "/api/v1/auth/sign-up",
                None,
                json!({"account": account, "accountType": "email", "credential": PASSWORD, "nickname": nickname}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "sign-up of {account}: {}", r.body);
        TestUser {
            id: r.body["userId"].as_str().expect("userId").to_owned(),
            access: r.body["accessToken"].as_str().expect("accessToken").to_owned(),
            refresh: r.body["refreshToken"].as_str().expect("refreshToken").to_owned(),
        }
    }

    pub async fn sign_in(&self, account: &str, password: &str) -> Resp {
        self.post(
            "/api/v1/auth/sign-in",
            None,
            json!({"account": account, "accountType": "email", "credential": password}),
        )
        .await
    }

    /// Signs in an existing user (password `PASSWORD`).
    pub async fn sign_in_user(&self, account: &str) -> TestUser {
        let r = self.sign_in(account, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        TestUser {
            id: r.body["userId"].as_str().unwrap().to_owned(),
            access: r.body["accessToken"].as_str().unwrap().to_owned(),
            refresh: r.body["refreshToken"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn admin(&self) -> TestUser {
        self.sign_up(ADMIN, "Admin").await
    }

    /// Runs a COUNT(*)-style query returning one integer against the test database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        self.on_database(sql, |c, sql| c.query_row(sql, [], |r| r.get::<_, i64>(0)), |r| r.get::<_, i64>(0)).await
    }

    /// Runs statements against the test database behind the server's back (corruption,
    /// wiping read models).
    pub async fn exec(&self, sql: &str) {
        match self.db {
            Db::Sqlite => self.on_database(sql, |c, sql| c.execute_batch(sql).map(|_| 0), |_| 0).await,
            Db::Postgres => {
                let (client, conn) =
                    tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(conn);
                client.batch_execute(sql).await.expect("statements");
                0
            }
        };
    }

    /// One connection to the test database (SQLite file or PostgreSQL database).
    async fn on_database(
        &self,
        sql: &str,
        sqlite: fn(&rusqlite::Connection, &str) -> rusqlite::Result<i64>,
        pg: fn(&tokio_postgres::Row) -> i64,
    ) -> i64 {
        match self.db {
            Db::Sqlite => {
                let path = PathBuf::from(self.database_url.trim_start_matches("sqlite://"));
                let sql = sql.to_owned();
                tokio::task::spawn_blocking(move || {
                    let c = rusqlite::Connection::open(path).expect("open sqlite");
                    sqlite(&c, &sql).expect("query")
                })
                .await
                .expect("join")
            }
            Db::Postgres => {
                let (client, conn) =
                    tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(conn);
                pg(&client.query_one(sql, &[]).await.expect("query"))
            }
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.server.take() {
            h.await.expect("join").expect("server stopped with an error");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Declares each listed `async fn name(db: Db)` test once per backend:
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::helpers::Db::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::helpers::Db::Postgres).await }
            )*
        }
    };
}

/// IM helpers shared by the core tests.
impl TestApp {
    /// The library consistency check (what `hermet check-consistency` runs).
    pub async fn consistency(&self, repair: bool) -> hermet_app::consistency::ConsistencyReport {
        let config = test_config(self.database_url.clone());
        hermet::commands::check_consistency(&config, repair, None).await.expect("consistency check")
    }

    /// Asserts every read-model row equals its recomputation from the write side.
    pub async fn assert_consistent(&self) {
        let r = self.consistency(false).await;
        assert!(r.findings.is_empty(), "inconsistent read models: {:#?}", r.findings);
        assert_eq!(r.rate(), 100.0);
    }

    /// A applies, B accepts; returns the pair's channel id.
    pub async fn make_friends(&self, a: &TestUser, b: &TestUser) -> String {
        let r = self
            .post("/api/v1/contacts/applications", Some(&a.access), json!({"contactId": b.id, "message": "hi"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "apply: {}", r.body);
        let app_id = r.body["id"].as_str().unwrap().to_owned();
        let r = self
            .call(Method::POST, &format!("/api/v1/contacts/applications/{app_id}/accept"), Some(&b.access), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "accept: {}", r.body);
        r.body["channelId"].as_str().unwrap().to_owned()
    }

    pub async fn create_group(&self, owner: &TestUser, name: &str, members: &[&TestUser]) -> String {
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        let r =
            self.post("/api/v1/channels/groups", Some(&owner.access), json!({"name": name, "memberIds": ids})).await;
        assert_eq!(r.status, StatusCode::CREATED, "create group: {}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Sends a text message; returns its seq.
    pub async fn send_text(&self, from: &TestUser, channel: &str, text: &str, mentions: Value) -> i64 {
        let r = self
            .post(
                &format!("/api/v1/channels/{channel}/messages"),
                Some(&from.access),
                json!({"type": "text", "content": {"text": text}, "mentions": mentions}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "send: {}", r.body);
        r.body["seq"].as_i64().unwrap()
    }

    /// The whole conversation list of a user (all pages) and the total unread.
    pub async fn conversation_list(&self, u: &TestUser) -> (Vec<Value>, i64) {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut total;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/conversations?limit=2&cursor={c}"),
                None => "/api/v1/conversations?limit=2".to_owned(),
            };
            let r = self.get(&path, &u.access).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            items.extend(r.body["items"].as_array().unwrap().iter().cloned());
            total = r.body["totalUnread"].as_i64().unwrap();
            match r.body["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        (items, total)
    }

    pub async fn conversation(&self, u: &TestUser, channel: &str) -> Option<Value> {
        self.conversation_list(u).await.0.into_iter().find(|c| c["channelId"] == channel)
    }

    pub async fn contact_list(&self, u: &TestUser, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/v1/contacts{query}"), &u.access).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["items"].as_array().unwrap().clone()
    }

    /// Bulk-creates `n` users with tokens through the admin API.
    pub async fn many_users(&self, admin: &TestUser, prefix: &str, n: usize) -> Vec<TestUser> {
        let users: Vec<Value> = (0..n)
            .map(|i| json!({"account": format!("{prefix}{i}@example.com"), "accountType": "email", "nickname": format!("{prefix} {i}")}))
            .collect();
        let r =
            self.post("/api/v1/admin/users", Some(&admin.access), json!({"users": users, "issueTokens": true})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| TestUser {
                id: u["userId"].as_str().unwrap().to_owned(),
                access: u["accessToken"].as_str().unwrap().to_owned(),
                refresh: u["refreshToken"].as_str().unwrap().to_owned(),
            })
            .collect()
    }
}

pub use hermet_bench::processes::{Broker, free_port};

/// `hermet serve` as a process of its own: node `node` on `database_url`, on a free port,
/// logging to `log`, with cheap hashing and fast polling, plus `env` (`HERMET_*`
/// settings); ready once `/readyz` answers. Returns the process and its address.
pub async fn hermet_process(
    database_url: &str,
    node: u16,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> (crate::pipeline::KillOnDrop, String) {
    let port = free_port();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_hermet"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HERMET_") {
            c.env_remove(k);
        }
    }
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    c.arg("serve")
        .env("HERMET_DATABASE_URL", database_url)
        .env("HERMET_NODE_ID", node.to_string())
        .env("HERMET_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERMET_PIPELINE__POLL_INTERVAL_MS", "50")
        .env("HERMET_AUTH__ARGON2_MEMORY_KIB", "256")
        .env("HERMET_AUTH__ARGON2_ITERATIONS", "1")
        .envs(env.iter().copied())
        .stdout(out.try_clone().expect("log"))
        .stderr(out);
    let child = crate::pipeline::KillOnDrop(c.spawn().expect("spawn hermet"));
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    crate::pipeline::eventually(60, "the node answers readyz", || async {
        client.get(format!("{address}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    (child, address)
}
