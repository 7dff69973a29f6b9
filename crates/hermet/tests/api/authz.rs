//! The authorization matrix, derived from the OpenAPI document the server serves: every
//! operation is called as each role (owner, group admin, plain member, removed member,
//! outsider, anonymous) on a world of its own, and must answer the status the table
//! below gives, a status its operation declares. The owner's data must be unchanged by
//! every refused call. An operation of the document without a row fails the test: a new
//! route joins the matrix when it joins the document.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, TestUser, spawn_app_with};

/// The roles, in the order each operation is called as them.
const ROLES: [&str; 6] = ["anonymous", "outsider", "removed", "member", "admin", "owner"];

/// One operation of the document: how to call it and the status each role gets, in
/// [`ROLES`] order. Paths and bodies name the world's ids: `{group}` (a group of the
/// owner with the admin and the member, the removed member taken out), `{single}` (the
/// owner's one-to-one chat with the member, who is a friend), `{owner}`, `{member}`,
/// `{extra}` (a user in no group), `{friendApp}` (a pending friend application to the
/// owner), `{joinApp}` (a pending application to join the group).
struct Row {
    method: &'static str,
    /// The path as the document spells it.
    doc_path: &'static str,
    call: &'static str,
    body: Option<&'static str>,
    expect: [u16; 6],
}

/// Operations outside the matrix, with why.
const PUBLIC: [(&str, &str); 3] =
    [("POST", "/api/v1/auth/sign-up"), ("POST", "/api/v1/auth/sign-in"), ("POST", "/api/v1/auth/refresh-token")];

const fn row(
    method: &'static str,
    doc_path: &'static str,
    call: &'static str,
    body: Option<&'static str>,
    expect: [u16; 6],
) -> Row {
    Row { method, doc_path, call, body, expect }
}

#[rustfmt::skip]
fn matrix() -> Vec<Row> {
    vec![
        //                                                                                                              anon outs  rem  mem  adm  own
        row("POST",   "/api/v1/auth/sign-out", "/api/v1/auth/sign-out", None,                                          [401, 204, 204, 204, 204, 204]),
        row("GET",    "/api/v1/users/me", "/api/v1/users/me", None,                                                    [401, 200, 200, 200, 200, 200]),
        row("PATCH",  "/api/v1/users/me", "/api/v1/users/me", Some(r#"{"tagline": "hello"}"#),                         [401, 200, 200, 200, 200, 200]),
        row("GET",    "/api/v1/users/search", "/api/v1/users/search?q=Owner", None,                                    [401, 200, 200, 200, 200, 200]),
        row("GET",    "/api/v1/users", "/api/v1/users?ids={owner},{member}", None,                                    [401, 200, 200, 200, 200, 200]),
        row("GET",    "/api/v1/users/{id}", "/api/v1/users/{owner}", None,                                             [401, 200, 200, 200, 200, 200]),
        row("GET",    "/api/v1/users/{id}/presence", "/api/v1/users/{owner}/presence", None,                           [401, 403, 403, 200, 403, 200]),
        row("POST",   "/api/v1/admin/users", "/api/v1/admin/users", Some(r#"{"users": []}"#),                          [401, 403, 403, 403, 403, 403]),
        row("POST",   "/api/v1/admin/users/{id}/disable", "/api/v1/admin/users/{member}/disable", None,                [401, 403, 403, 403, 403, 403]),
        row("POST",   "/api/v1/admin/users/{id}/enable", "/api/v1/admin/users/{member}/enable", None,                  [401, 403, 403, 403, 403, 403]),
        row("DELETE", "/api/v1/admin/users/{id}", "/api/v1/admin/users/{member}", None,                                [401, 403, 403, 403, 403, 403]),
        row("POST",   "/api/v1/contacts/applications", "/api/v1/contacts/applications", Some(r#"{"contactId": "{extra}"}"#), [401, 201, 201, 201, 201, 201]),
        row("GET",    "/api/v1/contacts/applications", "/api/v1/contacts/applications", None,                          [401, 200, 200, 200, 200, 200]),
        row("POST",   "/api/v1/contacts/applications/{id}/accept", "/api/v1/contacts/applications/{friendApp}/accept", None, [401, 404, 404, 404, 404, 200]),
        row("POST",   "/api/v1/contacts/applications/{id}/reject", "/api/v1/contacts/applications/{friendApp}/reject", None, [401, 404, 404, 404, 404, 200]),
        row("GET",    "/api/v1/contacts", "/api/v1/contacts", None,                                                    [401, 200, 200, 200, 200, 200]),
        row("PATCH",  "/api/v1/contacts/{contactId}", "/api/v1/contacts/{member}", Some(r#"{"isStarred": true}"#),     [401, 404, 404, 404, 404, 200]),
        row("DELETE", "/api/v1/contacts/{contactId}", "/api/v1/contacts/{member}", None,                               [401, 404, 404, 404, 404, 204]),
        row("GET",    "/api/v1/channels", "/api/v1/channels?type=group", None,                                        [401, 200, 200, 200, 200, 200]),
        row("POST",   "/api/v1/channels/groups", "/api/v1/channels/groups", Some(r#"{"name": "Another", "memberIds": []}"#), [401, 201, 201, 201, 201, 201]),
        row("GET",    "/api/v1/channels/{id}", "/api/v1/channels/{group}", None,                                       [401, 403, 403, 200, 200, 200]),
        row("PATCH",  "/api/v1/channels/{id}", "/api/v1/channels/{group}", Some(r#"{"name": "Renamed"}"#),            [401, 403, 403, 403, 200, 200]),
        row("POST",   "/api/v1/channels/{id}/dismiss", "/api/v1/channels/{group}/dismiss", None,                       [401, 403, 403, 403, 403, 204]),
        row("GET",    "/api/v1/channels/{id}/members", "/api/v1/channels/{group}/members", None,                       [401, 403, 403, 200, 200, 200]),
        row("POST",   "/api/v1/channels/{id}/members", "/api/v1/channels/{group}/members", Some(r#"{"userIds": ["{extra}"]}"#), [401, 403, 403, 403, 200, 422]),
        row("DELETE", "/api/v1/channels/{id}/members/{userId}", "/api/v1/channels/{group}/members/{member}", None,     [401, 403, 403, 422, 204, 404]),
        row("PATCH",  "/api/v1/channels/{id}/members/{userId}", "/api/v1/channels/{group}/members/{member}", Some(r#"{"role": "admin"}"#), [401, 403, 403, 403, 403, 200]),
        row("POST",   "/api/v1/channels/{id}/bans/{userId}", "/api/v1/channels/{group}/bans/{extra}", None,        [401, 403, 403, 403, 204, 204]),
        row("DELETE", "/api/v1/channels/{id}/bans/{userId}", "/api/v1/channels/{group}/bans/{extra}", None,        [401, 403, 403, 403, 204, 204]),
        row("GET",    "/api/v1/channels/{id}/bans", "/api/v1/channels/{group}/bans", None,                             [401, 403, 403, 403, 200, 200]),
        row("POST",   "/api/v1/channels/{id}/leave", "/api/v1/channels/{group}/leave", None,                           [401, 403, 403, 204, 204, 409]),
        row("POST",   "/api/v1/channels/{id}/applications", "/api/v1/channels/{group}/applications", Some(r#"{"message": "let me in"}"#), [401, 201, 201, 409, 409, 409]),
        row("GET",    "/api/v1/channels/{id}/applications", "/api/v1/channels/{group}/applications", None,             [401, 403, 403, 403, 200, 200]),
        row("POST",   "/api/v1/channels/{id}/applications/{applicationId}/accept", "/api/v1/channels/{group}/applications/{joinApp}/accept", None, [401, 403, 403, 403, 200, 409]),
        row("POST",   "/api/v1/channels/{id}/applications/{applicationId}/reject", "/api/v1/channels/{group}/applications/{joinApp}/reject", None, [401, 403, 403, 403, 200, 409]),
        row("POST",   "/api/v1/channels/{id}/messages", "/api/v1/channels/{group}/messages", Some(r#"{"type": "text", "content": {"text": "hi"}}"#), [401, 403, 403, 201, 201, 201]),
        row("GET",    "/api/v1/channels/{id}/messages", "/api/v1/channels/{single}/messages", None,                    [401, 403, 403, 200, 403, 200]),
        row("PATCH",  "/api/v1/channels/{id}/messages/{messageId}", "/api/v1/channels/{group}/messages/{memberMsg}", Some(r#"{"content": {"text": "edited"}}"#), [401, 403, 403, 200, 403, 403]),
        row("GET",    "/api/v1/channels/{id}/messages/{messageId}/versions", "/api/v1/channels/{group}/messages/{memberMsg}/versions", None, [401, 403, 403, 200, 200, 200]),
        row("DELETE", "/api/v1/channels/{id}/messages/{messageId}", "/api/v1/channels/{group}/messages/{memberMsg}", None, [401, 403, 403, 204, 204, 204]),
        row("PUT",    "/api/v1/channels/{id}/messages/{messageId}/reactions/{emoji}", "/api/v1/channels/{group}/messages/{memberMsg}/reactions/%F0%9F%91%8D", None, [401, 403, 403, 200, 200, 200]),
        row("DELETE", "/api/v1/channels/{id}/messages/{messageId}/reactions/{emoji}", "/api/v1/channels/{group}/messages/{memberMsg}/reactions/%F0%9F%91%8D", None, [401, 403, 403, 200, 200, 200]),
        row("GET",    "/api/v1/channels/{id}/messages/{messageId}/receipts", "/api/v1/channels/{group}/messages/{memberMsg}/receipts", None, [401, 403, 403, 200, 200, 200]),
        row("POST",   "/api/v1/channels/{id}/messages/{messageId}/recall", "/api/v1/channels/{group}/messages/{memberMsg}/recall", None, [401, 403, 403, 200, 200, 200]),
        row("PUT",    "/api/v1/channels/{id}/pins/{messageId}", "/api/v1/channels/{group}/pins/{memberMsg}", None,   [401, 403, 403, 403, 204, 204]),
        row("DELETE", "/api/v1/channels/{id}/pins/{messageId}", "/api/v1/channels/{group}/pins/{memberMsg}", None,   [401, 403, 403, 403, 204, 204]),
        row("GET",    "/api/v1/channels/{id}/pins", "/api/v1/channels/{group}/pins", None,                             [401, 403, 403, 200, 200, 200]),
        row("GET",    "/api/v1/messages/search", "/api/v1/messages/search?q=welcome", None,                          [401, 200, 200, 200, 200, 200]),
        row("POST",   "/api/v1/messages/forward", "/api/v1/messages/forward", Some(r#"{"messageIds": ["{memberMsg}"], "channelIds": ["{group}"]}"#), [401, 422, 422, 200, 200, 200]),
        row("POST",   "/api/v1/channels/{id}/read", "/api/v1/channels/{group}/read", Some(r#"{"seq": 1}"#),            [401, 404, 404, 200, 200, 200]),
        row("GET",    "/api/v1/conversations", "/api/v1/conversations", None,                                          [401, 200, 200, 200, 200, 200]),
        row("GET",    "/api/v1/conversations/{channelId}", "/api/v1/conversations/{single}", None,                  [401, 404, 404, 200, 404, 200]),
        row("PATCH",  "/api/v1/conversations/{channelId}", "/api/v1/conversations/{single}", Some(r#"{"isPinned": true}"#), [401, 404, 404, 200, 404, 200]),
        row("DELETE", "/api/v1/conversations/{channelId}", "/api/v1/conversations/{single}", None,                     [401, 404, 404, 204, 404, 204]),
    ]
}

/// The users and ids of one operation's world.
struct World {
    users: BTreeMap<&'static str, TestUser>,
    ids: BTreeMap<&'static str, String>,
}

impl World {
    fn fill(&self, template: &str) -> String {
        let mut s = template.to_owned();
        for (name, id) in &self.ids {
            s = s.replace(&format!("{{{name}}}"), id);
        }
        s
    }
}

/// A fresh world: its own users (made by the administrator, so sign-up budgets are not
/// spent), a group with every role, a one-to-one chat, and pending applications.
async fn world(app: &TestApp, admin: &TestUser, n: usize) -> World {
    let names = ["owner", "admin", "member", "removed", "outsider", "applicant", "joiner", "extra"];
    let made = app.many_users(admin, &format!("w{n}x"), names.len()).await;
    let mut users: BTreeMap<&'static str, TestUser> = names.iter().copied().zip(made).collect();
    // a readable name to search for
    let r = app.patch("/api/v1/users/me", &users["owner"].access, json!({"nickname": "Owner"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let group =
        app.create_group(&users["owner"], "Group", &[&users["admin"], &users["member"], &users["removed"]]).await;
    let owner = users["owner"].access.clone();
    let r = app
        .patch(&format!("/api/v1/channels/{group}/members/{}", users["admin"].id), &owner, json!({"role": "admin"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .call(Method::DELETE, &format!("/api/v1/channels/{group}/members/{}", users["removed"].id), Some(&owner), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let single = app.make_friends(&users["owner"], &users["member"]).await;
    app.send_text(&users["owner"], &group, "welcome", Value::Null).await;
    app.send_text(&users["owner"], &single, "hello friend", Value::Null).await;
    let seq = app.send_text(&users["member"], &group, "from a member", Value::Null).await;
    let r = app.get(&format!("/api/v1/channels/{group}/messages?afterSeq={}", seq - 1), &users["member"].access).await;
    let member_msg = r.body["items"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/api/v1/contacts/applications",
            Some(&users["applicant"].access),
            json!({"contactId": users["owner"].id}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let friend_app = r.body["id"].as_str().unwrap().to_owned();
    let r = app.post(&format!("/api/v1/channels/{group}/applications"), Some(&users["joiner"].access), json!({})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let join_app = r.body["id"].as_str().unwrap().to_owned();
    let mut ids = BTreeMap::new();
    ids.insert("group", group);
    ids.insert("single", single);
    ids.insert("owner", users["owner"].id.clone());
    ids.insert("member", users["member"].id.clone());
    ids.insert("extra", users["extra"].id.clone());
    ids.insert("friendApp", friend_app);
    ids.insert("joinApp", join_app);
    ids.insert("memberMsg", member_msg);
    users.retain(|k, _| ROLES.contains(k));
    World { users, ids }
}

/// What the owner sees of their own data.
async fn snapshot(app: &TestApp, w: &World) -> Value {
    let owner = &w.users["owner"];
    let mut out = serde_json::Map::new();
    for path in [
        "/api/v1/users/me",
        "/api/v1/conversations?limit=200",
        "/api/v1/contacts?limit=200",
        "/api/v1/contacts/applications?direction=incoming&limit=200",
        "/api/v1/contacts/applications?direction=outgoing&limit=200",
        "/api/v1/channels/{group}",
        "/api/v1/channels/{group}/members?limit=200",
        "/api/v1/channels/{group}/messages?limit=200",
        "/api/v1/channels/{group}/applications?limit=200",
        "/api/v1/channels/{single}/messages?limit=200",
    ] {
        let r = app.get(&w.fill(path), &owner.access).await;
        out.insert(path.to_owned(), json!({"status": r.status.as_u16(), "body": r.body}));
    }
    Value::Object(out)
}

/// The statuses the document declares, per `METHOD path`.
fn declared(doc: &Value) -> BTreeMap<String, BTreeSet<u16>> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let statuses = op["responses"].as_object().unwrap().keys().filter_map(|k| k.parse().ok()).collect();
            out.insert(format!("{} {path}", method.to_uppercase()), statuses);
        }
    }
    out
}

async fn every_operation_answers_each_role_as_the_matrix_says(db: Db) {
    // the rate limits stay on at their defaults: one world per operation keeps each
    // user's budgets far from their limits, and users are made by the administrator
    let app = spawn_app_with(db, |c| c.rate_limits.enabled = true).await;
    let doc = app.client.get(format!("{}/api/v1/openapi.json", app.address)).send().await.unwrap();
    let doc: Value = doc.json().await.unwrap();
    let declared = declared(&doc);

    let rows = matrix();
    let in_matrix: BTreeSet<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.method, r.doc_path))
        .chain(PUBLIC.iter().map(|(m, p)| format!("{m} {p}")))
        .collect();
    let in_doc: BTreeSet<String> = declared.keys().cloned().collect();
    let missing: Vec<_> = in_doc.difference(&in_matrix).collect();
    assert!(missing.is_empty(), "operations of the document without a row in the authorization matrix: {missing:?}");
    let stale: Vec<_> = in_matrix.difference(&in_doc).collect();
    assert!(stale.is_empty(), "rows of the matrix for operations the document does not have: {stale:?}");

    let admin = app.admin().await;
    let mut wrong = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let op = format!("{} {}", row.method, row.doc_path);
        let w = world(&app, &admin, n).await;
        let before = snapshot(&app, &w).await;
        // refused calls first, then the others in role order (which may change the world)
        // (the owner's 404 is one of state: the admin removed the member before)
        let refused =
            |i: usize| matches!(row.expect[i], 401 | 403 | 404) && !(ROLES[i] == "owner" && row.expect[i] == 404);
        let order: Vec<usize> =
            (0..ROLES.len()).filter(|&i| refused(i)).chain((0..ROLES.len()).filter(|&i| !refused(i))).collect();
        for i in order {
            let role = ROLES[i];
            let token = w.users.get(role).map(|u| u.access.as_str());
            let method = Method::from_bytes(row.method.as_bytes()).unwrap();
            let body = row.body.map(|b| serde_json::from_str::<Value>(&w.fill(b)).unwrap());
            let r = app.call(method, &w.fill(row.call), token, body).await;
            let got = r.status.as_u16();
            if got != row.expect[i] {
                wrong.push(format!("{op} as {role}: expected {}, got {got} {}", row.expect[i], r.body));
            }
            if !declared[&op].contains(&got) {
                wrong.push(format!("{op} as {role}: {got} is not declared in the document ({:?})", declared[&op]));
            }
            if refused(i) && snapshot(&app, &w).await != before {
                wrong.push(format!("{op} as {role}: refused with {got}, yet the owner's data changed"));
                break;
            }
        }
    }
    assert!(wrong.is_empty(), "the authorization matrix differs:\n{}", wrong.join("\n"));
    app.stop().await;
}

crate::both_backends!(every_operation_answers_each_role_as_the_matrix_says);
