//! The WebSocket gateway, with real WebSocket clients (tokio-tungstenite) against a real
//! server.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{Db, TestApp, TestUser, spawn_app};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Client {
    ws: Socket,
}

impl Client {
    /// Connects with the token in the Authorization header and reads `ready`.
    async fn connect(app: &TestApp, user: &TestUser) -> (Client, Value) {
        let url = format!("{}/api/v1/ws", app.address.replace("http://", "ws://"));
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

    async fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    /// The next JSON frame (10 s at most).
    async fn next(&mut self) -> Value {
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
    async fn next_of(&mut self, frame_type: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == frame_type {
                return v;
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    async fn closed(&mut self) -> u16 {
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

crate::both_backends!(
    two_users_chat_in_real_time,
    two_devices_both_receive_and_reads_sync,
    auth_frames_and_bad_input,
    revoked_sessions_close_their_sockets,
);
