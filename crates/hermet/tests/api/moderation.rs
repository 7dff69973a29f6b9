//! Moderation (docs/API.md "Moderation"): members muted until a time, everyone muted but
//! the managers, slow mode, bans; who may, and that a refused send writes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, TestUser, spawn_app};
use crate::realtime::Client;

async fn send(app: &TestApp, from: &TestUser, channel: &str, body: Value) -> crate::helpers::Resp {
    app.post(&format!("/api/v1/channels/{channel}/messages"), Some(&from.access), body).await
}

fn text(t: &str) -> Value {
    json!({"type": "text", "content": {"text": t}})
}

async fn mute_members_mute_all_and_slow_mode(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "m", 4).await;
    let (owner, bob, cat, dan) = (&u[0], &u[1], &u[2], &u[3]);
    let g = app.create_group(owner, "Moderated", &[bob, cat, dan]).await;
    let member = |user: &TestUser| format!("/api/v1/channels/{g}/members/{}", user.id);
    let r = app.patch(&member(bob), &owner.access, json!({"role": "admin"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (mut dan_socket, _) = Client::connect(&app, dan).await;
    let r = send(&app, cat, &g, json!({"type": "text", "content": {"text": "before"}, "clientMsgId": "m-1"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let before = r.body["messageId"].clone();

    // who may mute whom
    let until = hermet_domain::time::now_ms() + 60_000;
    for (by, target) in [(cat, dan), (bob, owner), (bob, bob), (owner, owner)] {
        let r = app.patch(&member(target), &by.access, json!({"mutedUntil": until})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{}", r.body);
    }
    let r = app.patch(&member(cat), &bob.access, json!({"mutedUntil": -1})).await;
    assert_eq!((r.status, r.field()), (StatusCode::BAD_REQUEST, "mutedUntil"), "{}", r.body);
    let r = app.patch(&member(cat), &bob.access, json!({"mutedUntil": until})).await;
    assert_eq!((r.status, r.body["mutedUntil"].as_i64()), (StatusCode::OK, Some(until)), "{}", r.body);
    let f = dan_socket.next_of("member.muted").await;
    assert_eq!((f["data"]["userId"].as_str(), f["data"]["mutedUntil"].as_i64()), (Some(cat.id.as_str()), Some(until)));
    let list = app.get(&format!("/api/v1/channels/{g}/members"), &dan.access).await;
    let row = list.body["items"].as_array().unwrap().iter().find(|m| m["userId"] == cat.id.as_str()).unwrap().clone();
    assert_eq!(row["mutedUntil"], until);
    let messages = app.scalar("SELECT COUNT(*) FROM message").await;
    let r = send(&app, cat, &g, text("muted?")).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "member_muted"), "{}", r.body);
    assert_eq!(r.body["error"]["details"]["mutedUntil"], until);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message").await, messages, "nothing written");
    // a retried send that was accepted before answers as before
    let r = send(&app, cat, &g, json!({"type": "text", "content": {"text": "before"}, "clientMsgId": "m-1"})).await;
    assert_eq!((r.status, r.body["messageId"].clone()), (StatusCode::CREATED, before), "{}", r.body);
    let r = app.patch(&member(bob), &owner.access, json!({"mutedUntil": until})).await;
    assert_eq!(r.status, StatusCode::OK, "the owner mutes an admin: {}", r.body);
    let r = app.patch(&member(bob), &owner.access, json!({"mutedUntil": null})).await;
    assert_eq!((r.status, r.body["mutedUntil"].clone()), (StatusCode::OK, Value::Null), "{}", r.body);
    let r = app.patch(&member(cat), &bob.access, json!({"mutedUntil": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(send(&app, cat, &g, text("free again")).await.status, StatusCode::CREATED);

    // everyone muted but the managers
    let channel = format!("/api/v1/channels/{g}");
    let r = app.patch(&channel, &cat.access, json!({"muteAll": true})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app.patch(&channel, &bob.access, json!({"muteAll": true})).await;
    assert_eq!((r.status, r.body["muteAll"].as_bool()), (StatusCode::OK, Some(true)), "{}", r.body);
    assert_eq!(r.body["channelInfoVer"], 1, "moderation is not the group's info");
    let f = dan_socket.next_of("channel.moderation").await;
    assert_eq!(f["data"]["muteAll"], true);
    let r = send(&app, cat, &g, text("hello?")).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "channel_muted"), "{}", r.body);
    assert_eq!(send(&app, bob, &g, text("admins speak")).await.status, StatusCode::CREATED);
    let r = app.patch(&channel, &owner.access, json!({"muteAll": false})).await;
    assert_eq!(r.status, StatusCode::OK);

    // slow mode: one message per 30 s for plain members
    for bad in [json!({"slowModeSecs": -1}), json!({"slowModeSecs": 86_401})] {
        let r = app.patch(&channel, &owner.access, bad).await;
        assert_eq!((r.status, r.field()), (StatusCode::BAD_REQUEST, "slowModeSecs"), "{}", r.body);
    }
    let r = app.patch(&channel, &owner.access, json!({"slowModeSecs": 30})).await;
    assert_eq!((r.status, r.body["slowModeSecs"].as_i64()), (StatusCode::OK, Some(30)), "{}", r.body);
    assert_eq!(send(&app, cat, &g, text("slow one")).await.status, StatusCode::CREATED);
    let r = send(&app, cat, &g, text("slow two")).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "slow_mode"), "{}", r.body);
    let wait = r.body["error"]["details"]["retryAfterSecs"].as_i64().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    for _ in 0..2 {
        assert_eq!(send(&app, owner, &g, text("managers are not slowed")).await.status, StatusCode::CREATED);
    }
    // concurrent sends of one member: one goes through
    let (a, b) = tokio::join!(send(&app, dan, &g, text("race a")), send(&app, dan, &g, text("race b")));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 429], "{} {}", a.body, b.body);
    // once the interval has passed
    app.exec(&format!("UPDATE channel_member SET slow_sent_at = slow_sent_at - 31000 WHERE channel_id = {g}")).await;
    assert_eq!(send(&app, cat, &g, text("slow three")).await.status, StatusCode::CREATED);
    let r = app.patch(&channel, &owner.access, json!({"slowModeSecs": 0})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(send(&app, cat, &g, text("fast again")).await.status, StatusCode::CREATED);

    // groups only
    let chat = app.make_friends(owner, dan).await;
    let r = app.patch(&format!("/api/v1/channels/{chat}"), &owner.access, json!({"muteAll": true})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_a_group"), "{}", r.body);
    app.assert_consistent().await;
    app.stop().await;
}

async fn bans_remove_and_refuse_rejoining(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "b", 5).await;
    let (owner, bob, cat, dan, eve) = (&u[0], &u[1], &u[2], &u[3], &u[4]);
    let g = app.create_group(owner, "Banning", &[bob, cat]).await;
    let r =
        app.patch(&format!("/api/v1/channels/{g}/members/{}", bob.id), &owner.access, json!({"role": "admin"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ban = |user: &str| format!("/api/v1/channels/{g}/bans/{user}");
    let bans = format!("/api/v1/channels/{g}/bans");
    let call = |method: Method, path: String, who: &TestUser| {
        let (app, token) = (&app, who.access.clone());
        async move { app.call(method, &path, Some(&token), None).await }
    };

    for (by, target, status) in [
        (cat, &dan.id, StatusCode::FORBIDDEN),
        (bob, &owner.id, StatusCode::FORBIDDEN),
        (bob, &bob.id, StatusCode::FORBIDDEN),
        (owner, &"123456789".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let r = call(Method::POST, ban(target), by).await;
        assert_eq!(r.status, status, "{}", r.body);
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM channel_ban").await, 0);

    // a member banned is removed
    let r = call(Method::POST, ban(&cat.id), bob).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(app.get(&format!("/api/v1/channels/{g}"), &cat.access).await.status, StatusCode::FORBIDDEN);
    let list = app.get(&bans, &bob.access).await;
    assert_eq!(list.body["items"][0]["userId"], cat.id.as_str(), "{}", list.body);
    assert_eq!(list.body["items"][0]["bannedBy"], bob.id.as_str());
    assert_eq!(app.get(&bans, &cat.access).await.status, StatusCode::FORBIDDEN);
    let events = app.scalar("SELECT COUNT(*) FROM outbox").await;
    assert_eq!(call(Method::POST, ban(&cat.id), owner).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, events, "banning again changes nothing");

    // refused as a member and an applicant
    let members = format!("/api/v1/channels/{g}/members");
    let r = app.post(&members, Some(&owner.access), json!({"userIds": [cat.id]})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "banned_users"), "{}", r.body);
    assert_eq!(r.body["error"]["details"]["bannedUsers"], json!([cat.id]));
    let applications = format!("/api/v1/channels/{g}/applications");
    let r = app.post(&applications, Some(&cat.access), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "banned"), "{}", r.body);
    // users who are not members may be banned too, and a pending application is refused
    let r = app.post(&applications, Some(&eve.access), json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let pending = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(call(Method::POST, ban(&eve.id), bob).await.status, StatusCode::NO_CONTENT);
    let r = app.post(&format!("{applications}/{pending}/accept"), Some(&owner.access), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "banned_users"), "{}", r.body);
    assert_eq!(app.get(&bans, &owner.access).await.body["items"].as_array().unwrap().len(), 2);

    // unbanned: welcome again
    assert_eq!(call(Method::DELETE, ban(&cat.id), owner).await.status, StatusCode::NO_CONTENT);
    let r = app.post(&members, Some(&owner.access), json!({"userIds": [cat.id, dan.id]})).await;
    assert_eq!((r.status, r.body["memberCount"].as_i64()), (StatusCode::OK, Some(4)), "{}", r.body);
    let list = app.get(&bans, &owner.access).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "{}", list.body);
    let chat = app.make_friends(owner, dan).await;
    let r = call(Method::POST, format!("/api/v1/channels/{chat}/bans/{}", dan.id), owner).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_a_group"), "{}", r.body);
    app.assert_consistent().await;
    app.stop().await;
}

crate::both_backends!(mute_members_mute_all_and_slow_mode, bans_remove_and_refuse_rejoining);
