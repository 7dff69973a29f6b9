//! The IM core (docs/API.md): friends, contacts, groups, messages, read state, the
//! conversation list, profile propagation, the consistency checker. Every test ends with
//! the checker at 100%.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, spawn_app, spawn_app_with};

async fn friend_applications_and_accept(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;

    // clear 4xx for yourself, unknown users, bad input
    let r = app.post("/api/v1/contacts/applications", Some(&ann.access), json!({"contactId": ann.id})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "cannot_add_self"));
    let r = app.post("/api/v1/contacts/applications", Some(&ann.access), json!({"contactId": "999999999"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .post(
            "/api/v1/contacts/applications",
            Some(&ann.access),
            json!({"contactId": bob.id, "source": "carrier-pigeon"}),
        )
        .await;
    assert_eq!(r.field(), "source");

    // one pending application per pair: a repeat refreshes it
    let first = app
        .post("/api/v1/contacts/applications", Some(&ann.access), json!({"contactId": bob.id, "message": "hello"}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app
        .post(
            "/api/v1/contacts/applications",
            Some(&ann.access),
            json!({"contactId": bob.id, "message": "hello again", "source": "qrcode"}),
        )
        .await;
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["message"], "hello again");
    let incoming = app.get("/api/v1/contacts/applications?direction=incoming&status=pending", &bob.access).await;
    assert_eq!(incoming.body["items"].as_array().unwrap().len(), 1);
    let outgoing = app.get("/api/v1/contacts/applications?direction=outgoing", &ann.access).await;
    assert_eq!(outgoing.body["items"][0]["targetId"], bob.id.as_str());
    let app_id = first.body["id"].as_str().unwrap();

    // only the target reviews
    let r = app
        .call(Method::POST, &format!("/api/v1/contacts/applications/{app_id}/accept"), Some(&ann.access), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(Method::POST, &format!("/api/v1/contacts/applications/{app_id}/accept"), Some(&bob.access), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let channel = r.body["channelId"].as_str().unwrap().to_owned();
    let r = app
        .call(Method::POST, &format!("/api/v1/contacts/applications/{app_id}/accept"), Some(&bob.access), None)
        .await;
    assert_eq!(r.code(), "application_not_pending");

    // applying to an existing friend
    let r = app.post("/api/v1/contacts/applications", Some(&ann.access), json!({"contactId": bob.id})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "already_friends"));

    // both sides: a contact and a single conversation named after the peer
    let ann_contacts = app.contact_list(&ann, "").await;
    assert_eq!(ann_contacts.len(), 1);
    assert_eq!(ann_contacts[0]["contactId"], bob.id.as_str());
    assert_eq!(ann_contacts[0]["displayName"], "Bob");
    assert_eq!(ann_contacts[0]["source"], "qrcode");
    let conv = app.conversation(&bob, &channel).await.expect("conversation");
    assert_eq!(conv["type"], "single");
    assert_eq!(conv["name"], "Ann");
    assert_eq!(conv["peer"]["userId"], ann.id.as_str());
    assert_eq!(conv["unreadCount"], 0);

    // reject
    let r = app.post("/api/v1/contacts/applications", Some(&cat.access), json!({"contactId": bob.id})).await;
    let cid = r.body["id"].as_str().unwrap();
    let r =
        app.call(Method::POST, &format!("/api/v1/contacts/applications/{cid}/reject"), Some(&bob.access), None).await;
    assert_eq!(r.body["status"], "rejected");
    assert!(app.contact_list(&cat, "").await.is_empty());
    let r = app.get("/api/v1/contacts/applications?status=rejected", &bob.access).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    app.assert_consistent().await;
    app.stop().await;
}

async fn contacts_remark_block_delete_and_refriend(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let zed = app.sign_up("zed@example.com", "zed").await;
    let channel = app.make_friends(&ann, &bob).await;
    app.make_friends(&ann, &zed).await;

    // a remark becomes my conversation's name and my contact's display name
    let r = app
        .patch(
            &format!("/api/v1/contacts/{}", bob.id),
            &ann.access,
            json!({"remarkName": "Bobby", "groupName": "work", "tags": ["a", "b"], "isStarred": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["displayName"], "Bobby");
    assert_eq!(r.body["initial"], "B");
    assert_eq!(app.conversation(&ann, &channel).await.unwrap()["name"], "Bobby");
    assert_eq!(app.conversation(&bob, &channel).await.unwrap()["name"], "Ann", "the peer's view is unchanged");
    // starred first; filters by group and initial
    let list = app.contact_list(&ann, "").await;
    assert_eq!(list.iter().map(|c| c["displayName"].as_str().unwrap()).collect::<Vec<_>>(), ["Bobby", "zed"]);
    // paged one at a time by cursor: the same order
    let page1 = app.get("/api/v1/contacts?limit=1", &ann.access).await;
    assert_eq!(page1.body["items"][0]["displayName"], "Bobby");
    let cursor = page1.body["nextCursor"].as_str().expect("a second page").to_owned();
    let page2 = app.get(&format!("/api/v1/contacts?limit=1&cursor={cursor}"), &ann.access).await;
    assert_eq!(page2.body["items"][0]["displayName"], "zed");
    assert!(page2.body["nextCursor"].is_null());
    assert_eq!(app.contact_list(&ann, "?group=work").await.len(), 1);
    assert_eq!(app.contact_list(&ann, "?initial=Z").await[0]["displayName"], "zed");
    assert_eq!(app.get("/api/v1/contacts?initial=zz", &ann.access).await.field(), "initial");
    let r = app.patch(&format!("/api/v1/contacts/{}", bob.id), &ann.access, json!({"tags": ["x".repeat(40)]})).await;
    assert_eq!(r.field(), "tags[0]");
    let r = app.patch("/api/v1/contacts/123456", &ann.access, json!({"isStarred": true})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // blocking refuses the peer's messages to me, writing nothing
    app.send_text(&bob, &channel, "before block", Value::Null).await;
    app.patch(&format!("/api/v1/contacts/{}", bob.id), &ann.access, json!({"isBlocked": true})).await;
    let r = app
        .post(
            &format!("/api/v1/channels/{channel}/messages"),
            Some(&bob.access),
            json!({"type": "text", "content": {"text": "blocked?"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message").await, 1);
    // …but I can still write to them
    app.send_text(&ann, &channel, "I can still talk", Value::Null).await;
    app.patch(&format!("/api/v1/contacts/{}", bob.id), &ann.access, json!({"isBlocked": false})).await;

    // delete: gone from my list, my conversation closed; the peer keeps me but cannot send
    let r = app.call(Method::DELETE, &format!("/api/v1/contacts/{}", bob.id), Some(&ann.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.contact_list(&ann, "").await.len(), 1);
    assert!(app.conversation(&ann, &channel).await.is_none());
    assert_eq!(app.contact_list(&bob, "").await.len(), 1);
    let r = app
        .post(
            &format!("/api/v1/channels/{channel}/messages"),
            Some(&bob.access),
            json!({"type": "text", "content": {"text": "hey?"}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_friends"));
    app.assert_consistent().await;

    // friends again: the same channel, the conversation reopened
    let again = app.make_friends(&ann, &bob).await;
    assert_eq!(again, channel);
    let conv = app.conversation(&ann, &channel).await.expect("reopened");
    assert_eq!(conv["name"], "Bob", "the old remark went with the deleted friendship");
    app.assert_consistent().await;
    app.stop().await;
}

async fn group_lifecycle(db: Db) {
    let app = spawn_app_with(db, |c| c.limits.max_group_members = 6).await;
    let admin = app.admin().await;
    let owner = app.sign_up("own@example.com", "Owner").await;
    let users = app.many_users(&admin, "g", 6).await;
    let (a, b, c, d) = (&users[0], &users[1], &users[2], &users[3]);
    let outsider = &users[5];

    // unknown, duplicate and deleted member ids: 422 naming them, nothing written
    let r =
        app.post("/api/v1/channels/groups", Some(&owner.access), json!({"name": "G", "memberIds": [a.id, a.id]})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "duplicate_members"));
    assert!(r.body["error"]["message"].as_str().unwrap().contains(&a.id));
    app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", users[4].id), Some(&admin.access), None).await;
    let r = app
        .post(
            "/api/v1/channels/groups",
            Some(&owner.access),
            json!({"name": "G", "memberIds": [a.id, "424242", users[4].id]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_members"));
    assert_eq!(r.body["error"]["details"]["unknown"], json!(["424242"]));
    assert_eq!(r.body["error"]["details"]["inactive"], json!([users[4].id]));
    let r = app.post("/api/v1/channels/groups", Some(&owner.access), json!({"name": "", "memberIds": [a.id]})).await;
    assert_eq!(r.field(), "name");
    let r = app
        .post(
            "/api/v1/channels/groups",
            Some(&owner.access),
            json!({"name": "Big", "memberIds": users.iter().map(|u| &u.id).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(r.field(), "memberIds", "over the configured maximum");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM channel").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'channel.created'").await, 0);

    let r = app
        .post(
            "/api/v1/channels/groups",
            Some(&owner.access),
            json!({"name": "Team", "avatar": "https://x/y.png", "memberIds": [a.id, b.id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["memberCount"], 3);
    let g = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'channel.created'").await, 1);
    let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"channel_creation_total{status="success"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"channel_creation_total{status="failure"} 4"#), "{metrics}");
    assert!(metrics.contains("channel_creation_duration_seconds_bucket"), "{metrics}");
    assert!(
        metrics.contains(r#"command_errors_total{command="channel.create",code="invalid_members"} 1"#),
        "{metrics}"
    );
    for u in [&owner, a, b] {
        let conv = app.conversation(u, &g).await.expect("a view per member");
        assert_eq!(conv["name"], "Team");
        assert_eq!(conv["type"], "group");
    }
    // members only
    assert_eq!(app.get(&format!("/api/v1/channels/{g}"), &outsider.access).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&format!("/api/v1/channels/{g}"), &a.access).await.body["name"], "Team");
    assert_eq!(app.get("/api/v1/channels/777", &a.access).await.status, StatusCode::NOT_FOUND);

    // rename: plain members may not; the owner may, every view follows
    let r = app.patch(&format!("/api/v1/channels/{g}"), &a.access, json!({"name": "Mine"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.patch(&format!("/api/v1/channels/{g}"), &owner.access, json!({"name": "Team 2"})).await;
    assert_eq!(r.body["channelInfoVer"], 2);
    assert_eq!(app.conversation(b, &g).await.unwrap()["name"], "Team 2");

    // history from the join on
    app.send_text(a, &g, "before c joined", Value::Null).await;
    let r = app.post(&format!("/api/v1/channels/{g}/members"), Some(&a.access), json!({"userIds": [c.id]})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "plain members do not add");
    let r = app.post(&format!("/api/v1/channels/{g}/members"), Some(&owner.access), json!({"userIds": [c.id]})).await;
    assert_eq!(r.body["memberCount"], 4, "{}", r.body);
    let r = app.post(&format!("/api/v1/channels/{g}/members"), Some(&owner.access), json!({"userIds": [c.id]})).await;
    assert_eq!(r.code(), "already_members");
    let conv = app.conversation(c, &g).await.unwrap();
    assert_eq!(conv["unreadCount"], 0);
    assert!(conv["lastMessage"].is_null());
    let hist = app.get(&format!("/api/v1/channels/{g}/messages"), &c.access).await;
    assert_eq!(hist.body["items"].as_array().unwrap().len(), 0);
    app.send_text(b, &g, "after c joined", Value::Null).await;
    let hist = app.get(&format!("/api/v1/channels/{g}/messages"), &c.access).await;
    assert_eq!(hist.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.conversation(c, &g).await.unwrap()["unreadCount"], 1);

    // remove: the member's conversation is closed and they cannot send
    let r =
        app.call(Method::DELETE, &format!("/api/v1/channels/{g}/members/{}", c.id), Some(&owner.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(app.conversation(c, &g).await.is_none());
    let r = app
        .post(
            &format!("/api/v1/channels/{g}/messages"),
            Some(&c.access),
            json!({"type": "text", "content": {"text": "x"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // join requests
    let r =
        app.post(&format!("/api/v1/channels/{g}/applications"), Some(&d.access), json!({"message": "let me in"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let jid = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/api/v1/channels/{g}/applications"), &a.access).await.status, StatusCode::FORBIDDEN);
    let list = app.get(&format!("/api/v1/channels/{g}/applications?status=pending"), &owner.access).await;
    assert_eq!(list.body["items"][0]["applicantId"], d.id.as_str());
    let r = app
        .call(Method::POST, &format!("/api/v1/channels/{g}/applications/{jid}/accept"), Some(&owner.access), None)
        .await;
    assert_eq!(r.body["status"], "approved", "{}", r.body);
    assert!(app.conversation(d, &g).await.is_some());

    // roles and leaving: an owner without admins must transfer first
    let r = app.call(Method::POST, &format!("/api/v1/channels/{g}/leave"), Some(&owner.access), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "owner_must_transfer"));
    let r = app.patch(&format!("/api/v1/channels/{g}/members/{}", b.id), &a.access, json!({"role": "admin"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.patch(&format!("/api/v1/channels/{g}/members/{}", b.id), &owner.access, json!({"role": "admin"})).await;
    assert_eq!(r.body["role"], "admin");
    let r = app
        .patch(&format!("/api/v1/channels/{g}/members/{}", a.id), &a.access, json!({"groupNickname": "A-team"}))
        .await;
    assert_eq!(r.body["groupNickname"], "A-team");
    app.send_text(a, &g, "nick", Value::Null).await;
    assert_eq!(app.conversation(b, &g).await.unwrap()["lastMessage"]["senderName"], "A-team");
    let r = app.call(Method::POST, &format!("/api/v1/channels/{g}/leave"), Some(&owner.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let members = app.get(&format!("/api/v1/channels/{g}/members"), &b.access).await;
    let roles: Vec<(String, String)> = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["userId"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    assert!(roles.contains(&(b.id.clone(), "owner".into())), "ownership passed to the oldest admin: {roles:?}");
    assert!(!roles.iter().any(|(u, _)| *u == owner.id));

    // the new owner transfers ownership, then dismisses
    let r = app.patch(&format!("/api/v1/channels/{g}/members/{}", a.id), &b.access, json!({"role": "owner"})).await;
    assert_eq!(r.body["role"], "owner");
    let r = app.call(Method::POST, &format!("/api/v1/channels/{g}/dismiss"), Some(&b.access), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "only the owner dismisses");
    let r = app.call(Method::POST, &format!("/api/v1/channels/{g}/dismiss"), Some(&a.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for u in [a, b, d] {
        assert!(app.conversation(u, &g).await.is_none(), "dismissed: conversations closed");
    }
    let r = app
        .post(
            &format!("/api/v1/channels/{g}/messages"),
            Some(&a.access),
            json!({"type": "text", "content": {"text": "x"}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "channel_archived"));
    app.assert_consistent().await;
    app.stop().await;
}

async fn messages_unread_mentions_and_settings(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "m", 4).await;
    let (a, b, c, outsider) = (&u[0], &u[1], &u[2], &u[3]);
    let g = app.create_group(a, "Chat", &[b, c]).await;

    // validation and authorization
    for (field, body) in [
        ("type", json!({"type": "fax", "content": {}})),
        ("content.text", json!({"type": "text", "content": {"text": "  "}})),
        // NUL cannot be stored by PostgreSQL and is refused on both backends alike
        ("content.text", json!({"type": "text", "content": {"text": "a\u{0}b"}})),
        ("content.text", json!({"type": "text", "content": {"text": "bell\u{7}"}})),
        ("content.caption", json!({"type": "image", "content": {"url": "https://x/p.png", "caption": "\u{0}"}})),
        ("content", json!({"type": "image", "content": "not an object"})),
        ("mentions", json!({"type": "text", "content": {"text": "x"}, "mentions": 5})),
        ("clientMsgId", json!({"type": "text", "content": {"text": "x"}, "clientMsgId": ""})),
    ] {
        let r = app.post(&format!("/api/v1/channels/{g}/messages"), Some(&a.access), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.field(), field);
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message").await, 0, "nothing refused was written");
    // names others see need a visible character and no bidirectional controls
    for name in ["\u{200B}", "\u{FEFF}", "evil\u{202E}gnp.exe"] {
        let r = app.post("/api/v1/channels/groups", Some(&a.access), json!({"name": name, "memberIds": [b.id]})).await;
        assert_eq!((r.status, r.field()), (StatusCode::BAD_REQUEST, "name"), "{name:?}: {}", r.body);
        let r = app.patch("/api/v1/users/me", &a.access, json!({"nickname": name})).await;
        assert_eq!((r.status, r.field()), (StatusCode::BAD_REQUEST, "nickname"), "{name:?}: {}", r.body);
    }
    let r = app
        .post(
            &format!("/api/v1/channels/{g}/messages"),
            Some(&outsider.access),
            json!({"type": "text", "content": {"text": "x"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&format!("/api/v1/channels/{g}/messages"), &outsider.access).await.status,
        StatusCode::FORBIDDEN
    );

    // seqs, idempotency
    let body = json!({"type": "text", "content": {"text": "hello @b"}, "mentions": [b.id], "clientMsgId": "c-1"});
    let first = app.post(&format!("/api/v1/channels/{g}/messages"), Some(&a.access), body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["seq"], 1);
    let retry = app.post(&format!("/api/v1/channels/{g}/messages"), Some(&a.access), body).await;
    assert_eq!(retry.body, first.body, "a retry answers the same");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message").await, 1);
    app.send_text(a, &g, "everyone!", json!("all")).await;
    let img = app
        .post(
            &format!("/api/v1/channels/{g}/messages"),
            Some(&b.access),
            json!({"type": "image", "content": {"url": "https://x/p.png"}}),
        )
        .await;
    assert_eq!(img.body["seq"], 3);

    // unread and mentions are exact; my own messages never count for me
    let cb = app.conversation(b, &g).await.unwrap();
    assert_eq!(
        (cb["unreadCount"].as_i64(), cb["mentionCount"].as_i64()),
        (Some(0), Some(0)),
        "b sent seq 3: read up to it"
    );
    let cc = app.conversation(c, &g).await.unwrap();
    assert_eq!((cc["unreadCount"].as_i64(), cc["mentionCount"].as_i64()), (Some(3), Some(1)));
    assert_eq!(cc["lastMessage"]["content"], "[image]");
    assert_eq!(cc["lastMessage"]["seq"], 3);
    let ca = app.conversation(a, &g).await.unwrap();
    assert_eq!((ca["unreadCount"].as_i64(), ca["mentionCount"].as_i64()), (Some(1), Some(0)));

    // history pages
    let h = app.get(&format!("/api/v1/channels/{g}/messages?limit=2"), &c.access).await;
    let seqs: Vec<i64> = h.body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [3, 2]);
    assert_eq!(h.body["hasMore"], true);
    let h = app.get(&format!("/api/v1/channels/{g}/messages?afterSeq=1"), &c.access).await;
    let seqs: Vec<i64> = h.body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(h.body["items"][0]["mentionAll"], true);

    // read: exact for the new position, never backwards, clamped to the last message
    let r = app.post(&format!("/api/v1/channels/{g}/read"), Some(&c.access), json!({"seq": 1})).await;
    assert_eq!((r.body["unreadCount"].as_i64(), r.body["mentionCount"].as_i64()), (Some(2), Some(1)), "{}", r.body);
    let r = app.post(&format!("/api/v1/channels/{g}/read"), Some(&c.access), json!({"seq": 0})).await;
    assert_eq!(r.body["unreadCount"], 2, "never moves backwards");
    let r = app.post(&format!("/api/v1/channels/{g}/read"), Some(&c.access), json!({"seq": 99})).await;
    assert_eq!((r.body["unreadCount"].as_i64(), r.body["mentionCount"].as_i64()), (Some(0), Some(0)));
    assert_eq!(
        app.post(&format!("/api/v1/channels/{g}/read"), Some(&c.access), json!({"seq": -1})).await.field(),
        "seq"
    );

    // hide, close, pin, mute
    let r = app.patch(&format!("/api/v1/conversations/{g}"), &c.access, json!({"isHidden": true})).await;
    assert_eq!(r.body["isHidden"], true);
    assert!(app.conversation(c, &g).await.is_none());
    app.send_text(a, &g, "back?", Value::Null).await;
    assert!(app.conversation(c, &g).await.is_some(), "a new message unhides");
    let r = app.call(Method::DELETE, &format!("/api/v1/conversations/{g}"), Some(&c.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(app.conversation(c, &g).await.is_none());
    app.send_text(b, &g, "reopen", Value::Null).await;
    let conv = app.conversation(c, &g).await.expect("a new message reopens");
    assert_eq!(conv["unreadCount"], 2);

    let g2 = app.create_group(a, "Second", &[c]).await;
    app.send_text(a, &g2, "newer", Value::Null).await;
    let (list, total) = app.conversation_list(c).await;
    assert_eq!(list[0]["channelId"], g2.as_str(), "newest first");
    assert_eq!(total, 3);
    app.patch(&format!("/api/v1/conversations/{g}"), &c.access, json!({"isPinned": true})).await;
    let (list, _) = app.conversation_list(c).await;
    assert_eq!(list[0]["channelId"], g.as_str(), "pinned first");
    app.patch(&format!("/api/v1/conversations/{g}"), &c.access, json!({"isMuted": true})).await;
    let (_, total) = app.conversation_list(c).await;
    assert_eq!(total, 1, "muted conversations are left out of the total");
    let r = app.get("/api/v1/conversations?unreadOnly=true&type=group", &c.access).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.patch(&format!("/api/v1/conversations/{g}"), &outsider.access, json!({"isPinned": true})).await.status,
        StatusCode::NOT_FOUND
    );
    // an empty patch: the conversation as it is, nothing written; an outsider still gets 404
    let before = app.get("/api/v1/conversations", &c.access).await.body;
    for empty in [json!({}), json!({"isPinned": null, "isMuted": null, "isHidden": null})] {
        let r = app.patch(&format!("/api/v1/conversations/{g}"), &c.access, empty.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{empty}");
        assert_eq!(r.body["channelId"], g.as_str(), "{empty}");
        assert_eq!(
            app.patch(&format!("/api/v1/conversations/{g}"), &outsider.access, empty).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(app.get("/api/v1/conversations", &c.access).await.body, before);

    // numbers are stored and read back exactly, through the log too (PostgreSQL writes
    // f64::MAX back as 309 digits)
    let big = json!({"n": [f64::MAX, -1.7976931348623155e308, 1e308, 5e-324, 0.1, u64::MAX, i64::MIN]});
    let r = app
        .post(&format!("/api/v1/channels/{g}/messages"), Some(&a.access), json!({"type": "custom", "content": big}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.get(&format!("/api/v1/channels/{g}/messages?limit=1"), &b.access).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"][0]["content"], big);
    app.assert_consistent().await;
    app.stop().await;
}

async fn profile_changes_reach_every_view(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let ab = app.make_friends(&ann, &bob).await;
    let ac = app.make_friends(&ann, &cat).await;
    app.patch(&format!("/api/v1/contacts/{}", ann.id), &cat.access, json!({"remarkName": "Annie"})).await;

    let r =
        app.patch("/api/v1/users/me", &ann.access, json!({"nickname": "Anna", "avatar": "https://cdn/a2.png"})).await;
    assert_eq!(r.body["profileVer"], 2);
    let conv = app.conversation(&bob, &ab).await.unwrap();
    assert_eq!(
        (conv["name"].as_str(), conv["avatar"].as_str(), conv["infoVer"].as_i64()),
        (Some("Anna"), Some("https://cdn/a2.png"), Some(2))
    );
    assert_eq!(conv["peer"]["nickname"], "Anna");
    let conv = app.conversation(&cat, &ac).await.unwrap();
    assert_eq!(conv["name"], "Annie", "a remark wins over the nickname");
    assert_eq!(conv["peer"]["nickname"], "Anna");
    let contact = &app.contact_list(&bob, "").await[0];
    assert_eq!((contact["nickname"].as_str(), contact["infoVer"].as_i64()), (Some("Anna"), Some(2)));
    app.assert_consistent().await;
    app.stop().await;
}

/// Users become friends, create a group, exchange messages with mentions; one renames,
/// one sets a remark, one pins/mutes/hides, one reads: every list equals what we expect.
async fn scenario(db: Db) {
    let app = spawn_app(db).await;
    run_scenario(&app).await;
    app.assert_consistent().await;
    app.stop().await;
}

/// The same scenario with `HERMET_SYNC_MODE=async`: commands write the outbox only and the
/// consumers of the embedded log update the read models. Read-your-writes makes every
/// assertion hold as in dual-write; once drained the checker says 100%. Then the read
/// models are wiped and both consumers replay the log from the start: identical again.
async fn scenario_in_async_mode_and_replay(db: Db) {
    let (url, _dir) = crate::helpers::fresh_database(db).await;
    let async_mode = |c: &mut hermet::config::Config| {
        c.database_url = url.clone();
        c.sync_mode = hermet::config::SyncModeConfig::Async;
    };
    let app = spawn_app_with(db, async_mode).await;
    run_scenario(&app).await;
    wait_drained(&app).await;
    app.assert_consistent().await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM consumer_offset").await, 3, "two projectors and the notifier");
    let before = app.conversation_list(&app.sign_in_user("bob@example.com").await).await;
    app.stop().await;

    // wipe the read models, then replay both consumers from the earliest event while the
    // server (and its consumers) run: they notice the moved offsets and re-project
    let app = spawn_app_with(db, async_mode).await;
    app.exec(
        "DELETE FROM user_conversation_view; DELETE FROM user_contact_view;
         DELETE FROM conversation_reverse_index; DELETE FROM contact_reverse_index;",
    )
    .await;
    let bob = app.sign_in_user("bob@example.com").await;
    assert!(app.conversation_list(&bob).await.0.is_empty(), "wiped");
    let mut config = crate::helpers::test_config(String::new());
    async_mode(&mut config);
    for consumer in ["conversation-view-updater", "contact-view-updater"] {
        let at = hermet::commands::replay(&config, consumer, hermet_app::pipeline::ReplayFrom::Earliest).await.unwrap();
        assert_eq!(at, hermet::commands::ReplayedTo::Log((0, 0)));
    }
    wait_drained(&app).await;
    app.assert_consistent().await;
    let after = app.conversation_list(&app.sign_in_user("bob@example.com").await).await;
    assert_eq!(before, after, "the replayed read models equal the originals");
    app.stop().await;
}

pub(crate) async fn wait_drained(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let caught_up = app
            .scalar(
                "SELECT COUNT(*) FROM consumer_offset o
                 WHERE NOT EXISTS (SELECT 1 FROM outbox e WHERE (e.tx_id, e.position) > (o.tx_id, o.position))",
            )
            .await;
        if caught_up == 3 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the consumers did not drain");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub(crate) async fn run_scenario(app: &TestApp) {
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let ab = app.make_friends(&ann, &bob).await;
    let bc = app.make_friends(&bob, &cat).await;
    let g = app.create_group(&ann, "Trio", &[&bob, &cat]).await;

    app.send_text(&ann, &ab, "hi bob", Value::Null).await;
    app.send_text(&bob, &ab, "hi ann", Value::Null).await;
    app.send_text(&ann, &g, "@bob @cat hello", json!([bob.id, cat.id])).await;
    app.send_text(&bob, &g, "@all meeting", json!("all")).await;
    app.send_text(&cat, &bc, "psst bob", Value::Null).await;
    app.patch("/api/v1/users/me", &cat.access, json!({"nickname": "Kat"})).await; // rename
    app.patch(&format!("/api/v1/contacts/{}", ann.id), &bob.access, json!({"remarkName": "Boss"})).await; // remark
    app.patch(&format!("/api/v1/conversations/{bc}"), &bob.access, json!({"isPinned": true, "isMuted": true})).await; // pin/mute
    app.patch(&format!("/api/v1/conversations/{ab}"), &ann.access, json!({"isHidden": true})).await; // hide
    app.post(&format!("/api/v1/channels/{g}/read"), Some(&cat.access), json!({"seq": 1})).await; // read

    let view = |c: &Value| {
        (
            c["channelId"].as_str().unwrap().to_owned(),
            c["name"].as_str().unwrap().to_owned(),
            c["lastMessage"]["content"].as_str().unwrap_or("").to_owned(),
            c["lastMessage"]["senderName"].as_str().unwrap_or("").to_owned(),
            c["unreadCount"].as_i64().unwrap(),
            c["mentionCount"].as_i64().unwrap(),
            c["isPinned"].as_bool().unwrap(),
            c["isMuted"].as_bool().unwrap(),
        )
    };
    let s = |x: &str| x.to_owned();

    let (ann_list, ann_total) = app.conversation_list(&ann).await;
    assert_eq!(
        ann_list.iter().map(view).collect::<Vec<_>>(),
        [(g.clone(), s("Trio"), s("@all meeting"), s("Bob"), 1, 1, false, false)],
        "ann hid her chat with bob"
    );
    assert_eq!(ann_total, 1);

    let (bob_list, bob_total) = app.conversation_list(&bob).await;
    assert_eq!(
        bob_list.iter().map(view).collect::<Vec<_>>(),
        [
            (bc.clone(), s("Kat"), s("psst bob"), s("Cat"), 1, 0, true, true),
            (g.clone(), s("Trio"), s("@all meeting"), s("Bob"), 0, 0, false, false),
            (ab.clone(), s("Boss"), s("hi ann"), s("Bob"), 0, 0, false, false),
        ]
    );
    assert_eq!(bob_total, 0, "the only unread conversation is muted");

    let (cat_list, cat_total) = app.conversation_list(&cat).await;
    assert_eq!(
        cat_list.iter().map(view).collect::<Vec<_>>(),
        [
            (bc.clone(), s("Bob"), s("psst bob"), s("Cat"), 0, 0, false, false),
            (g.clone(), s("Trio"), s("@all meeting"), s("Bob"), 1, 1, false, false),
        ]
    );
    assert_eq!(cat_total, 1);

    let contacts = |list: Vec<Value>| {
        list.iter()
            .map(|c| {
                (
                    c["contactId"].as_str().unwrap().to_owned(),
                    c["displayName"].as_str().unwrap().to_owned(),
                    c["nickname"].as_str().unwrap().to_owned(),
                    c["initial"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(contacts(app.contact_list(&ann, "").await), [(bob.id.clone(), s("Bob"), s("Bob"), s("B"))]);
    assert_eq!(
        contacts(app.contact_list(&bob, "").await),
        [(ann.id.clone(), s("Boss"), s("Ann"), s("B")), (cat.id.clone(), s("Kat"), s("Kat"), s("K"))]
    );
    assert_eq!(contacts(app.contact_list(&cat, "").await), [(bob.id.clone(), s("Bob"), s("Bob"), s("B"))]);
}

/// Many clients send to one group at once: seqs are gap-free and every unread count is
/// exact.
async fn concurrent_sends_keep_seqs_and_unread_exact(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let users = app.many_users(&admin, "c", 8).await;
    let g = app.create_group(&users[0], "Busy", &users[1..].iter().collect::<Vec<_>>()).await;
    let per_user = 5;
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        for k in 0..per_user {
            let client = app.client.clone();
            let url = format!("{}/api/v1/channels/{g}/messages", app.address);
            let token = u.access.clone();
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"type": "text", "content": {"text": format!("{i}/{k}")}, "clientMsgId": format!("{i}-{k}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                let body: Value = r.json().await.unwrap();
                (i, body["seq"].as_i64().unwrap())
            }));
        }
    }
    let mut sent: Vec<(usize, i64)> = Vec::new();
    for t in tasks {
        sent.push(t.await.unwrap());
    }
    let mut seqs: Vec<i64> = sent.iter().map(|(_, s)| *s).collect();
    seqs.sort_unstable();
    let total = (users.len() * per_user) as i64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "distinct, consecutive, gap-free");
    for (i, u) in users.iter().enumerate() {
        let last_own = sent.iter().filter(|(who, _)| *who == i).map(|(_, s)| *s).max().unwrap();
        let expected = sent.iter().filter(|(who, s)| *who != i && *s > last_own).count() as i64;
        let conv = app.conversation(u, &g).await.unwrap();
        assert_eq!(conv["unreadCount"].as_i64().unwrap(), expected, "user {i}");
        assert_eq!(conv["lastMessage"]["seq"].as_i64().unwrap(), total);
    }
    app.assert_consistent().await;
    app.stop().await;
}

/// Member changes, sends, reads and renames racing on one group never leave a view
/// inconsistent.
async fn concurrent_member_changes_sends_and_reads(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let users = app.many_users(&admin, "x", 12).await;
    let owner = &users[0];
    let g = app.create_group(owner, "Churn", &users[1..6].iter().collect::<Vec<_>>()).await;
    let mut tasks = Vec::new();
    let spawn_call = |method: Method, path: String, token: String, body: Value| {
        let client = app.client.clone();
        let url = format!("{}{path}", app.address);
        tokio::spawn(async move {
            let r = client.request(method, url).bearer_auth(token).json(&body).send().await.unwrap();
            r.status()
        })
    };
    for i in 0..6 {
        // members 1..=5 send; users 6..=11 are added one by one while 1 and 2 are removed
        tasks.push(spawn_call(
            Method::POST,
            format!("/api/v1/channels/{g}/messages"),
            users[1 + i % 5].access.clone(),
            json!({"type": "text", "content": {"text": format!("m{i}")}}),
        ));
        tasks.push(spawn_call(
            Method::POST,
            format!("/api/v1/channels/{g}/members"),
            owner.access.clone(),
            json!({"userIds": [users[6 + i].id]}),
        ));
        tasks.push(spawn_call(
            Method::POST,
            format!("/api/v1/channels/{g}/read"),
            users[3 + i % 3].access.clone(),
            json!({"seq": i}),
        ));
        tasks.push(spawn_call(
            Method::PATCH,
            "/api/v1/users/me".into(),
            users[4].access.clone(),
            json!({"nickname": format!("renamed {i}")}),
        ));
    }
    tasks.push(spawn_call(
        Method::DELETE,
        format!("/api/v1/channels/{g}/members/{}", users[1].id),
        owner.access.clone(),
        Value::Null,
    ));
    tasks.push(spawn_call(Method::POST, format!("/api/v1/channels/{g}/leave"), users[2].access.clone(), Value::Null));
    for t in tasks {
        let status = t.await.unwrap();
        // a send by a member removed a moment earlier is refused; nothing else may fail
        assert!(status.is_success() || status == StatusCode::FORBIDDEN, "{status}");
    }
    let r = app.get(&format!("/api/v1/channels/{g}"), &owner.access).await;
    assert_eq!(r.body["memberCount"], 10, "{}", r.body);
    app.assert_consistent().await;
    app.stop().await;
}

/// The checker finds missing, extra and mismatched rows field by field, and repairs them.
async fn checker_finds_and_repairs_drift(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let ab = app.make_friends(&ann, &bob).await;
    app.send_text(&ann, &ab, "one", Value::Null).await;
    app.assert_consistent().await;

    corrupt(&app, &ann, &bob, &ab).await;
    let report = app.consistency(false).await;
    let kinds: Vec<(&str, &str)> = report.findings.iter().map(|f| (f.model, f.kind)).collect();
    assert!(kinds.contains(&("conversation", "mismatch")), "{kinds:?}");
    assert!(kinds.contains(&("contact", "missing")), "{kinds:?}");
    assert!(kinds.contains(&("contact_reverse_index", "extra")), "{kinds:?}");
    let mismatch = report.findings.iter().find(|f| f.kind == "mismatch").unwrap();
    assert_eq!(mismatch.fields[0].0, "unread_count");
    assert_eq!((mismatch.fields[0].1.as_str(), mismatch.fields[0].2.as_str()), ("1", "99"));
    assert!(report.rate() < 100.0);

    let repaired = app.consistency(true).await;
    assert_eq!(repaired.repaired as usize, repaired.findings.len());
    app.assert_consistent().await;
    assert_eq!(app.conversation(&bob, &ab).await.unwrap()["unreadCount"], 1);

    // rebuild from scratch gives the same rows
    corrupt(&app, &ann, &bob, &ab).await;
    let config = crate::helpers::test_config(app.database_url.clone());
    let n = hermet::commands::rebuild_views(&config, None).await.unwrap();
    assert_eq!(n, 2);
    app.assert_consistent().await;
    app.stop().await;
}

async fn corrupt(app: &TestApp, ann: &crate::helpers::TestUser, bob: &crate::helpers::TestUser, ab: &str) {
    app.exec(&format!(
        "UPDATE user_conversation_view SET unread_count = 99 WHERE user_id = {} AND channel_id = {ab}",
        bob.id
    ))
    .await;
    app.exec(&format!("DELETE FROM user_contact_view WHERE user_id = {}", ann.id)).await;
    app.exec(&format!(
        "INSERT INTO contact_reverse_index (contact_user_id, owner_user_id, created_at) VALUES (12345, {}, 0)",
        bob.id
    ))
    .await;
}

/// A group of 2,000 members in one request and one transaction.
async fn large_group_in_one_request(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let users = app.many_users(&admin, "big", 1_999).await;
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let r = app.post("/api/v1/channels/groups", Some(&admin.access), json!({"name": "Big", "memberIds": ids})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["memberCount"], 2_000);
    let g = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM user_conversation_view WHERE channel_id = {g}")).await, 2_000);
    app.send_text(&users[10], &g, "hello all", json!("all")).await;
    let conv = app.conversation(&users[1_500], &g).await.unwrap();
    assert_eq!((conv["unreadCount"].as_i64(), conv["mentionCount"].as_i64()), (Some(1), Some(1)));
    app.assert_consistent().await;
    app.stop().await;
}

/// Recall (docs/API.md "Recall"): the sender within the window, a group's owner or admin
/// at any time, nobody else. The message stays at its seq as a recall notice, its content
/// is gone from the database (the message row and its event in the log), previews follow,
/// unread is unchanged and a recalled mention stops counting; members online hear of it.
async fn recall_erases_content_and_keeps_counts_exact(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "r", 5).await;
    let (owner, bob, cat, outsider, dan) = (&u[0], &u[1], &u[2], &u[3], &u[4]);
    let g = app.create_group(owner, "Recall", &[bob, cat]).await;
    let recall = |channel: &str, id: &str| format!("/api/v1/channels/{channel}/messages/{id}/recall");
    let history = |channel: &str| format!("/api/v1/channels/{channel}/messages");
    let (mut cat_socket, _) = crate::realtime::Client::connect(&app, cat).await;

    app.send_text(owner, &g, "first", Value::Null).await;
    let r = app
        .post(
            &history(&g),
            Some(&bob.access),
            json!({"type": "text", "content": {"text": "secret for @cat"}, "mentions": [cat.id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let secret = r.body["messageId"].as_str().unwrap().to_owned();
    let before = app.conversation(cat, &g).await.unwrap();
    assert_eq!((before["unreadCount"].as_i64(), before["mentionCount"].as_i64()), (Some(2), Some(1)));
    assert_eq!(before["lastMessage"]["content"], "secret for @cat");

    // nobody but the sender or a manager; not outsiders; not a message of another channel
    let r = app.post(&recall(&g, &secret), Some(&cat.access), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{}", r.body);
    let r = app.post(&recall(&g, &secret), Some(&outsider.access), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app.post(&recall(&g, "123456789"), Some(&bob.access), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{}", r.body);
    let r = app.post(&recall(&g, "not-an-id"), Some(&bob.access), json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let chat = app.make_friends(owner, dan).await;
    let r = app.post(&recall(&chat, &secret), Some(&owner.access), json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the message is not in that channel: {}", r.body);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message WHERE recalled_at IS NOT NULL").await, 0);

    // the sender recalls it
    let r = app.post(&recall(&g, &secret), Some(&bob.access), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((r.body["type"].as_str(), r.body["content"].clone()), (Some("recalled"), json!({})));
    assert_eq!((r.body["seq"].as_i64(), r.body["recalledBy"].as_str()), (Some(2), Some(bob.id.as_str())));
    assert!(r.body["recalledAt"].as_i64().is_some(), "{}", r.body);
    assert_eq!(r.body["mentions"], json!([]));
    for table in ["message", "outbox"] {
        let column = if table == "message" { "content" } else { "payload" };
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE '%secret for%'");
        assert_eq!(app.scalar(&sql).await, 0, "the content is gone from {table}");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message_mention").await, 0);
    let after = app.conversation(cat, &g).await.unwrap();
    assert_eq!(after["lastMessage"]["type"], "recalled");
    assert_eq!(after["lastMessage"]["content"], "");
    assert_eq!(after["lastMessage"]["seq"], 2);
    assert_eq!(
        (after["unreadCount"].as_i64(), after["mentionCount"].as_i64()),
        (Some(2), Some(0)),
        "the notice is still an unread item; the recalled mention no longer counts"
    );
    let page = app.get(&format!("{}?afterSeq=0", history(&g)), &cat.access).await;
    let items = page.body["items"].as_array().unwrap();
    assert_eq!((items.len(), items[1]["type"].as_str()), (2, Some("recalled")), "{}", page.body);
    assert_eq!(items[1]["content"], json!({}));
    assert_eq!(items[0]["type"], "text");
    // members online hear of it, then get their changed row
    let frame = cat_socket.next_of("message.recalled").await;
    assert_eq!(frame["data"]["messageId"], secret.as_str());
    assert_eq!(frame["data"]["recalledBy"], bob.id.as_str());
    loop {
        let row = cat_socket.next_of("conversation.updated").await;
        if row["data"]["channelId"] == g.as_str() && row["data"]["lastMessage"]["type"] == "recalled" {
            assert_eq!(row["data"]["mentionCount"], 0);
            break;
        }
    }
    // recalling again answers the same and records nothing
    let events = app.scalar("SELECT COUNT(*) FROM outbox").await;
    let again = app.post(&recall(&g, &secret), Some(&bob.access), json!({})).await;
    assert_eq!((again.status, again.body["recalledAt"].clone()), (StatusCode::OK, r.body["recalledAt"].clone()));
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, events);

    // past the sender's window (2 minutes by default): the sender may not, the owner may
    let seq = app.send_text(cat, &g, "old news", Value::Null).await;
    let old = app.get(&format!("{}?afterSeq={}", history(&g), seq - 1), &cat.access).await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.exec(&format!("UPDATE message SET created_at = created_at - 121000 WHERE id = {old}")).await;
    let r = app.post(&recall(&g, &old), Some(&cat.access), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "recall_window_passed"), "{}", r.body);
    let r = app.post(&recall(&g, &old), Some(&owner.access), json!({})).await;
    assert_eq!((r.status, r.body["recalledBy"].as_str()), (StatusCode::OK, Some(owner.id.as_str())), "{}", r.body);

    // one-to-one: only the sender
    let seq = app.send_text(owner, &chat, "oops", Value::Null).await;
    let id = app.get(&format!("{}?afterSeq={}", history(&chat), seq - 1), &dan.access).await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.post(&recall(&chat, &id), Some(&dan.access), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app.post(&recall(&chat, &id), Some(&owner.access), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let row = app.conversation(dan, &chat).await.unwrap();
    assert_eq!((row["lastMessage"]["type"].as_str(), row["unreadCount"].as_i64()), (Some("recalled"), Some(1)));
    // a message cannot be sent as recalled
    let r = app.post(&history(&chat), Some(&owner.access), json!({"type": "recalled", "content": {}})).await;
    assert_eq!((r.status, r.field()), (StatusCode::BAD_REQUEST, "type"), "{}", r.body);
    app.assert_consistent().await;
    app.stop().await;
}

/// Edit (docs/API.md "Edit"): the sender within the window, not a recalled message; the
/// earlier versions stay readable by members; mentions follow the edit (added ones count,
/// removed ones stop); the preview follows when it is the last message; members online
/// hear of it; a recall afterwards erases every version.
async fn edit_keeps_versions_and_recomputes_mentions(db: Db) {
    let app = spawn_app_with(db, |c| c.limits.mention_all_by_members = false).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "e", 4).await;
    let (owner, bob, cat, outsider) = (&u[0], &u[1], &u[2], &u[3]);
    let g = app.create_group(owner, "Edits", &[bob, cat]).await;
    let messages = format!("/api/v1/channels/{g}/messages");
    let (mut cat_socket, _) = crate::realtime::Client::connect(&app, cat).await;
    let r = app
        .post(
            &messages,
            Some(&bob.access),
            json!({"type": "text", "content": {"text": "draft for @owner"}, "mentions": [owner.id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["messageId"].as_str().unwrap().to_owned();
    let one = format!("{messages}/{id}");
    let counts = |c: &Value| (c["unreadCount"].as_i64(), c["mentionCount"].as_i64());
    assert_eq!(counts(&app.conversation(owner, &g).await.unwrap()), (Some(1), Some(1)));
    assert_eq!(counts(&app.conversation(cat, &g).await.unwrap()), (Some(1), Some(0)));

    // bad input and the wrong people change nothing
    let r = app.patch(&one, &bob.access, json!({"content": {"text": " "}})).await;
    assert_eq!(
        (r.status, r.code(), r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "content_not_of_type", "content.text")
    );
    let r = app.patch(&one, &bob.access, json!({"content": {"caption": "no text"}})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "content_not_of_type"), "{}", r.body);
    for (body, field) in [
        (json!({"content": "text"}), "content"),
        (json!({"content": {"text": "x"}, "extra": 1}), ""),
        (json!({"content": {"text": "x"}, "mentions": 7}), "mentions"),
    ] {
        let r = app.patch(&one, &bob.access, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        if !field.is_empty() {
            assert_eq!(r.field(), field, "{}", r.body);
        }
    }
    for (who, status) in
        [(owner, StatusCode::FORBIDDEN), (cat, StatusCode::FORBIDDEN), (outsider, StatusCode::FORBIDDEN)]
    {
        let r = app.patch(&one, &who.access, json!({"content": {"text": "hijack"}})).await;
        assert_eq!(r.status, status, "{}", r.body);
    }
    let r = app.patch(&one, &bob.access, json!({"content": {"text": "x"}, "mentions": "all"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a plain member may not mention everyone: {}", r.body);
    let r = app.patch(&format!("{messages}/123456789"), &bob.access, json!({"content": {"text": "x"}})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message_version").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message WHERE edit_count > 0").await, 0);

    // the mention moves from the owner to cat; the preview follows
    let r = app.patch(&one, &bob.access, json!({"content": {"text": "final for @cat"}, "mentions": [cat.id]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((r.body["editCount"].as_i64(), r.body["content"]["text"].as_str()), (Some(1), Some("final for @cat")));
    assert!(r.body["editedAt"].as_i64().is_some(), "{}", r.body);
    assert_eq!(r.body["mentions"], json!([cat.id]));
    assert_eq!(
        counts(&app.conversation(owner, &g).await.unwrap()),
        (Some(1), Some(0)),
        "a removed mention stops counting"
    );
    let row = app.conversation(cat, &g).await.unwrap();
    assert_eq!(counts(&row), (Some(1), Some(1)), "an added mention counts");
    assert_eq!(row["lastMessage"]["content"], "final for @cat");
    let frame = cat_socket.next_of("message.edited").await;
    assert_eq!(
        (frame["data"]["messageId"].as_str(), frame["data"]["content"]["text"].as_str()),
        (Some(id.as_str()), Some("final for @cat"))
    );
    // content only: the mentions stay
    let r = app.patch(&one, &bob.access, json!({"content": {"text": "final, really, @cat"}})).await;
    assert_eq!(
        (r.status, r.body["mentions"].clone(), r.body["editCount"].as_i64()),
        (StatusCode::OK, json!([cat.id]), Some(2))
    );
    let history = app.get(&format!("{messages}?afterSeq=0"), &owner.access).await;
    assert_eq!(history.body["items"][0]["editCount"], 2);
    assert_eq!(history.body["items"][0]["content"]["text"], "final, really, @cat");
    let versions = app.get(&format!("{one}/versions"), &cat.access).await;
    assert_eq!(versions.status, StatusCode::OK, "{}", versions.body);
    let texts: Vec<&str> =
        versions.body["items"].as_array().unwrap().iter().map(|v| v["content"]["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["draft for @owner", "final for @cat", "final, really, @cat"]);
    assert_eq!(versions.body["items"][0]["mentions"], json!([owner.id]));
    assert_eq!(app.get(&format!("{one}/versions"), &outsider.access).await.status, StatusCode::FORBIDDEN);
    app.assert_consistent().await;

    // past the window
    app.exec(&format!("UPDATE message SET created_at = created_at - 86401000 WHERE id = {id}")).await;
    let r = app.patch(&one, &bob.access, json!({"content": {"text": "too late"}})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "edit_window_passed"), "{}", r.body);

    // a recall erases every version, from the tables and from the log
    let r = app.post(&format!("{one}/recall"), Some(&owner.access), json!({})).await;
    assert_eq!((r.status, r.body["editCount"].as_i64()), (StatusCode::OK, Some(0)), "{}", r.body);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message_version").await, 0);
    for (table, column) in [("message", "content"), ("outbox", "payload")] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE '%for @%'");
        assert_eq!(app.scalar(&sql).await, 0, "every version is gone from {table}");
    }
    let versions = app.get(&format!("{one}/versions"), &cat.access).await;
    assert_eq!(versions.body["items"].as_array().map(Vec::len), Some(1), "{}", versions.body);
    let r = app.patch(&one, &bob.access, json!({"content": {"text": "back"}})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "message_recalled"), "{}", r.body);
    assert_eq!(counts(&app.conversation(cat, &g).await.unwrap()), (Some(1), Some(0)));
    app.assert_consistent().await;
    app.stop().await;
}

/// Delete for me (docs/API.md "Delete for me"): the message leaves the caller's history
/// and preview only (the preview falls back to the last message they kept), counts go by
/// the read position as before, and the caller's other devices hear of it.
async fn delete_for_me_hides_only_for_the_caller(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "d", 3).await;
    let (ann, bob, outsider) = (&u[0], &u[1], &u[2]);
    let chat = app.make_friends(ann, bob).await;
    let messages = format!("/api/v1/channels/{chat}/messages");
    app.send_text(ann, &chat, "keep me", Value::Null).await;
    let seq = app.send_text(ann, &chat, "hide me", Value::Null).await;
    let id = app.get(&format!("{messages}?afterSeq={}", seq - 1), &bob.access).await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = format!("{messages}/{id}");
    let (mut bob_socket, _) = crate::realtime::Client::connect(&app, bob).await;

    assert_eq!(app.call(Method::DELETE, &one, Some(&outsider.access), None).await.status, StatusCode::FORBIDDEN);
    let r = app.call(Method::DELETE, &format!("{messages}/123456789"), Some(&bob.access), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message_hidden").await, 0);

    let r = app.call(Method::DELETE, &one, Some(&bob.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let texts = |body: &Value| -> Vec<String> {
        body["items"].as_array().unwrap().iter().map(|m| m["content"]["text"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(texts(&app.get(&format!("{messages}?afterSeq=0"), &bob.access).await.body), ["keep me"]);
    assert_eq!(texts(&app.get(&format!("{messages}?afterSeq=0"), &ann.access).await.body), ["keep me", "hide me"]);
    assert_eq!(texts(&app.get(&messages, &bob.access).await.body), ["keep me"], "newest first too");
    let mine = app.conversation(bob, &chat).await.unwrap();
    assert_eq!(mine["lastMessage"]["content"], "keep me", "my preview falls back to what I kept");
    assert_eq!(mine["unreadCount"], 2, "deleting is not reading");
    assert_eq!(app.conversation(ann, &chat).await.unwrap()["lastMessage"]["content"], "hide me");
    let frame = bob_socket.next_of("message.hidden").await;
    assert_eq!(frame["data"]["messageId"], id.as_str());
    // again: nothing new
    let events = app.scalar("SELECT COUNT(*) FROM outbox").await;
    assert_eq!(app.call(Method::DELETE, &one, Some(&bob.access), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, events);
    app.assert_consistent().await;
    // a newer message is the preview again; hiding every message leaves none
    app.send_text(ann, &chat, "newer", Value::Null).await;
    assert_eq!(app.conversation(bob, &chat).await.unwrap()["lastMessage"]["content"], "newer");
    let all = app.get(&format!("{messages}?afterSeq=0"), &bob.access).await.body;
    for m in all["items"].as_array().unwrap() {
        let path = format!("{messages}/{}", m["id"].as_str().unwrap());
        assert_eq!(app.call(Method::DELETE, &path, Some(&bob.access), None).await.status, StatusCode::NO_CONTENT);
    }
    assert!(app.conversation(bob, &chat).await.unwrap()["lastMessage"].is_null());
    app.assert_consistent().await;
    app.stop().await;
}

/// Reactions (docs/API.md "Reactions"): any member, on what they can see; counts per
/// reaction with "did I" in history; no conversation count moves; members online hear of
/// it; a recall takes the reactions with the content.
async fn reactions_count_per_emoji_and_leave_counts_alone(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "x", 4).await;
    let (ann, bob, cat, outsider) = (&u[0], &u[1], &u[2], &u[3]);
    let g = app.create_group(ann, "Reactions", &[bob, cat]).await;
    let messages = format!("/api/v1/channels/{g}/messages");
    let seq = app.send_text(bob, &g, "react to me", Value::Null).await;
    let id = app.get(&format!("{messages}?afterSeq={}", seq - 1), &bob.access).await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reaction = |emoji: &str| format!("{messages}/{id}/reactions/{emoji}");
    let (thumbs, heart) = ("%F0%9F%91%8D", "%E2%9D%A4%EF%B8%8F");
    let (mut bob_socket, _) = crate::realtime::Client::connect(&app, bob).await;
    let before = app.conversation(cat, &g).await.unwrap();

    for bad in ["a%20b", "%07", &"x".repeat(33)] {
        let r = app.call(Method::PUT, &reaction(bad), Some(&cat.access), None).await;
        assert_eq!((r.status, r.field()), (StatusCode::BAD_REQUEST, "emoji"), "{bad}: {}", r.body);
    }
    assert_eq!(
        app.call(Method::PUT, &reaction(thumbs), Some(&outsider.access), None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message_reaction").await, 0);

    let r = app.call(Method::PUT, &reaction(thumbs), Some(&cat.access), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["reactions"], json!([{"emoji": "👍", "count": 1, "me": true}]));
    let frame = bob_socket.next_of("message.reaction").await;
    assert_eq!((frame["data"]["emoji"].as_str(), frame["data"]["added"].as_bool()), (Some("👍"), Some(true)));
    app.call(Method::PUT, &reaction(thumbs), Some(&ann.access), None).await;
    let r = app.call(Method::PUT, &reaction(heart), Some(&ann.access), None).await;
    assert_eq!(
        r.body["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "❤️", "count": 1, "me": true}])
    );
    // again: the same, nothing new
    let events = app.scalar("SELECT COUNT(*) FROM outbox").await;
    let r = app.call(Method::PUT, &reaction(heart), Some(&ann.access), None).await;
    assert_eq!(r.body["reactions"][1]["count"], 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, events);
    // history as bob sees it
    let page = app.get(&messages, &bob.access).await;
    assert_eq!(
        page.body["items"][0]["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": false}, {"emoji": "❤️", "count": 1, "me": false}])
    );
    // taking one back
    let r = app.call(Method::DELETE, &reaction(thumbs), Some(&cat.access), None).await;
    assert_eq!(r.body["reactions"][0], json!({"emoji": "👍", "count": 1, "me": false}));
    assert_eq!(app.conversation(cat, &g).await.unwrap(), before, "reactions move no conversation");
    // at most 20 reactions of one member on one message
    for i in 0..19 {
        let r = app.call(Method::PUT, &reaction(&format!(":r{i}:")), Some(&ann.access), None).await;
        let expected = if i < 18 { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
        assert_eq!(r.status, expected, "{i}: {}", r.body);
    }
    let r = app.call(Method::PUT, &reaction(heart), Some(&ann.access), None).await;
    assert_eq!(r.status, StatusCode::OK, "one already given is not refused: {}", r.body);
    // a recall takes them all
    let r = app.post(&format!("{messages}/{id}/recall"), Some(&bob.access), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM message_reaction").await, 0);
    let r = app.call(Method::PUT, &reaction(thumbs), Some(&cat.access), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "message_recalled"), "{}", r.body);
    app.assert_consistent().await;
    app.stop().await;
}

/// Read receipts (docs/API.md "Read receipts"): a one-to-one row and history carry the
/// peer's read position, and the sender hears when it moves; a group message's receipts
/// are counted and listed from read positions.
async fn read_receipts_follow_read_positions(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "rr", 5).await;
    let (ann, bob, cat, dan, eve) = (&u[0], &u[1], &u[2], &u[3], &u[4]);
    let chat = app.make_friends(ann, bob).await;
    app.send_text(ann, &chat, "one", Value::Null).await;
    let two = app.send_text(ann, &chat, "two", Value::Null).await;
    assert_eq!(app.conversation(ann, &chat).await.unwrap()["peer"]["readSeq"], 0);
    assert_eq!(
        app.conversation(bob, &chat).await.unwrap()["peer"]["readSeq"],
        two,
        "ann's own messages are read by her"
    );
    let (mut ann_socket, _) = crate::realtime::Client::connect(&app, ann).await;
    let r = app.post(&format!("/api/v1/channels/{chat}/read"), Some(&bob.access), json!({"seq": 1})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.conversation(ann, &chat).await.unwrap()["peer"]["readSeq"], 1);
    let page = app.get(&format!("/api/v1/channels/{chat}/messages"), &ann.access).await;
    assert_eq!(page.body["peerReadSeq"], 1, "{}", page.body);
    // one conversation, as the list shows it; nobody else's
    let one = app.get(&format!("/api/v1/conversations/{chat}"), &ann.access).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(one.body, app.conversation(ann, &chat).await.unwrap());
    assert_eq!(app.get(&format!("/api/v1/conversations/{chat}"), &cat.access).await.status, StatusCode::NOT_FOUND);
    let read = ann_socket.next_of("read.updated").await;
    assert_eq!((read["data"]["userId"].as_str(), read["data"]["readSeq"].as_i64()), (Some(bob.id.as_str()), Some(1)));
    loop {
        let row = ann_socket.next_of("conversation.updated").await;
        if row["data"]["channelId"] == chat.as_str() && row["data"]["peer"]["readSeq"] == 1 {
            break;
        }
    }
    app.assert_consistent().await;

    // a group: counted and listed from read positions, members who joined later aside
    let g = app.create_group(ann, "Receipts", &[bob, cat, dan]).await;
    let seq = app.send_text(bob, &g, "did you read this?", Value::Null).await;
    let id = app.get(&format!("/api/v1/channels/{g}/messages?afterSeq={}", seq - 1), &bob.access).await.body["items"]
        [0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let receipts = format!("/api/v1/channels/{g}/messages/{id}/receipts");
    let r = app.get(&receipts, &cat.access).await;
    assert_eq!(
        (r.status, r.body["readCount"].as_i64(), r.body["readers"].clone()),
        (StatusCode::OK, Some(0), json!([]))
    );
    assert!(app.get(&format!("/api/v1/channels/{g}/messages"), &bob.access).await.body["peerReadSeq"].is_null());
    for reader in [cat, dan] {
        app.post(&format!("/api/v1/channels/{g}/read"), Some(&reader.access), json!({"seq": seq})).await;
    }
    let r = app.post(&format!("/api/v1/channels/{g}/members"), Some(&ann.access), json!({"userIds": [eve.id]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.send_text(eve, &g, "hi all", Value::Null).await;
    let r = app.get(&receipts, &bob.access).await;
    assert_eq!(r.body["readCount"], 2, "cat and dan; not eve, who joined after: {}", r.body);
    let mut want = vec![cat.id.clone(), dan.id.clone()];
    want.sort_by_key(|id| id.parse::<i64>().unwrap());
    assert_eq!(r.body["readers"], json!(want));
    let first = app.get(&format!("{receipts}?limit=1"), &bob.access).await;
    assert_eq!(first.body["readers"], json!([want[0]]));
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = app.get(&format!("{receipts}?limit=1&cursor={cursor}"), &bob.access).await;
    assert_eq!((second.body["readers"].clone(), second.body["nextCursor"].clone()), (json!([want[1]]), Value::Null));
    assert_eq!(app.get(&receipts, &eve.access).await.status, StatusCode::NOT_FOUND, "from before eve joined");
    app.assert_consistent().await;
    app.stop().await;
}

crate::both_backends!(
    friend_applications_and_accept,
    contacts_remark_block_delete_and_refriend,
    group_lifecycle,
    messages_unread_mentions_and_settings,
    profile_changes_reach_every_view,
    scenario,
    scenario_in_async_mode_and_replay,
    concurrent_sends_keep_seqs_and_unread_exact,
    concurrent_member_changes_sends_and_reads,
    checker_finds_and_repairs_drift,
    large_group_in_one_request,
    recall_erases_content_and_keeps_counts_exact,
    edit_keeps_versions_and_recomputes_mentions,
    delete_for_me_hides_only_for_the_caller,
    reactions_count_per_emoji_and_leave_counts_alone,
    read_receipts_follow_read_positions,
);
