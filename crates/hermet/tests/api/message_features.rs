//! Replies, forwards and pinned messages (docs/API.md "Replies", "Forward", "Pinned
//! messages"): who may, what is refused and writes nothing, what history, pushes and the
//! log carry, and that a recall reaches quotes and pins.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, TestUser, spawn_app};
use crate::realtime::Client;

/// Sends a text message; returns its id.
async fn send(app: &TestApp, from: &TestUser, channel: &str, body: Value) -> String {
    let r = app.post(&format!("/api/v1/channels/{channel}/messages"), Some(&from.access), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["messageId"].as_str().unwrap().to_owned()
}

/// The history item of message `id` as `who` sees it.
async fn item(app: &TestApp, who: &TestUser, channel: &str, id: &str) -> Value {
    let r = app.get(&format!("/api/v1/channels/{channel}/messages?limit=200"), &who.access).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().unwrap().iter().find(|m| m["id"] == id).cloned().unwrap_or(Value::Null)
}

/// A reply quotes the message it answers as that message is now: edits show, a recall
/// leaves a notice, and the recalled content is gone from the reply's event in the log.
/// Only messages of the channel the sender can see, not recalled ones, may be answered.
async fn replies_quote_the_answered_message_as_it_is_now(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "q", 4).await;
    let (owner, bob, cat, dan) = (&u[0], &u[1], &u[2], &u[3]);
    let g = app.create_group(owner, "Quotes", &[bob, cat]).await;
    let other = app.create_group(owner, "Elsewhere", &[bob]).await;
    let (mut owner_socket, _) = Client::connect(&app, owner).await;
    let original = send(&app, bob, &g, json!({"type": "text", "content": {"text": "original words"}})).await;
    let reply = send(
        &app,
        cat,
        &g,
        json!({"type": "text", "content": {"text": "answering"}, "replyTo": original, "clientMsgId": "r-1"}),
    )
    .await;
    let quoted = item(&app, owner, &g, &reply).await;
    let bob_name = item(&app, owner, &g, &original).await["senderName"].clone();
    assert_eq!(
        quoted["replyTo"],
        json!({"messageId": original, "senderId": bob.id, "senderName": bob_name, "type": "text", "preview": "original words"})
    );
    assert_eq!(item(&app, owner, &g, &original).await["replyTo"], Value::Null, "not a reply");
    // the push carries the quote as it was
    loop {
        let f = owner_socket.next_of("message.new").await;
        if f["data"]["messageId"] == reply.as_str() {
            assert_eq!(f["data"]["replyTo"]["preview"], "original words", "{f}");
            assert_eq!(f["data"]["replyTo"]["messageId"], original.as_str());
            break;
        }
    }

    // what may not be answered: refused, nothing written
    let messages = app.scalar("SELECT COUNT(*) FROM message").await;
    let elsewhere = send(&app, owner, &other, json!({"type": "text", "content": {"text": "other channel"}})).await;
    for bad in [elsewhere.as_str(), "123456789"] {
        let body = json!({"type": "text", "content": {"text": "x"}, "replyTo": bad});
        let r = app.post(&format!("/api/v1/channels/{g}/messages"), Some(&cat.access), body).await;
        assert_eq!((r.status, r.code(), r.field()), (StatusCode::UNPROCESSABLE_ENTITY, "unknown_message", "replyTo"));
        assert_eq!(r.body["error"]["details"]["messageIds"], json!([bad]));
    }
    let r = app
        .post(
            &format!("/api/v1/channels/{g}/messages"),
            Some(&cat.access),
            json!({"type": "text", "content": {"text": "x"}, "replyTo": "nope"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // a member who joined later cannot answer what came before
    let r = app.post(&format!("/api/v1/channels/{g}/members"), Some(&owner.access), json!({"userIds": [dan.id]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let body = json!({"type": "text", "content": {"text": "x"}, "replyTo": original});
    let r = app.post(&format!("/api/v1/channels/{g}/messages"), Some(&dan.access), body).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "unknown_message"), "{}", r.body);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message").await, messages + 1, "only the message elsewhere");

    // the quote follows an edit
    let r = app
        .patch(
            &format!("/api/v1/channels/{g}/messages/{original}"),
            &bob.access,
            json!({"content": {"text": "better words"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(item(&app, cat, &g, &reply).await["replyTo"]["preview"], "better words");

    // and a recall: a notice in the quote, the content gone from the log
    let r = app.post(&format!("/api/v1/channels/{g}/messages/{original}/recall"), Some(&bob.access), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let q = item(&app, cat, &g, &reply).await["replyTo"].clone();
    assert_eq!((q["type"].as_str(), q["preview"].as_str()), (Some("recalled"), Some("")), "{q}");
    for words in ["original words", "better words"] {
        let sql = format!("SELECT COUNT(*) FROM outbox WHERE CAST(payload AS TEXT) LIKE '%{words}%'");
        assert_eq!(app.scalar(&sql).await, 0, "{words} is gone from the log");
    }
    let sql = format!(
        "SELECT COUNT(*) FROM outbox WHERE event_type = 'message.sent' AND CAST(payload AS TEXT) LIKE '%{original}%'"
    );
    assert!(app.scalar(&sql).await >= 2, "the original's event and the reply's are still there");
    // a recalled message is not answered
    let body = json!({"type": "text", "content": {"text": "x"}, "replyTo": original});
    let r = app.post(&format!("/api/v1/channels/{g}/messages"), Some(&cat.access), body).await;
    assert_eq!((r.status, r.code(), r.field()), (StatusCode::CONFLICT, "message_recalled", "replyTo"));
    // a retried reply answers as before, though its message was recalled since
    let body = json!({"type": "text", "content": {"text": "answering"}, "replyTo": original, "clientMsgId": "r-1"});
    let r = app.post(&format!("/api/v1/channels/{g}/messages"), Some(&cat.access), body).await;
    assert_eq!((r.status, r.body["messageId"].as_str()), (StatusCode::CREATED, Some(reply.as_str())), "{}", r.body);
    app.assert_consistent().await;
    app.stop().await;
}

/// A forward sends copies of messages the caller can read to channels they are in, each
/// marked with its origin (kept through a forward of a forward), in the order they were
/// sent; checked whole before anything is sent, and a refusal in one target channel stops
/// that channel only.
async fn forward_copies_messages_to_several_channels(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "f", 5).await;
    let (owner, bob, cat, dan, outsider) = (&u[0], &u[1], &u[2], &u[3], &u[4]);
    let g = app.create_group(owner, "Source", &[bob, cat]).await;
    let g2 = app.create_group(bob, "Target", &[dan]).await;
    let chat = app.make_friends(bob, cat).await;
    let one = send(&app, cat, &g, json!({"type": "text", "content": {"text": "one"}})).await;
    let two = send(&app, cat, &g, json!({"type": "image", "content": {"url": "https://x/two.png"}})).await;
    let forward = |who: &TestUser, body: Value| {
        let token = who.access.clone();
        let app = &app;
        async move { app.post("/api/v1/messages/forward", Some(&token), body).await }
    };

    // refused whole, nothing written
    let messages = app.scalar("SELECT COUNT(*) FROM message").await;
    let r = forward(outsider, json!({"messageIds": [one], "channelIds": [g2]})).await;
    assert_eq!((r.status, r.code(), r.field()), (StatusCode::UNPROCESSABLE_ENTITY, "unknown_message", "messageIds"));
    assert_eq!(r.body["error"]["details"]["messageIds"], json!([one]));
    let r = forward(dan, json!({"messageIds": [one, "123456789"], "channelIds": [g2]})).await;
    assert_eq!(r.body["error"]["details"]["messageIds"], json!([one, "123456789"]), "{}", r.body);
    let not_bobs = app.make_friends(owner, dan).await;
    let r = forward(bob, json!({"messageIds": [one], "channelIds": [g2, not_bobs]})).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "not a member of a target: {}", r.body);
    let too_many: Vec<String> = (1..=21).map(|i| i.to_string()).collect();
    for (body, field) in [
        (json!({"messageIds": [], "channelIds": [g2]}), "messageIds"),
        (json!({"messageIds": [one], "channelIds": []}), "channelIds"),
        (json!({"messageIds": too_many, "channelIds": [g2]}), "messageIds"),
    ] {
        let r = forward(bob, body).await;
        assert_eq!((r.status, r.field()), (StatusCode::BAD_REQUEST, field), "{}", r.body);
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message").await, messages);

    // two messages to two channels, in the order they were sent (a repeat counts once)
    let r = forward(bob, json!({"messageIds": [two, one, two], "channelIds": [g2, chat, g2]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for (result, channel) in items.iter().zip([&g2, &chat]) {
        assert_eq!(result["channelId"], channel.as_str());
        assert_eq!(result["error"], Value::Null);
        assert_eq!(result["messages"].as_array().unwrap().len(), 2, "{result}");
    }
    let page = app.get(&format!("/api/v1/channels/{g2}/messages?afterSeq=0"), &dan.access).await;
    let copies = page.body["items"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{}", page.body);
    let cat_name = item(&app, bob, &g, &one).await["senderName"].clone();
    assert_eq!((copies[0]["type"].as_str(), copies[0]["content"]["text"].as_str()), (Some("text"), Some("one")));
    assert_eq!(copies[1]["content"], json!({"url": "https://x/two.png"}));
    assert_eq!(copies[0]["senderId"], bob.id.as_str());
    assert_eq!(copies[0]["forwardedFrom"]["messageId"], one.as_str());
    assert_eq!(copies[0]["forwardedFrom"]["senderId"], cat.id.as_str());
    assert_eq!(copies[0]["forwardedFrom"]["senderName"], cat_name);
    assert_eq!(copies[1]["forwardedFrom"]["messageId"], two.as_str());
    let conv = app.conversation(dan, &g2).await.unwrap();
    assert_eq!((conv["unreadCount"].as_i64(), conv["lastMessage"]["content"].as_str()), (Some(2), Some("[image]")));

    // a forward of a forward keeps the origin
    let copy = copies[0]["id"].as_str().unwrap().to_owned();
    let r = forward(bob, json!({"messageIds": [copy], "channelIds": [g]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let again = r.body["items"][0]["messages"][0]["messageId"].as_str().unwrap().to_owned();
    assert_eq!(item(&app, cat, &g, &again).await["forwardedFrom"]["messageId"], one.as_str());

    // a refusal in one channel stops that one only
    let r = app.patch(&format!("/api/v1/contacts/{}", bob.id), &cat.access, json!({"isBlocked": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = forward(bob, json!({"messageIds": [one, two], "channelIds": [chat, g2]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"][0]["error"]["code"], "forbidden", "{}", r.body);
    assert_eq!(r.body["items"][0]["messages"], json!([]));
    assert_eq!(r.body["items"][1]["messages"].as_array().unwrap().len(), 2);

    // a recalled message is not forwarded
    let r = app.post(&format!("/api/v1/channels/{g}/messages/{one}/recall"), Some(&cat.access), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = forward(bob, json!({"messageIds": [one], "channelIds": [g2]})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "message_recalled"), "{}", r.body);
    app.assert_consistent().await;
    app.stop().await;
}

/// Pins: a group's owner and admins, both sides of a one-to-one chat; at most 50 a
/// channel; members hear of each change; a recall unpins; a member who joined later sees
/// only the pins of what they can read.
async fn pins_by_managers_and_both_sides_of_a_chat(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "p", 4).await;
    let (owner, bob, cat, dan) = (&u[0], &u[1], &u[2], &u[3]);
    let g = app.create_group(owner, "Pins", &[bob, cat]).await;
    let r =
        app.patch(&format!("/api/v1/channels/{g}/members/{}", bob.id), &owner.access, json!({"role": "admin"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (mut cat_socket, _) = Client::connect(&app, cat).await;
    let m1 = send(&app, cat, &g, json!({"type": "text", "content": {"text": "pin me"}})).await;
    let m2 = send(&app, cat, &g, json!({"type": "text", "content": {"text": "me too"}, "replyTo": m1})).await;
    let pin = |channel: &str, id: &str| format!("/api/v1/channels/{channel}/pins/{id}");
    let list = |who: &TestUser, channel: &str| {
        let (app, token, path) = (&app, who.access.clone(), format!("/api/v1/channels/{channel}/pins"));
        async move {
            let r = app.get(&path, &token).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body["items"].as_array().unwrap().clone()
        }
    };

    let r = app.call(Method::PUT, &pin(&g, &m1), Some(&cat.access), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "a plain member may not");
    let r = app.call(Method::PUT, &pin(&g, "123456789"), Some(&owner.access), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(list(cat, &g).await.is_empty());
    let r = app.call(Method::PUT, &pin(&g, &m1), Some(&bob.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app.call(Method::PUT, &pin(&g, &m2), Some(&owner.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let pins = list(cat, &g).await;
    assert_eq!(pins.len(), 2);
    assert_eq!(
        (pins[0]["message"]["id"].as_str(), pins[0]["pinnedBy"].as_str()),
        (Some(m2.as_str()), Some(owner.id.as_str()))
    );
    assert_eq!(pins[0]["message"]["replyTo"]["messageId"], m1.as_str(), "pins carry quotes");
    assert_eq!(
        (pins[1]["message"]["id"].as_str(), pins[1]["pinnedBy"].as_str()),
        (Some(m1.as_str()), Some(bob.id.as_str()))
    );
    let f = cat_socket.next_of("message.pinned").await;
    assert_eq!((f["data"]["messageId"].as_str(), f["data"]["pinned"].as_bool()), (Some(m1.as_str()), Some(true)));
    assert_eq!(f["data"]["by"], bob.id.as_str());
    // pinning again changes nothing and records nothing
    let events = app.scalar("SELECT COUNT(*) FROM outbox").await;
    let r = app.call(Method::PUT, &pin(&g, &m1), Some(&owner.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, events);
    assert_eq!(list(cat, &g).await[1]["pinnedBy"], bob.id.as_str());
    // a member who joined later sees the pins of what they can read
    let r = app.post(&format!("/api/v1/channels/{g}/members"), Some(&owner.access), json!({"userIds": [dan.id]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(list(dan, &g).await.is_empty());
    let m3 = send(&app, dan, &g, json!({"type": "text", "content": {"text": "new here"}})).await;

    // at most 50 a channel
    let g_id: i64 = g.parse().unwrap();
    app.exec(&format!(
        "INSERT INTO channel_pin (channel_id, message_id, seq, pinned_by, pinned_at)
         SELECT {g_id}, 1000 + k, 0, 1, 0 FROM (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
           UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9 UNION ALL SELECT 10
           UNION ALL SELECT 11 UNION ALL SELECT 12 UNION ALL SELECT 13 UNION ALL SELECT 14 UNION ALL SELECT 15
           UNION ALL SELECT 16 UNION ALL SELECT 17 UNION ALL SELECT 18 UNION ALL SELECT 19 UNION ALL SELECT 20
           UNION ALL SELECT 21 UNION ALL SELECT 22 UNION ALL SELECT 23 UNION ALL SELECT 24 UNION ALL SELECT 25
           UNION ALL SELECT 26 UNION ALL SELECT 27 UNION ALL SELECT 28 UNION ALL SELECT 29 UNION ALL SELECT 30
           UNION ALL SELECT 31 UNION ALL SELECT 32 UNION ALL SELECT 33 UNION ALL SELECT 34 UNION ALL SELECT 35
           UNION ALL SELECT 36 UNION ALL SELECT 37 UNION ALL SELECT 38 UNION ALL SELECT 39 UNION ALL SELECT 40
           UNION ALL SELECT 41 UNION ALL SELECT 42 UNION ALL SELECT 43 UNION ALL SELECT 44 UNION ALL SELECT 45
           UNION ALL SELECT 46 UNION ALL SELECT 47 UNION ALL SELECT 48) AS fill"
    ))
    .await;
    let r = app.call(Method::PUT, &pin(&g, &m3), Some(&owner.access), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "too_many_pins"), "{}", r.body);
    let r = app.call(Method::PUT, &pin(&g, &m1), Some(&owner.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "one already pinned is not refused");
    app.exec(&format!("DELETE FROM channel_pin WHERE channel_id = {g_id} AND message_id < 2000")).await;

    // unpin; a recall unpins
    let r = app.call(Method::DELETE, &pin(&g, &m2), Some(&bob.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    loop {
        let f = cat_socket.next_of("message.pinned").await;
        if f["data"]["pinned"] == false {
            assert_eq!(f["data"]["messageId"], m2.as_str());
            break;
        }
    }
    let r = app.post(&format!("/api/v1/channels/{g}/messages/{m1}/recall"), Some(&cat.access), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(list(cat, &g).await.is_empty(), "the recalled message left the pins");
    let r = app.call(Method::PUT, &pin(&g, &m1), Some(&owner.access), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "message_recalled"), "{}", r.body);

    // a one-to-one chat: either side
    let chat = app.make_friends(cat, dan).await;
    let hi = send(&app, cat, &chat, json!({"type": "text", "content": {"text": "hi"}})).await;
    let r = app.call(Method::PUT, &pin(&chat, &hi), Some(&dan.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(list(cat, &chat).await[0]["pinnedBy"], dan.id.as_str());
    let r = app.call(Method::PUT, &pin(&chat, &hi), Some(&owner.access), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "not a member: {}", r.body);
    let r = app.get(&format!("/api/v1/channels/{chat}/pins"), &owner.access).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    app.assert_consistent().await;
    app.stop().await;
}

/// Search: substring, case ignored, in any script; only what the caller can read (their
/// channels, after they joined, not recalled, not deleted for them); edits followed;
/// filters and keyset pages.
async fn search_finds_what_i_can_read_in_any_script(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "s", 4).await;
    let (owner, bob, cat, dan) = (&u[0], &u[1], &u[2], &u[3]);
    let g = app.create_group(owner, "Searchable", &[bob, cat]).await;
    let g2 = app.create_group(owner, "Private", &[]).await;
    let search = |who: &TestUser, query: &str| {
        let (app, token, path) = (&app, who.access.clone(), format!("/api/v1/messages/search?{query}"));
        async move { app.get(&path, &token).await }
    };
    let q = |text: &str| format!("q={}", urlencode(text));
    let ids = |r: &crate::helpers::Resp| -> Vec<String> {
        r.body["items"].as_array().unwrap().iter().map(|h| h["message"]["id"].as_str().unwrap().to_owned()).collect()
    };
    let hello = send(&app, bob, &g, json!({"type": "text", "content": {"text": "Hello World from Bob"}})).await;
    let weather = send(&app, bob, &g, json!({"type": "text", "content": {"text": "今天天气很好"}})).await;
    let japanese = send(&app, bob, &g, json!({"type": "text", "content": {"text": "日本語のテキスト"}})).await;
    let korean = send(&app, cat, &g, json!({"type": "text", "content": {"text": "안녕하세요 여러분"}})).await;
    let percent = send(&app, cat, &g, json!({"type": "text", "content": {"text": "100% sure_thing"}})).await;
    let secret =
        send(&app, owner, &g2, json!({"type": "text", "content": {"text": "hello from the private group"}})).await;

    let r = search(cat, &q("HELLO")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(ids(&r), vec![hello.clone()], "not the group cat is not in");
    assert_eq!(r.body["items"][0]["highlights"], json!([[0, 5]]));
    assert_eq!(ids(&search(owner, &q("hello")).await), vec![secret.clone(), hello.clone()], "newest first");
    for (text, id, at) in [
        ("天气", &weather, json!([[2, 4]])),
        ("天气很好", &weather, json!([[2, 6]])),
        ("テキスト", &japanese, json!([[4, 8]])),
        ("여러분", &korean, json!([[6, 9]])),
        ("100%", &percent, json!([[0, 4]])),
        ("%", &percent, json!([[3, 4]])),
        ("e_t", &percent, json!([[8, 11]])),
    ] {
        let r = search(cat, &q(text)).await;
        assert_eq!(ids(&r), vec![id.clone()], "{text}: {}", r.body);
        assert_eq!(r.body["items"][0]["highlights"], at, "{text}");
    }
    assert!(ids(&search(cat, &q("nowhere to be found")).await).is_empty());

    // filters
    let r = search(cat, &format!("{}&channelId={g2}", q("hello"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = search(owner, &format!("{}&senderId={}", q("hello"), owner.id)).await;
    assert_eq!(ids(&r), vec![secret.clone()]);
    let r = search(owner, &format!("{}&channelId={g}", q("hello"))).await;
    assert_eq!(ids(&r), vec![hello.clone()]);
    let now = hermet_domain::time::now_ms();
    assert!(ids(&search(owner, &format!("{}&after={now}", q("hello"))).await).is_empty());
    assert_eq!(ids(&search(owner, &format!("{}&before={}", q("hello"), now + 1)).await).len(), 2);
    let first = search(owner, &format!("{}&limit=1", q("hello"))).await;
    assert_eq!(ids(&first), vec![secret.clone()]);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = search(owner, &format!("{}&limit=1&cursor={cursor}", q("hello"))).await;
    assert_eq!((ids(&second), second.body["nextCursor"].clone()), (vec![hello.clone()], Value::Null));
    for bad in [q("   "), q(&"x".repeat(101)), "q=x&limit=0".to_owned(), "q=x&cursor=nope".to_owned()] {
        let r = search(cat, &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
    }

    // edits, recalls, deletions for me, late joiners
    let r = app
        .patch(&format!("/api/v1/channels/{g}/messages/{hello}"), &bob.access, json!({"content": {"text": "Goodbye"}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(ids(&search(cat, &q("hello")).await).is_empty(), "the edit replaced the text");
    assert_eq!(ids(&search(cat, &q("goodbye")).await), vec![hello.clone()]);
    let r = app.post(&format!("/api/v1/channels/{g}/messages/{weather}/recall"), Some(&bob.access), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(ids(&search(cat, &q("天气")).await).is_empty(), "recalled");
    let r =
        app.call(Method::DELETE, &format!("/api/v1/channels/{g}/messages/{japanese}"), Some(&cat.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(ids(&search(cat, &q("テキスト")).await).is_empty(), "deleted for cat");
    assert_eq!(ids(&search(bob, &q("テキスト")).await), vec![japanese.clone()], "not for bob");
    let r = app.post(&format!("/api/v1/channels/{g}/members"), Some(&owner.access), json!({"userIds": [dan.id]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(ids(&search(dan, &q("여러분")).await).is_empty(), "from before dan joined");
    let later = send(&app, cat, &g, json!({"type": "text", "content": {"text": "여러분 welcome dan"}})).await;
    assert_eq!(ids(&search(dan, &q("여러분")).await), [later]);
    app.stop().await;
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

crate::both_backends!(
    search_finds_what_i_can_read_in_any_script,
    replies_quote_the_answered_message_as_it_is_now,
    forward_copies_messages_to_several_channels,
    pins_by_managers_and_both_sides_of_a_chat,
);
