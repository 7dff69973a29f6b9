//! TLS to the dependencies, against servers of the test's own with certificates made by
//! the test (a private CA): PostgreSQL that accepts only TLS (`hostssl`), with every
//! `sslmode`; a redis-server that speaks only TLS and asks for client certificates;
//! librdkafka properties passed through to the broker's clients.

use std::path::{Path, PathBuf};

use hermet::startup::Application;
use hermet_bench::processes::{OwnPostgres, PgSetup, Redis, RedisTlsFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use reqwest::StatusCode;

use crate::helpers::{Db, spawn_app_with, test_config};
use crate::realtime::Client;

/// A CA of the test's own, issuing certificates.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { issuer: Issuer::new(params, key), pem }
    }

    /// A certificate for `names` (DNS names and IP addresses): (certificate, key) in PEM.
    fn issue(&self, common_name: &str, names: &[&str]) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// A PostgreSQL cluster with `ssl = on`, a certificate for localhost and 127.0.0.1 from
/// `ca`, and a pg_hba.conf that lets TCP clients in only over TLS; the role `by_cert`
/// only with a client certificate from `ca`.
fn tls_postgres(ca: &TestCa) -> OwnPostgres {
    let (cert, key) = ca.issue("localhost", &["localhost", "127.0.0.1"]);
    OwnPostgres::start_with(PgSetup {
        files: vec![
            ("server.crt".into(), cert.into_bytes()),
            ("server.key".into(), key.into_bytes()),
            ("ca.crt".into(), ca.pem.clone().into_bytes()),
        ],
        conf: vec![
            "ssl = on".into(),
            "ssl_cert_file = 'server.crt'".into(),
            "ssl_key_file = 'server.key'".into(),
            "ssl_ca_file = 'ca.crt'".into(),
        ],
        hba: Some(
            "local all all trust\nhostssl all by_cert 127.0.0.1/32 cert\n\
             hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n"
                .into(),
        ),
    })
}

/// The error of starting a node on `url` (it must fail).
async fn start_fails(url: String) -> String {
    let mut config = test_config(url);
    config.database.acquire_timeout_ms = 2_000;
    match Application::build(config).await {
        Ok(_) => panic!("the node started"),
        Err(e) => format!("{e:#}"),
    }
}

/// hermet on `sslmode=verify-full` with the CA serves, and its connections are encrypted
/// (`pg_stat_ssl`); `require` (no CA) and `verify-ca` (the name not checked) work, and a
/// client certificate (`sslcert`, `sslkey`) signs in a role the server admits only so; a wrong
/// CA, a name the certificate does not have under `verify-full`, and `disable` (refused by
/// the server) stop the node at start-up with an error that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    let files = tempfile::tempdir().unwrap();
    let ca = TestCa::new("hermet test CA");
    let ca_file = write(files.path(), "ca.pem", &ca.pem);
    let wrong_ca_file = write(files.path(), "wrong-ca.pem", &TestCa::new("another CA").pem);
    let pg = tls_postgres(&ca);
    let base = pg.url();
    let with = |params: &str| format!("{base}?{params}");

    let verify_full = with(&format!("sslmode=verify-full&sslrootcert={}", ca_file.display()));
    let url = verify_full.clone();
    let app = spawn_app_with(Db::Postgres, move |c| c.database_url = url).await;
    app.sign_up("ann@example.com", "Ann").await;
    let me = app.sign_in_user("ann@example.com").await;
    assert_eq!(app.get("/api/v1/users/me", &me.access).await.status, StatusCode::OK);
    let r = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // the test's own connection goes the same way (the server takes nothing else)
    let admin = hermet_store::postgres::tls::connect(&verify_full).await.unwrap();
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*), min(s.version) FROM pg_stat_ssl s
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'hermet'",
            &[],
        )
        .await
        .unwrap();
    let (encrypted, all, version): (i64, i64, Option<String>) = (row.get(0), row.get(1), row.get(2));
    assert!(all >= 1, "hermet has connections open");
    assert_eq!(encrypted, all, "every connection of hermet is encrypted");
    assert!(version.is_some_and(|v| v.starts_with("TLSv1.")));
    app.stop().await;

    // a host name of the certificate, as well as its IP address
    let by_name = verify_full.replace("127.0.0.1", "localhost");
    hermet_store::postgres::tls::connect(&by_name).await.unwrap().simple_query("SELECT 1").await.unwrap();

    // require: encrypted, the certificate not checked
    let url = with("sslmode=require");
    let app = spawn_app_with(Db::Postgres, move |c| c.database_url = url).await;
    app.sign_up("bob@example.com", "Bob").await;
    app.stop().await;

    // verify-ca checks the chain, verify-full also the name: reach the server as a host
    // the certificate does not name (hostaddr is where the connection goes)
    let elsewhere = base.replace("127.0.0.1", "db.example");
    let ca_only = format!("{elsewhere}?hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={}", ca_file.display());
    hermet_store::postgres::tls::connect(&ca_only).await.unwrap().simple_query("SELECT 1").await.unwrap();
    let e = start_fails(ca_only.replace("verify-ca", "verify-full")).await;
    assert!(e.contains("invalid peer certificate: certificate not valid for name \"db.example\""), "{e}");

    // a client certificate (sslcert, sslkey) for a role that may sign in only with one
    admin.batch_execute("CREATE ROLE by_cert LOGIN").await.unwrap();
    let (cert, key) = ca.issue("by_cert", &["by-cert.example"]);
    let (cert, key) = (write(files.path(), "client.crt", &cert), write(files.path(), "client.key", &key));
    let by_cert = verify_full.replace("postgres@", "by_cert@");
    match hermet_store::postgres::tls::connect(&by_cert).await {
        Ok(_) => panic!("no certificate, no entry"),
        Err(e) => assert!(format!("{e:#}").contains("certificate"), "{e:#}"),
    }
    let with_cert = format!("{by_cert}&sslcert={}&sslkey={}", cert.display(), key.display());
    let client = hermet_store::postgres::tls::connect(&with_cert).await.unwrap();
    let row =
        client.query_one("SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await;
    let row = row.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("by_cert".to_owned(), true));

    // a CA that did not sign the server's certificate
    let e = start_fails(with(&format!("sslmode=verify-full&sslrootcert={}", wrong_ca_file.display()))).await;
    assert!(e.contains("invalid peer certificate") && e.contains("UnknownIssuer"), "{e}");

    // no TLS: the server refuses (only hostssl lines)
    let e = start_fails(with("sslmode=disable")).await;
    assert!(e.contains("no encryption"), "{e}");
}

/// A `rediss://` redis_url with the test CA and a client certificate: hermet's presence
/// lives in a Redis that takes only TLS connections from clients with a certificate
/// (`--port 0`, `tls-auth-clients yes`); without the client certificate the node does not
/// start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls() {
    let files = tempfile::tempdir().unwrap();
    let ca = TestCa::new("hermet test CA");
    let (cert, key) = ca.issue("localhost", &["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = ca.issue("hermet", &["hermet.example"]);
    let tls = RedisTlsFiles {
        cert: write(files.path(), "redis.crt", &cert),
        key: write(files.path(), "redis.key", &key),
        ca: write(files.path(), "ca.pem", &ca.pem),
    };
    let (client_cert, client_key) =
        (write(files.path(), "client.crt", &client_cert), write(files.path(), "client.key", &client_key));
    let redis = Redis::start_tls(tls.clone()).await;
    assert!(redis.url().starts_with("rediss://"));

    let url = redis.url();
    let (ca_file, cert_file, key_file) = (tls.ca.clone(), client_cert.clone(), client_key.clone());
    let app = spawn_app_with(Db::Sqlite, move |c| {
        c.redis_url = Some(url);
        c.redis_ca_file = Some(ca_file);
        c.redis_cert_file = Some(cert_file);
        c.redis_key_file = Some(key_file);
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    app.make_friends(&ann, &bob).await;
    let presence = format!("/api/v1/users/{}/presence", bob.id);
    let (_socket, _) = Client::connect_to(&app.address, &bob).await;
    let r = app.get(&presence, &ann.access).await;
    assert_eq!(r.body["online"].as_bool(), Some(true), "presence through Redis: {}", r.body);
    app.stop().await;

    // the server asks for a client certificate
    let mut config = test_config("sqlite://".into());
    let dir = tempfile::tempdir().unwrap();
    config.database_url = format!("sqlite://{}", dir.path().join("hermet.db").display());
    config.redis_url = Some(redis.url());
    config.redis_ca_file = Some(tls.ca.clone());
    assert!(Application::build(config).await.is_err(), "no client certificate, no connection");
}

/// librdkafka properties of `kafka.client` reach every Kafka client hermet makes: with
/// `security.protocol = plaintext` (the test broker has no TLS listener) and a property
/// written as in the environment (`_` for `.`), the relay publishes and the notifier,
/// consuming from the broker, tells the members of a new group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_client_properties_are_passed_through() {
    let broker = crate::helpers::Broker::start_new().await;
    let app = spawn_app_with(Db::Sqlite, |c| {
        crate::pipeline::on_kafka(c, &broker);
        c.kafka.client.0.insert("security.protocol".into(), "plaintext".into());
        c.kafka.client.0.insert("socket_keepalive_enable".into(), "true".into());
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Over Kafka", &[&bob]).await;
    crate::pipeline::eventually(30, "the notifier tells bob of the group", || async {
        app.push.deliveries().iter().any(|(u, n)| {
            u.to_string() == bob.id && n.event_type == "channel.created" && n.payload["channelId"] == g.as_str()
        })
    })
    .await;
    app.stop().await;
}
