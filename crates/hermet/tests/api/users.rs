use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Db, spawn_app};

async fn profile_update_bumps_version_and_records_an_event(db: Db) {
    let app = spawn_app(db).await;
    let u = app.sign_up("fay@example.com", "Fay").await;
    let r = app
        .patch(
            "/api/v1/users/me",
            &u.access,
            json!({"nickname": "Fay Z", "avatar": "https://cdn.example.com/f.png", "gender": "female", "region": "Lyon", "birthday": "1991-03-04", "tagline": "hi"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["nickname"], "Fay Z");
    assert_eq!(r.body["gender"], "female");
    assert_eq!(r.body["birthday"], "1991-03-04");
    assert_eq!(r.body["profileVer"], 2);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'user.profile_updated'").await, 1);

    // null clears the birthday; an unchanged value writes nothing
    let r = app.patch("/api/v1/users/me", &u.access, json!({"birthday": null})).await;
    assert_eq!(r.body["birthday"], serde_json::Value::Null);
    assert_eq!(r.body["profileVer"], 3);
    let r = app.patch("/api/v1/users/me", &u.access, json!({"nickname": "Fay Z"})).await;
    assert_eq!(r.body["profileVer"], 3);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 2);

    // invalid values name the field and change nothing
    for (field, body) in [
        ("birthday", json!({"birthday": "1991-02-30"})),
        ("gender", json!({"gender": "robot"})),
        ("nickname", json!({"nickname": "   "})),
        ("tagline", json!({"tagline": "t".repeat(257)})),
        ("profileVer", json!({"profileVer": 99})),
    ] {
        let r = app.patch("/api/v1/users/me", &u.access, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.field(), field);
    }
    let me = app.get("/api/v1/users/me", &u.access).await;
    assert_eq!(me.body["profileVer"], 3);
    assert_eq!(me.body["nickname"], "Fay Z");
    app.stop().await;
}

async fn a_user_cannot_change_another_user(db: Db) {
    let app = spawn_app(db).await;
    let a = app.sign_up("gus@example.com", "Gus").await;
    let b = app.sign_up("hal@example.com", "Hal").await;
    // there is no route to change someone else's profile…
    let r = app.patch(&format!("/api/v1/users/{}", b.id), &a.access, json!({"nickname": "pwned"})).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    // …and admin routes refuse non-admins
    let r = app.call(Method::POST, &format!("/api/v1/admin/users/{}/disable", b.id), Some(&a.access), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", b.id), Some(&a.access), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // PATCH /users/me changes only the caller
    app.patch("/api/v1/users/me", &a.access, json!({"nickname": "Gus 2"})).await;
    let other = app.get(&format!("/api/v1/users/{}", b.id), &a.access).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body["nickname"], "Hal");
    assert_eq!(other.body["profileVer"], 1);
    assert!(other.body.get("email").is_none(), "public profiles hide accounts");
    assert_eq!(app.get("/api/v1/users/me", &b.access).await.status, StatusCode::OK);
    app.stop().await;
}

async fn public_profiles_and_search(db: Db) {
    let app = spawn_app(db).await;
    let me = app.sign_up("ivy@example.com", "Ivy").await;
    for (acct, nick) in [
        ("zed1@example.com", "Zed Alpha"),
        ("zed2@example.com", "zed beta"),
        ("zed3@example.com", "Zedd"),
        ("zoe@example.com", "Zoë"),
    ] {
        app.sign_up(acct, nick).await;
    }
    // nickname prefix, case-folded, paged by cursor in nickname order
    let r = app.get("/api/v1/users/search?q=ZED&limit=2", &me.access).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let names: Vec<_> =
        r.body["items"].as_array().unwrap().iter().map(|u| u["nickname"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["Zed Alpha", "zed beta"]);
    let cursor = r.body["nextCursor"].as_str().expect("a next page").to_owned();
    let r = app.get(&format!("/api/v1/users/search?q=ZED&limit=2&cursor={cursor}"), &me.access).await;
    let names: Vec<_> =
        r.body["items"].as_array().unwrap().iter().map(|u| u["nickname"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["Zedd"]);
    assert!(r.body["nextCursor"].is_null());
    // non-ASCII folds the same way on both backends
    let r = app.get("/api/v1/users/search?q=zoË", &me.access).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    // exact e-mail
    let r = app.get("/api/v1/users/search?q=ZED3@example.com", &me.access).await;
    assert_eq!(r.body["items"][0]["nickname"], "Zedd");
    // bad parameters
    assert_eq!(app.get("/api/v1/users/search?q=", &me.access).await.field(), "q");
    assert_eq!(app.get("/api/v1/users/search?q=z&limit=500", &me.access).await.field(), "limit");
    assert_eq!(app.get("/api/v1/users/search?q=z&cursor=garbage", &me.access).await.field(), "cursor");
    assert_eq!(app.get("/api/v1/users/search", &me.access).await.field(), "q");
    // unknown and malformed ids
    assert_eq!(app.get("/api/v1/users/123456789", &me.access).await.status, StatusCode::NOT_FOUND);
    let r = app.get("/api/v1/users/abc", &me.access).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.field(), "id");
    app.stop().await;
}

/// Profiles by ids, and the names a channel shows: members with their profiles, the
/// channel with my role, its owner or the peer, and `senderName` as at sending time.
async fn profiles_by_ids_and_names_in_channels(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.admin().await;
    let u = app.many_users(&admin, "n", 4).await;
    let (owner, bob, cat, gone) = (&u[0], &u[1], &u[2], &u[3]);
    let r = app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", gone.id), Some(&admin.access), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let path = format!("/api/v1/users?ids={},123456789,{},{},{}", cat.id, owner.id, gone.id, cat.id);
    let r = app.get(&path, &bob.access).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ids: Vec<&str> = r.body["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [cat.id.as_str(), owner.id.as_str()], "in order, once, unknown and deleted left out");
    assert!(r.body["items"][0].get("email").is_none(), "public profiles only");
    let many = (1..=101).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    for bad in ["", "x", "1,,2", many.as_str()] {
        let r = app.get(&format!("/api/v1/users?ids={bad}"), &bob.access).await;
        assert_eq!((r.status, r.field()), (StatusCode::BAD_REQUEST, "ids"), "{bad}: {}", r.body);
    }

    // applications name both sides
    let r = app.post("/api/v1/contacts/applications", Some(&bob.access), json!({"contactId": owner.id})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let bob_name = app.get(&format!("/api/v1/users/{}", bob.id), &owner.access).await.body["nickname"].clone();
    let owner_name = app.get(&format!("/api/v1/users/{}", owner.id), &owner.access).await.body["nickname"].clone();
    let r = app.get("/api/v1/contacts/applications", &owner.access).await;
    assert_eq!(r.body["items"][0]["applicantId"], bob.id.as_str(), "incoming by default: {}", r.body);
    assert_eq!(
        (r.body["items"][0]["applicantNickname"].clone(), r.body["items"][0]["targetNickname"].clone()),
        (bob_name, owner_name)
    );

    // a group: my role and its owner, through a transfer
    let g = app.create_group(owner, "Names", &[bob, cat]).await;
    let r = app.get(&format!("/api/v1/channels/{g}"), &bob.access).await;
    assert_eq!((r.body["myRole"].as_str(), r.body["ownerId"].as_str()), (Some("member"), Some(owner.id.as_str())));
    assert_eq!((r.body["peer"].clone(), r.body["name"].as_str()), (serde_json::Value::Null, Some("Names")));
    let r =
        app.patch(&format!("/api/v1/channels/{g}/members/{}", bob.id), &owner.access, json!({"role": "owner"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.get(&format!("/api/v1/channels/{g}"), &cat.access).await;
    assert_eq!(r.body["ownerId"], bob.id.as_str(), "ownership moved");
    assert_eq!(r.body["creatorId"], owner.id.as_str(), "the creator stays");
    // members with their profiles
    let r =
        app.patch("/api/v1/users/me", &cat.access, json!({"nickname": "Cat Now", "avatar": "https://x/cat.png"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.get(&format!("/api/v1/channels/{g}/members"), &bob.access).await;
    let cat_row = r.body["items"].as_array().unwrap().iter().find(|m| m["userId"] == cat.id.as_str()).unwrap().clone();
    assert_eq!(
        (cat_row["nickname"].as_str(), cat_row["avatar"].as_str()),
        (Some("Cat Now"), Some("https://x/cat.png"))
    );
    assert_eq!(cat_row["role"], "member");

    // senderName is the name at sending time
    let seq = app.send_text(cat, &g, "before the rename", serde_json::Value::Null).await;
    let r = app.patch("/api/v1/users/me", &cat.access, json!({"nickname": "Cat Later"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.send_text(cat, &g, "after the rename", serde_json::Value::Null).await;
    let r = app.get(&format!("/api/v1/channels/{g}/messages?afterSeq={}", seq - 1), &bob.access).await;
    let names: Vec<&str> =
        r.body["items"].as_array().unwrap().iter().map(|m| m["senderName"].as_str().unwrap()).collect();
    assert_eq!(names, ["Cat Now", "Cat Later"]);

    // my groups, a hidden one too
    let other = app.create_group(cat, "Other", &[]).await;
    let r = app.patch(&format!("/api/v1/conversations/{other}"), &cat.access, json!({"isHidden": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.get("/api/v1/channels?type=group", &cat.access).await;
    let mut mine: Vec<&str> = r.body["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    mine.sort_unstable();
    let mut expected = [g.as_str(), other.as_str()];
    expected.sort_unstable();
    assert_eq!(mine, expected, "{}", r.body);
    let r = app.get("/api/v1/channels?limit=1", &cat.access).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let next = r.body["nextCursor"].as_str().unwrap().to_owned();
    let r = app.get(&format!("/api/v1/channels?limit=1&cursor={next}"), &cat.access).await;
    assert_eq!((r.body["items"].as_array().unwrap().len(), r.body["nextCursor"].clone()), (1, serde_json::Value::Null));

    // a one-to-one chat: the peer
    let chat = app.make_friends(bob, cat).await;
    let r = app.get(&format!("/api/v1/channels/{chat}"), &bob.access).await;
    assert_eq!((r.body["myRole"].as_str(), r.body["ownerId"].clone()), (Some("member"), serde_json::Value::Null));
    assert_eq!(
        (r.body["peer"]["id"].as_str(), r.body["peer"]["nickname"].as_str()),
        (Some(cat.id.as_str()), Some("Cat Later"))
    );
    let r = app.get("/api/v1/channels?type=single", &bob.access).await;
    assert_eq!(r.body["items"][0]["id"], chat.as_str(), "{}", r.body);
    app.stop().await;
}

crate::both_backends!(
    profiles_by_ids_and_names_in_channels,
    profile_update_bumps_version_and_records_an_event,
    a_user_cannot_change_another_user,
    public_profiles_and_search
);
