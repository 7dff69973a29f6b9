//! Who may reach whom: membership is the boundary on the socket too, `@all` is the
//! owner's and admins' (in groups only), nothing goes to a disabled or deleted account,
//! and a deleted account leaves its groups and shows as deleted in others' lists.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, TestUser, spawn_app, spawn_app_with};
use crate::realtime::{Client, synced};

async fn rename(app: &TestApp, by: &TestUser, g: &str, name: &str) {
    let r =
        app.call(Method::PATCH, &format!("/api/v1/channels/{g}"), Some(&by.access), Some(json!({"name": name}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// A removed member syncing later gets the row that shows the removal, with the name the
/// group had then: not the rename after it, and no push of it.
async fn a_removed_member_gets_nothing_of_the_group_after_removal(db: Db) {
    let app = spawn_app(db).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    // connected before the group exists, so its creation is pushed to this socket
    let (mut b, _) = Client::connect(&app, &bob).await;
    let g = app.create_group(&ann, "Before", &[&bob]).await;
    let cursor = b.next_of("channel.created").await["cursor"].as_i64().unwrap();
    drop(b);
    app.send_text(&ann, &g, "hello", Value::Null).await;
    let r =
        app.call(Method::DELETE, &format!("/api/v1/channels/{g}/members/{}", bob.id), Some(&ann.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    rename(&app, &ann, &g, "After").await;
    app.send_text(&ann, &g, "after the removal", Value::Null).await;

    let (mut b, _) = Client::connect(&app, &bob).await;
    b.send(json!({"type": "sync", "cursor": cursor})).await;
    let (frames, done) = synced(&mut b).await;
    let text = serde_json::to_string(&frames).unwrap() + &done.to_string();
    assert!(!text.contains("After") && !text.contains("after the removal"), "{text}");
    let rows: Vec<&Value> =
        done["conversations"].as_array().unwrap().iter().filter(|c| c["channelId"] == g.as_str()).collect();
    assert!(rows.iter().all(|r| r["name"] == "Before"), "{rows:?}");
    // the stored row keeps the name too (lists, the checker)
    let stored = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM user_conversation_view WHERE user_id = {} AND channel_id = {g} AND conversation_name = 'Before'",
            bob.id
        ))
        .await;
    assert_eq!(stored, 1);
    // a member's row follows the rename; everything is consistent
    assert_eq!(app.conversation(&ann, &g).await.unwrap()["name"], "After");
    let (mut a, _) = Client::connect(&app, &ann).await;
    rename(&app, &ann, &g, "Later").await;
    app.send_text(&ann, &g, "later still", Value::Null).await;
    // once ann has the message, the notifier is past the rename too (it goes in order)
    while a.next_of("message.new").await["data"]["content"]["text"] != "later still" {}
    // what reaches bob live until a ping is answered: at most the notice of his own
    // removal and his row closed by it (pushed by the notifier, possibly after his sync),
    // nothing of the group since
    b.send(json!({"type": "ping"})).await;
    loop {
        let f = b.next().await;
        if f["type"] == "pong" {
            break;
        }
        let own_row_closed = f["type"] == "conversation.updated"
            && f["data"]["closedAt"].is_i64()
            && f["data"]["name"] == "Before"
            && f["data"]["lastMessage"]["content"] == "hello";
        assert!(f["type"] == "member.removed" || own_row_closed, "no push of the group reaches bob: {f}");
    }
    // back in the group, bob sees it as it is
    let r = app.post(&format!("/api/v1/channels/{g}/members"), Some(&ann.access), json!({"userIds": [bob.id]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.conversation(&bob, &g).await.unwrap()["name"], "Later");
    app.assert_consistent().await;
    app.stop().await;
}

/// `mentions: "all"`: the owner and admins of a group, not plain members, not in 1:1.
async fn mention_all_is_for_owners_and_admins_of_groups(db: Db) {
    let app = spawn_app_with(db, |c| c.limits.mention_all_by_members = false).await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let g = app.create_group(&ann, "Team", &[&bob, &cat]).await;
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/channels/{g}/members/{}", bob.id),
            Some(&ann.access),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let all = |text: &str| json!({"type": "text", "content": {"text": text}, "mentions": "all"});
    let path = format!("/api/v1/channels/{g}/messages");
    for (who, status) in [(&ann, StatusCode::CREATED), (&bob, StatusCode::CREATED), (&cat, StatusCode::FORBIDDEN)] {
        let r = app.post(&path, Some(&who.access), all("everyone")).await;
        assert_eq!(r.status, status, "{}", r.body);
    }
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM message WHERE channel_id = {g}")).await, 2);
    assert_eq!(app.conversation(&cat, &g).await.unwrap()["mentionCount"], 2);
    let chat = app.make_friends(&ann, &bob).await;
    let r = app.post(&format!("/api/v1/channels/{chat}/messages"), Some(&ann.access), all("you")).await;
    assert_eq!(
        (r.status, r.code(), r.field()),
        (StatusCode::BAD_REQUEST, "validation_failed", "mentions"),
        "{}",
        r.body
    );
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM message WHERE channel_id = {chat}")).await, 0);
    app.stop().await;
}

async fn admin_sets(app: &TestApp, admin: &TestUser, user: &TestUser, action: &str) {
    let r = match action {
        "delete" => {
            app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", user.id), Some(&admin.access), None).await
        }
        _ => app.post(&format!("/api/v1/admin/users/{}/{action}", user.id), Some(&admin.access), json!({})).await,
    };
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{action}: {}", r.body);
}

/// A disabled account gets no one-to-one messages until enabled; a deleted one never.
async fn nothing_is_sent_to_a_disabled_or_deleted_account(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let chat = app.make_friends(&ann, &bob).await;
    let path = format!("/api/v1/channels/{chat}/messages");
    let msg = json!({"type": "text", "content": {"text": "are you there?"}});
    admin_sets(&app, &admin, &bob, "disable").await;
    let r = app.post(&path, Some(&ann.access), msg.clone()).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "recipient_inactive"), "{}", r.body);
    admin_sets(&app, &admin, &bob, "enable").await;
    assert_eq!(app.post(&path, Some(&ann.access), msg.clone()).await.status, StatusCode::CREATED);
    admin_sets(&app, &admin, &bob, "delete").await;
    let r = app.post(&path, Some(&ann.access), msg).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "recipient_inactive"), "{}", r.body);
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) FROM message WHERE channel_id = {chat}")).await, 1);
    app.stop().await;
}

/// Deleting an account: it leaves every group (an owner's group passes to the admin who
/// joined first, else the member who joined first; a group of one is dismissed), and
/// friends' lists show it as a deleted account; the read models agree with the write side.
async fn a_deleted_account_leaves_its_groups_and_shows_as_deleted(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let ann = app.sign_up("ann@example.com", "Ann").await;
    let bob = app.sign_up("bob@example.com", "Bob").await;
    let cat = app.sign_up("cat@example.com", "Cat").await;
    let chat = app.make_friends(&ann, &bob).await;
    let owned = app.create_group(&ann, "Ann's", &[&bob, &cat]).await;
    let member_of = app.create_group(&bob, "Bob's", &[&ann, &cat]).await;
    let alone = app.create_group(&ann, "Alone", &[]).await;
    app.send_text(&ann, &chat, "hi bob", Value::Null).await;
    admin_sets(&app, &admin, &ann, "delete").await;

    let members = |g: &str| {
        format!(
            "SELECT COUNT(*) FROM channel_member WHERE channel_id = {g} AND left_at IS NULL AND user_id = {}",
            ann.id
        )
    };
    assert_eq!(app.scalar(&members(&owned)).await + app.scalar(&members(&member_of)).await, 0);
    let heir = app.get(&format!("/api/v1/channels/{owned}/members"), &bob.access).await;
    let roles: Vec<(String, String)> = heir.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["userId"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    assert!(roles.contains(&(bob.id.clone(), "owner".into())), "the first member to join inherits: {roles:?}");
    assert_eq!(app.get(&format!("/api/v1/channels/{owned}"), &bob.access).await.body["memberCount"], 2);
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) FROM channel WHERE id = {alone} AND status = 'archived'")).await,
        1
    );

    let contact = app.contact_list(&bob, "").await.into_iter().find(|c| c["contactId"] == ann.id.as_str());
    let contact = contact.expect("the friendship stays: bob still lists the deleted account");
    assert_eq!(contact["nickname"], "Deleted account", "{contact}");
    let row = app.conversation(&bob, &chat).await.unwrap();
    assert_eq!(row["name"], "Deleted account", "{row}");
    assert_eq!(row["unreadCount"], 1, "what was sent before stays: {row}");
    assert_eq!(app.get(&format!("/api/v1/users/{}", ann.id), &bob.access).await.status, StatusCode::NOT_FOUND);
    app.assert_consistent().await;
    app.stop().await;
}

crate::both_backends!(
    a_removed_member_gets_nothing_of_the_group_after_removal,
    mention_all_is_for_owners_and_admins_of_groups,
    nothing_is_sent_to_a_disabled_or_deleted_account,
    a_deleted_account_leaves_its_groups_and_shows_as_deleted,
);
