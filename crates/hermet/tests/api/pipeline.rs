//! The event pipeline: notifier, dead letters, compensation, and the Kafka transport
//! against a real broker (tansu, started per test).

use std::time::{Duration, Instant};

use hermet::commands::{DlqAction, dlq};
use hermet::config::{Config, SyncModeConfig};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};

use crate::helpers::{Broker, Db, TestApp, spawn_app, spawn_app_with};
use crate::im::run_scenario;

const CONSUMERS: &str =
    "SELECT 'conversation-view-updater' AS c UNION ALL SELECT 'contact-view-updater' UNION ALL SELECT 'notifier'";

/// Waits until `cond` holds, polling; fails with `what` after `secs`.
pub(crate) async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every consumer has applied every event, on either transport.
pub(crate) async fn wait_drained(app: &TestApp, secs: u64) {
    let sql = if app.config.kafka_brokers.is_some() {
        format!(
            "SELECT COUNT(*) FROM outbox o WHERE o.published_at IS NULL OR EXISTS (SELECT 1 FROM ({CONSUMERS}) k
               WHERE NOT EXISTS (SELECT 1 FROM consumer_offset co
                 WHERE co.consumer = k.c || '@' || o.kafka_topic || '/' || o.kafka_partition AND co.position > o.kafka_offset))"
        )
    } else {
        format!(
            "SELECT COUNT(*) FROM ({CONSUMERS}) k WHERE NOT EXISTS (SELECT 1 FROM consumer_offset co WHERE co.consumer = k.c
               AND NOT EXISTS (SELECT 1 FROM outbox e WHERE (e.tx_id, e.position) > (co.tx_id, co.position)))"
        )
    };
    eventually(secs, "the pipeline drained", || async { app.scalar(&sql).await == 0 }).await;
}

pub(crate) fn async_mode(c: &mut Config) {
    c.sync_mode = SyncModeConfig::Async;
    c.pipeline.poll_interval_ms = 100;
    c.pipeline.retry_backoff_ms = 10;
    c.pipeline.max_attempts = 3;
}

pub(crate) fn on_kafka(c: &mut Config, broker: &Broker) {
    c.kafka_brokers = Some(broker.brokers());
    c.kafka.partitions = 4;
    c.kafka.message_timeout_ms = 3_000;
    c.kafka.relay_lease_ms = 10_000;
    // tansu answers an empty fetch only after the whole wait, even when data arrives
    c.kafka.fetch_max_wait_ms = 50;
}

fn delivered(app: &TestApp, user: &str, event_type: &str, channel: &str) -> usize {
    app.push
        .deliveries()
        .iter()
        .filter(|(u, n)| u.to_string() == user && n.event_type == event_type && n.payload["channelId"] == channel)
        .count()
}

/// The notifier tells every member of a new group (`000_70dd81066eae5b2b.txt` §3.4),
/// and every member of a message; outsiders hear nothing; `notification_sent_total`
/// counts the pushes.
async fn notifier_pushes_to_the_audience(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let dan = app.sign_up("dan@example.com", "Dan").await;
    let g = app.create_group(&ann, "Trio", &[&bob, &cat]).await;
    app.send_text(&bob, &g, "hello", Value::Null).await;
    eventually(10, "pushes", || async { delivered(&app, &cat.id, "message.sent", &g) == 1 }).await;
    for u in [&ann, &bob, &cat] {
        assert_eq!(delivered(&app, &u.id, "channel.created", &g), 1, "{} told of the group", u.id);
        assert_eq!(delivered(&app, &u.id, "message.sent", &g), 1, "{} told of the message", u.id);
    }
    assert_eq!(delivered(&app, &dan.id, "channel.created", &g), 0, "outsiders hear nothing");
    assert_eq!(delivered(&app, &dan.id, "message.sent", &g), 0);
    let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("notification_sent_total") && l.contains("channel.created") && l.contains("ok"))
        .expect("notification_sent_total{type=channel.created,status=ok}");
    assert!(line.ends_with(" 3"), "three members told: {line}");
    app.stop().await;
}

/// A poison event (unreadable payload) goes to the dead-letter store with its error and
/// does not block later events; replaying it with a corrected payload applies it.
async fn poison_event(app: TestApp) {
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Team", &[&bob]).await;
    // a buggy producer renames the group behind the API and records an unreadable event
    app.exec(&format!(
        "UPDATE channel SET name = 'Renamed', channel_info_ver = channel_info_ver + 1 WHERE id = {g};
         INSERT INTO outbox (event_id, event_type, schema_version, aggregate_type, aggregate_key, payload, created_at)
         VALUES (4242, 'channel.updated', 1, 'channel', '{g}', '{{\"channelId\": \"{g}\", \"name\": 7}}', 1);"
    ))
    .await;
    // later events flow past it
    let ab = app.make_friends(&ann, &bob).await;
    app.send_text(&ann, &ab, "still flowing", Value::Null).await;
    eventually(20, "three dead letters", || async {
        app.scalar("SELECT COUNT(*) FROM dead_letter WHERE status = 'pending'").await == 3
    })
    .await;
    wait_drained(&app, 20).await;
    let letters = dlq(&app.config, DlqAction::List { status: "pending".into(), after: 0, limit: 10 }).await.unwrap();
    assert_eq!(letters.len(), 3, "both projectors and the notifier");
    for d in &letters {
        assert_eq!((d.event_id, d.event_type.as_str()), (4242, "channel.updated"));
        assert!(d.error.contains("unreadable event"), "{}", d.error);
        let expected = if app.config.kafka_brokers.is_some() { "kafka channel-events/" } else { "outbox " };
        assert!(d.source.starts_with(expected), "{}", d.source);
    }
    if let Some(brokers) = &app.config.kafka_brokers {
        // on Kafka the relay also copies them to channel-events.dlq, for Kafka tooling
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "dlq-reader")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["channel-events.dlq"]).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let m =
                tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("a dead letter").unwrap();
            let header = |k: &str| {
                m.headers()
                    .unwrap()
                    .iter()
                    .find(|h| h.key == k)
                    .map(|h| String::from_utf8(h.value.unwrap().to_vec()).unwrap())
                    .unwrap_or_default()
            };
            assert_eq!(m.key(), Some(&b"4242"[..]), "keyed by event id");
            assert_eq!(header("event_type"), "channel.updated");
            assert!(header("error").contains("unreadable event"), "{}", header("error"));
            assert!(header("source").starts_with("kafka channel-events/"));
            let payload: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(payload["name"], 7, "the payload as received");
            seen.push(header("consumer"));
        }
        seen.sort();
        assert_eq!(seen, ["contact-view-updater", "conversation-view-updater", "notifier"]);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM dead_letter WHERE dlq_published_at IS NULL").await, 0);
    } else {
        assert_eq!(app.scalar("SELECT COUNT(*) FROM dead_letter WHERE dlq_published_at = 0").await, 3, "never");
    }
    let (bob_list, _) = app.conversation_list(&bob).await;
    let name_of = |list: &[Value], id: &str| {
        list.iter().find(|c| c["channelId"] == id).map(|c| c["name"].as_str().unwrap().to_owned())
    };
    assert_eq!(name_of(&bob_list, &ab).as_deref(), Some("Ann"), "later events were projected");
    assert_eq!(name_of(&bob_list, &g).as_deref(), Some("Team"), "the poison event was not applied");
    assert!(app.consistency(false).await.mismatched() > 0, "the checker sees the unapplied change");

    // a bad fix is refused and writes nothing; a good one is applied by each consumer
    let bad = dlq(&app.config, DlqAction::Replay { id: letters[0].id, payload: Some("{oops".into()) }).await;
    assert!(bad.unwrap_err().to_string().contains("payload"), "names the problem");
    let fixed = json!({"channelId": g, "name": "Renamed", "avatar": "", "channelInfoVer": 2,
        "updatedBy": ann.id, "updatedAt": 1})
    .to_string();
    for d in &letters {
        let r = dlq(&app.config, DlqAction::Replay { id: d.id, payload: Some(fixed.clone()) }).await.unwrap();
        assert_eq!(r[0].status, "replay");
    }
    eventually(20, "replayed", || async {
        app.scalar("SELECT COUNT(*) FROM dead_letter WHERE status = 'replayed'").await == 3
    })
    .await;
    let (bob_list, _) = app.conversation_list(&bob).await;
    assert_eq!(name_of(&bob_list, &g).as_deref(), Some("Renamed"));
    app.assert_consistent().await;
    assert!(delivered(&app, &bob.id, "channel.updated", &g) >= 1, "the notifier pushed the fixed event");
    let again = dlq(&app.config, DlqAction::Discard(letters[0].id)).await;
    assert!(again.unwrap_err().to_string().contains("not pending"));
    app.stop().await;
}

async fn poison_event_on_the_embedded_log(db: Db) {
    poison_event(spawn_app_with(db, async_mode).await).await;
}

/// The compensation scanner re-emits `channel.created` for a group whose event is missing
/// and for one whose member lost a conversation row; the read models come back.
async fn compensation_reemits_what_is_missing(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g1 = app.create_group(&ann, "One", &[&bob]).await;
    let g2 = app.create_group(&ann, "Two", &[&bob]).await;
    app.exec(&format!(
        "DELETE FROM outbox WHERE event_type = 'channel.created' AND aggregate_key = '{g1}';
         DELETE FROM user_conversation_view WHERE channel_id = {g1};
         DELETE FROM user_conversation_view WHERE channel_id = {g2} AND user_id = {};",
        bob.id
    ))
    .await;
    assert!(app.consistency(false).await.missing() > 0);
    let now = hermet_domain::time::now_ms();
    let report = hermet::commands::compensate(&app.config, now - 60_000, now + 1).await.unwrap();
    assert_eq!(report.unannounced.iter().map(|c| c.to_string()).collect::<Vec<_>>(), [g1.as_str()]);
    assert_eq!(report.unprojected.iter().map(|c| c.to_string()).collect::<Vec<_>>(), [g2.as_str()]);
    app.assert_consistent().await;
    let (bob_list, _) = app.conversation_list(&bob).await;
    assert_eq!(bob_list.len(), 2);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'channel.created' AND aggregate_key = '{g1}'"
        ))
        .await,
        1
    );
    // nothing left to do
    let report = hermet::commands::compensate(&app.config, now - 60_000, now + 1).await.unwrap();
    assert!(report.unannounced.is_empty() && report.unprojected.is_empty());
    app.stop().await;
}

// ───────────────────────────── Kafka ─────────────────────────────

/// The core scenario in async mode over Kafka: every assertion holds (read-your-writes),
/// the checker says 100% once drained; then the read models are wiped and both
/// projectors replay from the earliest offsets: identical again.
async fn kafka_scenario_and_replay(db: Db) {
    let broker = Broker::start_new().await;
    let app = spawn_app_with(db, |c| {
        async_mode(c);
        on_kafka(c, &broker);
    })
    .await;
    run_scenario(&app).await;
    wait_drained(&app, 30).await;
    app.assert_consistent().await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox WHERE kafka_topic IS NULL").await, 0, "all published");
    // ids are strings in what is pushed, although channel.created's Kafka value has numbers
    let created: Vec<_> =
        app.push.deliveries().into_iter().filter(|(_, n)| n.event_type == "channel.created").collect();
    assert!(!created.is_empty());
    for (_, n) in &created {
        let p = &n.payload;
        assert!(p["channelId"].is_string() && p["creatorId"].is_string(), "{p}");
        assert!(p["memberIds"].as_array().is_some_and(|m| m.iter().all(Value::is_string)), "{p}");
    }
    let bob = app.sign_in_user("bob@example.com").await;
    let before = app.conversation_list(&bob).await;
    let contacts_before = app.contact_list(&bob, "").await;
    app.exec(
        "DELETE FROM user_conversation_view; DELETE FROM user_contact_view;
         DELETE FROM conversation_reverse_index; DELETE FROM contact_reverse_index;",
    )
    .await;
    for consumer in ["conversation-view-updater", "contact-view-updater"] {
        let r =
            hermet::commands::replay(&app.config, consumer, hermet_app::pipeline::ReplayFrom::Earliest).await.unwrap();
        let hermet::commands::ReplayedTo::Kafka(offsets) = r else { panic!("kafka replay") };
        assert_eq!(offsets.len(), 16, "4 topics × 4 partitions");
        assert!(offsets.iter().all(|(_, o)| *o == 0));
    }
    eventually(30, "replayed read models", || async { app.conversation_list(&bob).await == before }).await;
    wait_drained(&app, 30).await;
    app.assert_consistent().await;
    assert_eq!(app.contact_list(&bob, "").await, contacts_before);
    app.stop().await;
}

/// A consumer of `channel-events` built with a standard Kafka client (rdkafka) sees
/// the message of `000_70dd81066eae5b2b.txt` §3.3: key channelId, headers event_type
/// and timestamp, the JSON.
async fn channel_events_follow_the_seed(db: Db) {
    let broker = Broker::start_new().await;
    let app = spawn_app_with(db, |c| on_kafka(c, &broker)).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "技术讨论组", &[&bob]).await;

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "seed-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["channel-events"]).unwrap();
    let m = loop {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("a message").unwrap();
        if m.key() == Some(g.as_bytes()) {
            break m.detach();
        }
    };
    let headers: Vec<(String, String)> = m
        .headers()
        .unwrap()
        .iter()
        .map(|h| (h.key.to_owned(), String::from_utf8(h.value.unwrap().to_vec()).unwrap()))
        .collect();
    let header = |k: &str| headers.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(header("event_type").as_deref(), Some("channel.created"));
    let ts: i64 = header("timestamp").unwrap().parse().expect("timestamp in ms");
    let value: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
    let keys: Vec<&str> = value.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, ["avatar", "channelId", "channelName", "channelType", "createdAt", "creatorId", "memberIds"]);
    assert_eq!(value["channelId"], json!(g.parse::<u64>().unwrap()), "ids are JSON numbers as in the seed");
    assert_eq!(value["creatorId"], json!(ann.id.parse::<u64>().unwrap()));
    assert_eq!(value["channelType"], "group");
    assert_eq!(value["channelName"], "技术讨论组");
    let mut members: Vec<u64> = value["memberIds"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    members.sort();
    let mut expected = vec![ann.id.parse::<u64>().unwrap(), bob.id.parse::<u64>().unwrap()];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(value["createdAt"].as_i64(), Some(ts));
    app.stop().await;
}

/// The broker stops for 30 s during a stream of writes: the API keeps answering, the
/// outbox grows; after the restart every event is delivered, the read models are exact
/// and nothing is duplicated.
async fn broker_outage(db: Db) {
    if std::env::var_os("DEBUG_OUTAGE").is_some() {
        hermet::telemetry::init(hermet::config::LogFormat::Pretty, "info,rdkafka=warn");
    }
    let mut broker = Broker::start_new().await;
    let app = spawn_app_with(db, |c| {
        async_mode(c);
        on_kafka(c, &broker);
        c.pipeline.read_your_writes_timeout_ms = 200;
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let g = app.create_group(&ann, "Stream", &[&bob, &cat]).await;
    let mut sent = 0;
    for i in 0..10 {
        app.send_text(&ann, &g, &format!("before {i}"), Value::Null).await;
        sent += 1;
    }
    wait_drained(&app, 30).await;
    broker.stop();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        app.send_text(&bob, &g, &format!("during {sent}"), Value::Null).await; // asserts 201
        sent += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(app.scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL").await > 0, "the outbox grew");
    broker.start().await;
    for i in 0..5 {
        app.send_text(&cat, &g, &format!("after {i}"), Value::Null).await;
        sent += 1;
    }
    wait_drained(&app, 60).await;
    app.assert_consistent().await;
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM message WHERE channel_id = {g}")).await, sent);
    assert_eq!(app.scalar(&format!("SELECT MAX(seq) FROM message WHERE channel_id = {g}")).await, sent, "gap-free");
    let (ann_list, _) = app.conversation_list(&ann).await;
    let unread = ann_list[0]["unreadCount"].as_i64().unwrap();
    assert_eq!(unread, sent - 10, "ann's unread: every message of others, once");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM (SELECT user_id, channel_id FROM user_conversation_view GROUP BY user_id, channel_id HAVING COUNT(*) > 1) d").await,
        0
    );
    app.stop().await;
}

async fn poison_event_on_kafka(db: Db) {
    let broker = Broker::start_new().await;
    poison_event(
        spawn_app_with(db, |c| {
            async_mode(c);
            on_kafka(c, &broker);
        })
        .await,
    )
    .await;
}

/// A pipeline role (`hermet project`, `hermet relay`) as its own process on `app`'s
/// database and transport, logging JSON to `log`.
pub(crate) fn role_process(app: &TestApp, role: &str, log: &std::path::Path) -> std::process::Child {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_hermet"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HERMET_") {
            c.env_remove(k);
        }
    }
    c.arg(role)
        .env("HERMET_DATABASE_URL", &app.database_url)
        .env("HERMET_NODE_ID", "7")
        .env("HERMET_SYNC_MODE", "async")
        .env("HERMET_LOG_FORMAT", "json")
        .env("HERMET_LOG_LEVEL", "info,rdkafka=warn")
        // small batches: a kill lands between or inside many of them
        .env("HERMET_PIPELINE__BATCH_SIZE", "2")
        .env("HERMET_PIPELINE__POLL_INTERVAL_MS", "50")
        // a restarted process takes over the embedded log's consumers quickly
        .env("HERMET_PIPELINE__CONSUMER_LEASE_MS", "1500");
    if let Some(b) = &app.config.kafka_brokers {
        c.env("HERMET_KAFKA_BROKERS", b)
            .env("HERMET_KAFKA__PARTITIONS", app.config.kafka.partitions.to_string())
            .env("HERMET_KAFKA__MESSAGE_TIMEOUT_MS", app.config.kafka.message_timeout_ms.to_string())
            .env("HERMET_KAFKA__RELAY_LEASE_MS", app.config.kafka.relay_lease_ms.to_string())
            .env("HERMET_KAFKA__FETCH_MAX_WAIT_MS", app.config.kafka.fetch_max_wait_ms.to_string());
    }
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    c.stdout(out.try_clone().expect("log")).stderr(out).spawn().expect("spawn hermet")
}

/// `hermet replay` (the binary) rewinds a running server's projector and follows it
/// until it has re-applied everything; the read models end as they were.
/// Replaying the notifier re-reads the log but gives no device an event twice (the inbox
/// holds an event once per user); replaying a projector in dual-write mode, where no
/// projector runs, is refused with the reason instead of waiting for ever.
async fn replays_that_make_sense(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Replayed", &[&bob]).await;
    for i in 0..3 {
        app.send_text(&ann, &g, &format!("m{i}"), Value::Null).await;
    }
    let head = |u: &str| format!("SELECT COALESCE(MAX(seq), 0) FROM user_inbox_head WHERE user_id = {u}");
    eventually(20, "bob's four events numbered", || async { app.scalar(&head(&bob.id)).await == 4 }).await;
    let pushed = app.push.deliveries().len();
    let at =
        hermet::commands::replay(&app.config, "notifier", hermet_app::pipeline::ReplayFrom::Earliest).await.unwrap();
    assert_eq!(at, hermet::commands::ReplayedTo::Log((0, 0)));
    // one more event after the replay; then wait for the notifier to pass the whole log
    app.send_text(&ann, &g, "after the replay", Value::Null).await;
    tokio::time::timeout(Duration::from_secs(30), hermet::commands::follow_consumer(&app.config, "notifier", |_| {}))
        .await
        .expect("the notifier catches up")
        .unwrap();
    assert_eq!(app.scalar(&head(&bob.id)).await, 5, "no event numbered twice");
    assert_eq!(app.scalar(&head(&ann.id)).await, 5);
    assert_eq!(app.push.deliveries().len(), pushed + 2, "only the new message pushed, to ann and bob");

    for consumer in ["conversation-view-updater", "contact-view-updater"] {
        let e = hermet::commands::replay(&app.config, consumer, hermet_app::pipeline::ReplayFrom::Earliest)
            .await
            .expect_err("no projector runs in dual-write mode");
        assert!(format!("{e:#}").contains("does not run in dual_write mode"), "{e:#}");
    }
    app.stop().await;
}

async fn replay_command_follows_progress(db: Db) {
    let app = spawn_app_with(db, async_mode).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Replayed", &[&bob]).await;
    for i in 0..20 {
        app.send_text(&ann, &g, &format!("m{i}"), Value::Null).await;
    }
    let before = app.conversation_list(&bob).await;
    app.exec("DELETE FROM user_conversation_view").await;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_hermet"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HERMET_") {
            c.env_remove(k);
        }
    }
    let out = c
        .args(["replay", "--consumer", "conversation-view-updater", "--from", "earliest"])
        .env("HERMET_DATABASE_URL", &app.database_url)
        .env("HERMET_SYNC_MODE", "async")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("now starts after log cursor 0:0"), "{stdout}");
    assert!(stderr.contains("events left") && stderr.contains("conversation-view-updater has caught up"), "{stderr}");
    assert_eq!(app.conversation_list(&bob).await, before, "rebuilt by the replay");
    app.assert_consistent().await;
    app.stop().await;
}

/// Outbox pruning keeps every row some consumer group has not passed yet, however old,
/// and deletes the old rows behind all of them; the read models are untouched.
async fn outbox_pruning_keeps_what_consumers_need(db: Db) {
    // dual-write, pipeline not running here: the notifier is the group this node runs
    let app = spawn_app_with(db, |c| {
        c.pipeline.serve_runs_pipeline = false;
        c.pipeline.outbox_retention_secs = 0;
        c.pipeline.outbox_prune_interval_secs = 0;
        c.pipeline.compensation_lookback_secs = 0;
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Pruned", &[&bob]).await;
    for i in 0..8 {
        app.send_text(&ann, &g, &format!("m{i}"), Value::Null).await;
    }
    let total = app.scalar("SELECT COUNT(*) FROM outbox").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // no consumer has an offset yet: the ones this node runs hold everything
    assert_eq!(hermet::commands::prune_outbox(&app.config).await.unwrap(), 0);
    // the slowest group (the notifier, at the 3rd event) bounds what goes
    let at = |consumer: &str, nth: i64| {
        format!(
            "INSERT INTO consumer_offset (consumer, tx_id, position, updated_at)
             SELECT '{consumer}', tx_id, position, 0 FROM outbox ORDER BY tx_id, position LIMIT 1 OFFSET {}",
            nth - 1
        )
    };
    app.exec(&format!(
        "{}; {}; {};",
        at("conversation-view-updater", 6),
        at("contact-view-updater", total),
        at("notifier", 3)
    ))
    .await;
    assert_eq!(hermet::commands::prune_outbox(&app.config).await.unwrap(), 3);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, total - 3);
    app.exec("DELETE FROM consumer_offset").await;
    app.exec(&format!(
        "{}; {}; {};",
        at("conversation-view-updater", total - 3),
        at("contact-view-updater", total - 3),
        at("notifier", total - 3)
    ))
    .await;
    assert_eq!(hermet::commands::prune_outbox(&app.config).await.unwrap() as i64, total - 3);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 0);
    assert_eq!(app.conversation(&bob, &g).await.unwrap()["unreadCount"], 8, "read models untouched");
    app.stop().await;
}

/// The committed position of the conversation projector in one number: its log position
/// on the embedded transport, the sum of its next offsets on Kafka (as its start-up log
/// line reports it).
async fn committed_position(app: &TestApp) -> i64 {
    app.scalar(
        "SELECT CAST(COALESCE(SUM(position), 0) AS BIGINT) FROM consumer_offset
         WHERE consumer = 'conversation-view-updater' OR consumer LIKE 'conversation-view-updater@%'",
    )
    .await
}

/// Events `consumer` has not applied yet, on either transport.
async fn pending_events(app: &TestApp, consumer: &str) -> i64 {
    let sql = if app.config.kafka_brokers.is_some() {
        format!(
            "SELECT COUNT(*) FROM outbox o WHERE o.published_at IS NULL OR NOT EXISTS (SELECT 1 FROM consumer_offset co
               WHERE co.consumer = '{consumer}@' || o.kafka_topic || '/' || o.kafka_partition AND co.position > o.kafka_offset)"
        )
    } else {
        format!(
            "SELECT COUNT(*) FROM outbox e JOIN consumer_offset co ON co.consumer = '{consumer}'
               AND (e.tx_id, e.position) > (co.tx_id, co.position)"
        )
    };
    app.scalar(&sql).await
}

/// The projectors run as their own process (`hermet project`) and are killed (SIGKILL)
/// three times, each time as soon as they committed a batch of a fresh backlog. Each restart
/// resumes from the committed position (its log says where, and that is what the
/// database held when it died); at the end unread counts are exact, nothing is counted
/// twice, and the checker says 100%.
async fn consumer_killed_mid_batch_resumes(app: TestApp) {
    let logs = tempfile::tempdir().unwrap();
    let _relay = app
        .config
        .kafka_brokers
        .as_ref()
        .map(|_| KillOnDrop(role_process(&app, "relay", &logs.path().join("relay.log"))));
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let g = app.create_group(&ann, "Crash", &[&bob, &cat]).await;
    let ab = app.make_friends(&ann, &bob).await;
    let (mut to_group, mut to_ann) = (0i64, 0i64);
    let mut last_text = String::new();
    let mut resumed_at = Vec::new();
    let mut killed_with_work_left = 0;
    for round in 0..3 {
        // a backlog written while no projector runs
        for i in 0..60 {
            last_text = format!("round {round} {i}");
            app.send_text(&ann, &g, &last_text, Value::Null).await;
            app.send_text(&bob, &ab, &last_text, Value::Null).await;
            to_group += 1;
            to_ann += 1;
        }
        let log = logs.path().join(format!("project-{round}.log"));
        let before = committed_position(&app).await;
        let mut child = KillOnDrop(role_process(&app, "project", &log));
        // it resumes where the previous one committed
        eventually(30, "the projector reports where it resumes", || async {
            std::fs::read_to_string(&log).unwrap_or_default().contains("conversation-view-updater resumes at")
        })
        .await;
        let text = std::fs::read_to_string(&log).unwrap();
        let line = text.lines().find(|l| l.contains("conversation-view-updater resumes at")).unwrap();
        assert!(
            line.contains(&format!("resumes at committed position {before}")),
            "round {round}: resumed at the committed {before}: {line}"
        );
        resumed_at.push(before);
        // killed as soon as it has committed a batch, while it drains the rest
        let deadline = Instant::now() + Duration::from_secs(30);
        while committed_position(&app).await <= before {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(Instant::now() < deadline, "round {round}: the projector committed nothing:\n{text}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.0.kill().expect("SIGKILL");
        child.0.wait().unwrap();
        if pending_events(&app, "conversation-view-updater").await > 0 {
            killed_with_work_left += 1;
        }
    }
    assert!(resumed_at.windows(2).all(|w| w[0] < w[1]), "every run committed work: {resumed_at:?}");
    assert!(killed_with_work_left > 0, "at least one kill interrupted a drain");
    let mut last = KillOnDrop(role_process(&app, "project", &logs.path().join("project-last.log")));
    wait_drained(&app, 60).await;
    last.0.kill().ok();
    app.assert_consistent().await;
    let unread = |list: &[Value], channel: &str| {
        list.iter().find(|c| c["channelId"] == channel).map(|c| c["unreadCount"].as_i64().unwrap())
    };
    let (bob_list, _) = app.conversation_list(&bob).await;
    let (cat_list, _) = app.conversation_list(&cat).await;
    let (ann_list, _) = app.conversation_list(&ann).await;
    assert_eq!(unread(&bob_list, &g), Some(to_group), "bob's unread in the group: every message once");
    assert_eq!(unread(&cat_list, &g), Some(to_group));
    assert_eq!(unread(&ann_list, &g), Some(0), "her own messages are not unread");
    assert_eq!(unread(&ann_list, &ab), Some(to_ann));
    assert_eq!(unread(&bob_list, &ab), Some(0));
    let shown = bob_list.iter().find(|c| c["channelId"] == g).unwrap()["lastMessage"]["content"].clone();
    assert_eq!(shown, last_text.as_str(), "the last message is the latest");
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM (SELECT user_id, channel_id FROM user_conversation_view GROUP BY user_id, channel_id HAVING COUNT(*) > 1) d"
        )
        .await,
        0
    );
    app.stop().await;
}

pub(crate) use hermet_bench::processes::KillOnDrop;

/// The API alone (its pipeline runs elsewhere), answering without waiting long for a
/// projector that may be dead.
fn api_only(c: &mut Config) {
    async_mode(c);
    c.pipeline.serve_runs_pipeline = false;
    c.pipeline.read_your_writes_timeout_ms = 20;
}

/// Leases belong to a node, not to a process: a clean shutdown releases the consumers'
/// lease, so another node takes it over at once, and a node that comes back after a crash
/// takes its own lease back at once instead of waiting for it to expire. (Leases here last
/// an hour: without either rule the consumers would not run within the test.)
async fn lease_held_by(app: &TestApp, holder: &str) -> bool {
    let sql = format!(
        "SELECT COUNT(*) FROM relay_lease WHERE name = 'embedded-log-consumers' AND holder = '{holder}' AND expires_at > 0"
    );
    app.scalar(&sql).await == 1
}

async fn leases_are_held_by_node_and_released_on_shutdown(db: Db) {
    let (url, _dir) = crate::helpers::fresh_database(db).await;
    let node = |id: u16| {
        let url = url.clone();
        move |c: &mut Config| {
            async_mode(c);
            c.database_url = url.clone();
            c.node_id = id;
            c.pipeline.consumer_lease_ms = 3_600_000;
        }
    };
    let first = spawn_app_with(db, node(0)).await;
    eventually(30, "node 0 holds the consumers' lease", || lease_held_by(&first, "node-0")).await;
    let ann = first.sign_up("ann@example.com", "Ann").await;
    let bob = first.sign_up("bob@example.com", "Bob").await;
    let g = first.create_group(&ann, "Leases", &[&bob]).await;
    first.stop().await;

    // node 1 takes over what node 0 released
    let second = spawn_app_with(db, node(1)).await;
    eventually(20, "node 1 takes the released lease", || lease_held_by(&second, "node-1")).await;
    second.send_text(&ann, &g, "after the hand-over", Value::Null).await;
    eventually(20, "the message reaches bob's conversation", || async {
        second.conversation_list(&bob).await.0.iter().any(|c| c["lastMessage"]["seq"] == 1)
    })
    .await;
    second.stop().await;
    // node 1 crashed while holding the lease: what it leaves is a lease valid for an hour
    let url2 = url.clone();
    let sql = spawn_app_with(db, move |c| {
        api_only(c);
        c.database_url = url2.clone();
    })
    .await;
    sql.exec(
        "UPDATE relay_lease SET holder = 'node-1', expires_at = 9000000000000 WHERE name = 'embedded-log-consumers'",
    )
    .await;
    let again = spawn_app_with(db, node(1)).await;
    again.send_text(&ann, &g, "after the restart", Value::Null).await;
    eventually(20, "node 1 back after a crash projects at once", || async {
        again.conversation_list(&bob).await.0.iter().any(|c| c["lastMessage"]["seq"] == 2)
    })
    .await;
    again.stop().await;
    sql.stop().await;
}

/// With no projector running (async mode), a write is still committed and answered; after
/// the first one has waited out the read-your-writes timeout, the next ones do not stall
/// on a projection known to be behind, and every such answer says so (`X-Read-Model:
/// behind`). Once a projector has caught up, writes wait for their read models again.
async fn writes_do_not_stall_on_a_projection_known_to_be_behind(db: Db) {
    let (url, _dir) = crate::helpers::fresh_database(db).await;
    let with_url = |serve_runs_pipeline: bool| {
        let url = url.clone();
        move |c: &mut Config| {
            async_mode(c);
            c.database_url = url.clone();
            c.pipeline.serve_runs_pipeline = serve_runs_pipeline;
            c.pipeline.read_your_writes_timeout_ms = 1_000;
        }
    };
    let api = spawn_app_with(db, with_url(false)).await;
    let ann = api.sign_up("ann@example.com", "Ann").await;
    let bob = api.sign_up("bob@example.com", "Bob").await;
    let g = api.create_group(&ann, "Behind", &[&bob]).await;
    let send = |text: &'static str| {
        let (api, ann, g) = (&api, &ann, g.clone());
        async move {
            let body = json!({"type": "text", "content": {"text": text}});
            let r = api.post(&format!("/api/v1/channels/{g}/messages"), Some(&ann.access), body).await;
            assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.body);
            r.headers.get("x-read-model").map(|v| v.to_str().unwrap().to_owned())
        }
    };
    for text in ["one", "two", "three"] {
        assert_eq!(send(text).await.as_deref(), Some("behind"), "{text}: committed, read models behind");
    }
    assert_eq!(api.scalar(&format!("SELECT COUNT(*) FROM message WHERE channel_id = {g}")).await, 3);

    // a projector starts and catches up; the writes after that wait for it again
    let projector = spawn_app_with(db, with_url(true)).await;
    eventually(30, "writes wait for their read models again", || async { send("again").await.is_none() }).await;
    let r = api.get(&format!("/api/v1/channels/{g}/messages?limit=50"), &bob.access).await;
    assert!(r.body["items"].as_array().unwrap().len() >= 4, "{}", r.body);
    projector.stop().await;
    api.stop().await;
}

async fn consumer_killed_on_the_embedded_log(db: Db) {
    consumer_killed_mid_batch_resumes(spawn_app_with(db, api_only).await).await;
}

async fn consumer_killed_on_kafka(db: Db) {
    let broker = Broker::start_new().await;
    consumer_killed_mid_batch_resumes(
        spawn_app_with(db, |c| {
            api_only(c);
            on_kafka(c, &broker);
        })
        .await,
    )
    .await;
}

/// A write transaction left open elsewhere in the PostgreSQL cluster holds back the
/// events committed after it (the log is read below the oldest running transaction). Once
/// it ends, the events go out without waiting for another write or the poll, set to a
/// minute here: the commit's wake-up came while they were held back.
async fn events_held_back_by_a_running_transaction_go_out_when_it_ends(db: Db) {
    let app = spawn_app_with(db, |c| c.pipeline.poll_interval_ms = 60_000).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let chat = app.make_friends(&ann, &bob).await;
    eventually(10, "the notifier has every event so far", || async {
        app.scalar("SELECT COUNT(*) FROM consumer_offset WHERE consumer = 'notifier'").await == 1
            && pending_events(&app, "notifier").await == 0
    })
    .await;
    let (blocker, conn) =
        tokio_postgres::connect(&crate::helpers::pg_admin_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    blocker.batch_execute("BEGIN; SELECT txid_current();").await.unwrap();
    app.send_text(&ann, &chat, "behind an open transaction", Value::Null).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    eventually(10, "the held-back message delivered", || async {
        delivered(&app, &bob.id, "message.sent", &chat) == 1
    })
    .await;
    app.stop().await;
}

crate::both_backends!(
    events_held_back_by_a_running_transaction_go_out_when_it_ends,
    leases_are_held_by_node_and_released_on_shutdown,
    writes_do_not_stall_on_a_projection_known_to_be_behind,
    outbox_pruning_keeps_what_consumers_need,
    replays_that_make_sense,
    replay_command_follows_progress,
    consumer_killed_on_the_embedded_log,
    consumer_killed_on_kafka,
    notifier_pushes_to_the_audience,
    poison_event_on_the_embedded_log,
    compensation_reemits_what_is_missing,
    kafka_scenario_and_replay,
    channel_events_follow_the_seed,
    broker_outage,
    poison_event_on_kafka,
);
