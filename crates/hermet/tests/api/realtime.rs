//! The WebSocket gateway, with real WebSocket clients (tokio-tungstenite) against a real
//! server.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{Db, TestApp, TestUser, spawn_app, spawn_app_with};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) struct Client {
    pub ws: Socket,
}

impl Client {
    /// Connects with the token in the Authorization header and reads `ready`.
    pub(crate) async fn connect(app: &TestApp, user: &TestUser) -> (Client, Value) {
        Client::connect_to(&app.address, user).await
    }

    /// Connects to the node at `address` (`http://…`).
    pub(crate) async fn connect_to(address: &str, user: &TestUser) -> (Client, Value) {
        let url = format!("{}/api/v1/ws", address.replace("http://", "ws://"));
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("Authorization", format!("Bearer {}", user.access).parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.expect("upgrade");
        let mut c = Client { ws };
        let ready = c.next().await;
        assert_eq!(ready["type"], "ready", "{ready}");
        (c, ready)
    }

    /// Connects without headers, as a browser does.
    async fn connect_bare(app: &TestApp) -> Client {
        let url = format!("{}/api/v1/ws", app.address.replace("http://", "ws://"));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
        Client { ws }
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    /// The next JSON frame (10 s at most).
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("connection open")
                .expect("frame");
            match m {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// The next frame of `frame_type`, skipping others.
    pub(crate) async fn next_of(&mut self, frame_type: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == frame_type {
                return v;
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub(crate) async fn closed(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await.expect("closed within 10 s") {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return u16::from(CloseCode::Abnormal),
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Two users chat in real time: a `send` frame is acked with the message's id and seq,
/// and the other user's socket gets `message.new` with the whole message.
async fn two_users_chat_in_real_time(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let ab = app.make_friends(&ann, &bob).await;
    let (mut a, ready) = Client::connect(&app, &ann).await;
    assert_eq!(ready["userId"], ann.id.as_str());
    assert_eq!(ready["version"], 1);
    let (mut b, _) = Client::connect(&app, &bob).await;
    a.send(json!({"type": "send", "channelId": ab, "msgType": "text", "content": {"text": "hi bob"}, "clientMsgId": "c-1"}))
        .await;
    let ack = a.next_of("ack").await;
    assert_eq!(ack["clientMsgId"], "c-1");
    let seq = ack["seq"].as_i64().unwrap();
    let m = b.next_of("message.new").await;
    assert_eq!(m["data"]["channelId"], ab.as_str());
    assert_eq!(m["data"]["seq"], seq);
    assert_eq!(m["data"]["content"]["text"], "hi bob");
    assert_eq!(m["data"]["messageId"], ack["messageId"]);
    assert!(m["eventId"].as_str().is_some_and(|s| !s.is_empty()), "event ids make duplicates detectable");
    assert!(m["cursor"].as_i64().is_some_and(|c| c > 0), "every event frame carries the user's cursor: {m}");
    let row = b.next_of("conversation.updated").await;
    assert_eq!((row["data"]["channelId"].as_str(), row["data"]["unreadCount"].as_i64()), (Some(ab.as_str()), Some(1)));
    // a retried send with the same clientMsgId is the same message
    a.send(json!({"type": "send", "channelId": ab, "msgType": "text", "content": {"text": "hi bob"}, "clientMsgId": "c-1"}))
        .await;
    assert_eq!(a.next_of("ack").await["messageId"], ack["messageId"]);
    // bob answers over HTTP; ann's socket hears it
    let seq2 = app.send_text(&bob, &ab, "hello ann", Value::Null).await;
    let m = a.next_of("message.new").await;
    assert_eq!((m["data"]["seq"].as_i64(), m["data"]["content"]["text"].as_str()), (Some(seq2), Some("hello ann")));
    app.stop().await;
}

/// Both devices of a user receive; a read on one clears the unread count and the other
/// hears `read.updated`.
async fn two_devices_both_receive_and_reads_sync(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Pair", &[&bob]).await;
    let (mut phone, _) = Client::connect(&app, &bob).await;
    let bob2 = app.sign_in_user("bob@example.com").await;
    let (mut laptop, _) = Client::connect(&app, &bob2).await;
    let seq = app.send_text(&ann, &g, "to both", Value::Null).await;
    for d in [&mut phone, &mut laptop] {
        assert_eq!(d.next_of("message.new").await["data"]["seq"], seq);
    }
    assert_eq!(app.conversation(&bob, &g).await.unwrap()["unreadCount"], 1);
    phone.send(json!({"type": "read", "channelId": g, "seq": seq})).await;
    let ack = phone.next_of("ack").await;
    assert_eq!(ack["conversation"]["unreadCount"], 0, "{ack}");
    let r = laptop.next_of("read.updated").await;
    assert_eq!(r["data"]["channelId"], g.as_str());
    assert_eq!(app.conversation(&bob, &g).await.unwrap()["unreadCount"], 0);
    app.stop().await;
}

/// Browsers authenticate with a first frame; a bad token is refused with an error frame
/// and close code 4001; bad frames get an error naming the problem and the connection
/// stays usable; `ping` gets `pong`.
async fn auth_frames_and_bad_input(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let mut c = Client::connect_bare(&app).await;
    c.send(json!({"type": "auth", "token": ann.access})).await;
    assert_eq!(c.next().await["type"], "ready");
    c.send(json!({"type": "ping", "id": 7})).await;
    let pong = c.next().await;
    assert_eq!((pong["type"].as_str(), pong["id"].as_i64()), (Some("pong"), Some(7)));
    c.ws.send(Message::Text("{not json".into())).await.unwrap();
    let e = c.next().await;
    assert_eq!((e["type"].as_str(), e["error"]["field"].as_str()), (Some("error"), Some("frame")), "{e}");
    c.send(json!({"type": "teleport"})).await;
    assert!(c.next().await["error"]["message"].as_str().unwrap().contains("teleport"));
    c.send(
        json!({"type": "send", "channelId": "123", "msgType": "text", "content": {"text": "x"}, "clientMsgId": "z"}),
    )
    .await;
    let e = c.next().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["replyTo"], "z", "errors name the frame they answer");
    assert_eq!(e["error"]["code"], "not_found", "{e}");
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.next().await["type"], "pong", "still open");
    // a frame over the limit (docs/PROTOCOL.md) is answered with close code 1009
    let huge = json!({"type": "ping", "id": "x".repeat(hermet_app::gateway::MAX_CLIENT_FRAME)});
    c.ws.send(Message::Text(huge.to_string().into())).await.unwrap();
    assert_eq!(c.closed().await, 1009);

    let mut bad = Client::connect_bare(&app).await;
    bad.send(json!({"type": "auth", "token": "forged"})).await;
    assert_eq!(bad.next().await["type"], "error");
    assert_eq!(bad.closed().await, 4001);
    app.stop().await;
}

/// Signing out closes the session's sockets (4003), not the user's other sessions;
/// disabling the user closes them all.
async fn revoked_sessions_close_their_sockets(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let bob2 = app.sign_in_user("bob@example.com").await;
    let (mut one, _) = Client::connect(&app, &bob).await;
    let (mut two, _) = Client::connect(&app, &bob2).await;
    let r = app.call(reqwest::Method::POST, "/api/v1/auth/sign-out", Some(&bob.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(one.closed().await, 4003);
    two.send(json!({"type": "ping"})).await;
    assert_eq!(two.next().await["type"], "pong", "the other session stays");
    let r = app
        .call(reqwest::Method::POST, &format!("/api/v1/admin/users/{}/disable", bob.id), Some(&admin.access), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(two.closed().await, 4003);
    app.stop().await;
}

/// A session revoked where no broadcast reaches this node (here: behind the server's back,
/// as when Redis lost the revocation between nodes) still closes its sockets, at the
/// socket's next session check; the user's other sessions stay.
async fn a_revocation_that_was_not_broadcast_still_closes_the_socket(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.gateway.session_check_secs = 1;
        c.cache.mode = hermet_app::cache::CacheMode::Off;
    })
    .await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let bob2 = app.sign_in_user("bob@example.com").await;
    let (mut one, ready) = Client::connect(&app, &bob).await;
    let (mut two, _) = Client::connect(&app, &bob2).await;
    let session = ready["sessionId"].as_str().unwrap();
    app.exec(&format!("UPDATE session SET revoked_at = 1 WHERE id = {session}")).await;
    assert_eq!(one.closed().await, 4003);
    two.send(json!({"type": "ping"})).await;
    assert_eq!(two.next().await["type"], "pong", "the other session stays");
    app.stop().await;
}

/// Reads frames until `sync.done`; returns the event frames before it and `sync.done`.
pub(crate) async fn synced(c: &mut Client) -> (Vec<Value>, Value) {
    let mut frames = Vec::new();
    loop {
        let v = c.next().await;
        match v["type"].as_str() {
            Some("sync.done") => return (frames, v),
            Some("conversation.updated") | Some("pong") => {}
            _ => frames.push(v),
        }
    }
}

/// Cursors are consecutive from `from + 1`: nothing missing, nothing twice, in order.
pub(crate) fn assert_consecutive(frames: &[Value], from: i64) {
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["cursor"].as_i64(), Some(from + 1 + i as i64), "frame {i}: {f}");
    }
}

/// A user offline during 100 messages (and a rename) reconnects with its cursor and gets
/// all of them once, in order, then the conversation rows that changed; live pushes
/// continue from there. A cursor ahead of the server is refused.
async fn offline_user_catches_up_by_cursor(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let (mut b, ready) = Client::connect(&app, &bob).await;
    let g = app.create_group(&ann, "Catch-up", &[&bob]).await;
    // the group's creation reached bob's inbox; his cursor is where he stands
    let first = b.next_of("channel.created").await;
    let cursor = first["cursor"].as_i64().unwrap();
    assert!(cursor >= 1 && cursor > ready["cursor"].as_i64().unwrap(), "{first} after {ready}");
    drop(b);
    let mut seqs = Vec::new();
    for i in 0..100 {
        seqs.push(app.send_text(&ann, &g, &format!("m{i}"), Value::Null).await);
    }
    let r = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/channels/{g}"),
            Some(&ann.access),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let expected_head = cursor + 101;
    crate::pipeline::eventually(30, "the notifier numbered all 101 events for bob", || async {
        app.scalar(&format!("SELECT COALESCE(MAX(seq), 0) FROM user_inbox WHERE user_id = {}", bob.id)).await
            == expected_head
    })
    .await;

    let (mut b, ready) = Client::connect(&app, &bob).await;
    assert_eq!(ready["cursor"], expected_head, "ready tells the latest cursor");
    b.send(json!({"type": "sync", "cursor": expected_head + 1})).await;
    let e = b.next_of("error").await;
    assert_eq!(e["error"]["field"], "cursor", "{e}");
    b.send(json!({"type": "sync", "cursor": cursor})).await;
    let (frames, done) = synced(&mut b).await;
    assert_eq!(frames.len(), 101, "every missed event once");
    assert_consecutive(&frames, cursor);
    let got: Vec<i64> = frames[..100].iter().map(|f| f["data"]["seq"].as_i64().unwrap()).collect();
    assert_eq!(got, seqs, "messages in order");
    assert!(frames[..100].iter().all(|f| f["type"] == "message.new"));
    assert_eq!(frames[100]["type"], "channel.updated");
    assert_eq!(done["cursor"], expected_head);
    let row = done["conversations"].as_array().unwrap().iter().find(|c| c["channelId"] == g.as_str()).cloned();
    let row = row.expect("the changed conversation row comes with sync.done");
    assert_eq!(row["unreadCount"], 100, "{row}");
    // live from here: the next push carries the next cursor, and its conversation row
    let seq = app.send_text(&ann, &g, "live", Value::Null).await;
    let live = b.next_of("message.new").await;
    assert_eq!((live["cursor"].as_i64(), live["data"]["seq"].as_i64()), (Some(expected_head + 1), Some(seq)));
    let updated = b.next_of("conversation.updated").await;
    assert_eq!(updated["data"]["unreadCount"], 101, "{updated}");
    // syncing again from an old cursor resends (at-least-once, same event ids)
    b.send(json!({"type": "sync", "cursor": expected_head})).await;
    let (again, _) = synced(&mut b).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["eventId"], live["eventId"]);
    app.stop().await;
}

/// Beyond the inbox's bound the client is told to refetch its lists (`sync.reset`)
/// instead of getting a list with holes.
async fn sync_beyond_retention_resets(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.pipeline.inbox_max_per_user = 5;
        c.pipeline.outbox_prune_interval_secs = 1;
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let g = app.create_group(&ann, "Small inbox", &[&bob]).await;
    for i in 0..20 {
        app.send_text(&ann, &g, &format!("m{i}"), Value::Null).await;
    }
    // all 21 events delivered (the group's creation and 20 messages), then pruned to 5
    crate::pipeline::eventually(30, "bob's inbox at 21 and pruned to 5 entries", || async {
        app.scalar(&format!("SELECT COALESCE(MAX(seq), 0) FROM user_inbox_head WHERE user_id = {}", bob.id)).await == 21
            && app.scalar(&format!("SELECT COUNT(*) FROM user_inbox WHERE user_id = {}", bob.id)).await == 5
    })
    .await;
    let (mut b, ready) = Client::connect(&app, &bob).await;
    let head = ready["cursor"].as_i64().unwrap();
    assert_eq!(head, 21);
    b.send(json!({"type": "sync", "cursor": 3})).await;
    let reset = b.next().await;
    assert_eq!((reset["type"].as_str(), reset["cursor"].as_i64()), (Some("sync.reset"), Some(head)), "{reset}");
    assert_eq!(b.next_of("sync.done").await["cursor"], head);
    // within the bound, a normal catch-up
    b.send(json!({"type": "sync", "cursor": head - 5})).await;
    let (frames, _) = synced(&mut b).await;
    assert_eq!(frames.len(), 5);
    assert_consecutive(&frames, head - 5);
    app.stop().await;
}

/// A client that stops reading is disconnected (its queue overflows) while another
/// member keeps receiving everything.
async fn slow_consumer_is_disconnected_others_unaffected(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.gateway.send_queue = 32;
        c.gateway.write_timeout_secs = 2;
    })
    .await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let g = app.create_group(&ann, "Firehose", &[&bob, &cat]).await;
    // bob's client reads nothing, through a tiny receive buffer
    let url = format!("{}/api/v1/ws", app.address.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", bob.access).parse().unwrap());
    let addr: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(sock.connect(addr).await.unwrap());
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await.expect("upgrade");
    let mut slow = Client { ws };
    let (mut c, _) = Client::connect(&app, &cat).await;
    let n = 200;
    // cat reads as fast as the server sends
    let reader = tokio::spawn(async move {
        let mut texts = Vec::new();
        while texts.len() < n {
            texts.push(c.next_of("message.new").await["data"]["content"]["text"].as_str().unwrap().to_owned());
        }
        texts
    });
    // 200 messages of 60 KB: far more than the socket buffers between server and bob
    let pad = "x".repeat(60_000);
    for i in 0..n {
        let body = json!({"type": "text", "content": {"text": format!("m{i}"), "pad": pad}});
        let r = app.post(&format!("/api/v1/channels/{g}/messages"), Some(&ann.access), body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let texts = reader.await.unwrap();
    assert_eq!(texts, (0..n).map(|i| format!("m{i}")).collect::<Vec<_>>(), "cat gets all, in order");
    // bob's socket ends before all n messages
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), slow.ws.next()).await.expect("the slow socket ends") {
            Some(Ok(Message::Text(t))) if t.contains("message.new") => got += 1,
            Some(Ok(Message::Close(f))) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(4008));
                break;
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => break,
        }
    }
    assert!(got < n, "the slow consumer was cut off ({got} of {n})");
    let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("gateway_slow_consumers_total") && !l.ends_with(" 0")), "{metrics}");
    app.stop().await;
}

/// Presence is for friends (and oneself): online with the device count, then offline
/// with the time last seen; strangers are refused.
async fn presence_is_for_friends(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    app.make_friends(&ann, &bob).await;
    let path = format!("/api/v1/users/{}/presence", bob.id);
    let r = app.get(&path, &ann.access).await;
    assert_eq!((r.status, r.body["online"].as_bool()), (StatusCode::OK, Some(false)), "{}", r.body);
    let (b1, _) = Client::connect(&app, &bob).await;
    let (b2, _) = Client::connect(&app, &bob).await;
    let r = app.get(&path, &ann.access).await;
    assert_eq!((r.body["online"].as_bool(), r.body["connections"].as_u64()), (Some(true), Some(2)), "{}", r.body);
    let r = app.get(&path, &cat.access).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(app.get(&path, &bob.access).await.status, StatusCode::OK, "oneself");
    let r = app.get("/api/v1/users/123/presence", &ann.access).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    drop((b1, b2));
    crate::pipeline::eventually(10, "bob offline", || async {
        let r = app.get(&path, &ann.access).await;
        r.body["online"] == false && r.body["lastSeenAt"].as_i64().is_some()
    })
    .await;
    app.stop().await;
}

/// `typing` reaches the channel's other members online, not the typist, not outsiders;
/// a second one within the interval is dropped; a non-member gets an error frame.
async fn typing_reaches_the_other_members_online(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "t", 4).await;
    let (ann, bob, cat, out) = (&u[0], &u[1], &u[2], &u[3]);
    let g = app.create_group(ann, "Typing", &[bob, cat]).await;
    let (mut a, _) = Client::connect(&app, ann).await;
    let (mut b, _) = Client::connect(&app, bob).await;
    let (mut c, _) = Client::connect(&app, cat).await;
    let (mut o, _) = Client::connect(&app, out).await;

    a.send(json!({"type": "typing", "channelId": g})).await;
    for socket in [&mut b, &mut c] {
        let t = socket.next_of("typing").await;
        assert_eq!(
            (t["data"]["channelId"].as_str(), t["data"]["userId"].as_str()),
            (Some(g.as_str()), Some(ann.id.as_str()))
        );
        assert!(t.get("cursor").is_none(), "not an event of the inbox: {t}");
    }
    // within the interval: dropped
    a.send(json!({"type": "typing", "channelId": g})).await;
    app.send_text(ann, &g, "done typing", Value::Null).await;
    // what comes before that message: no second typing for bob, none at all for ann
    for (socket, who) in [(&mut b, "bob"), (&mut a, "ann")] {
        loop {
            let f = socket.next().await;
            assert_ne!(f["type"], "typing", "{who} got {f}");
            if f["type"] == "message.new" {
                break;
            }
        }
    }
    o.send(json!({"type": "typing", "channelId": g, "id": 7})).await;
    let e = o.next_of("error").await;
    assert_eq!((e["error"]["code"].as_str(), e["replyTo"].as_i64()), (Some("forbidden"), Some(7)), "{e}");
    app.stop().await;
}

crate::both_backends!(
    two_users_chat_in_real_time,
    two_devices_both_receive_and_reads_sync,
    auth_frames_and_bad_input,
    revoked_sessions_close_their_sockets,
    a_revocation_that_was_not_broadcast_still_closes_the_socket,
    offline_user_catches_up_by_cursor,
    sync_beyond_retention_resets,
    slow_consumer_is_disconnected_others_unaffected,
    presence_is_for_friends,
    typing_reaches_the_other_members_online,
);
