//! Large groups (docs/ARCHITECTURE.md "Large groups"): write diffusion below the
//! threshold, read diffusion at or above it, with the same conversation lists, field by
//! field, and exact counts.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use hermet_app::cache::CacheMode;

use crate::helpers::{Db, TestApp, TestUser, spawn_app_with};
use crate::realtime::Client;

/// A small deterministic generator (SplitMix64): the history is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

/// One server with its own database and a diffusion strategy, and the ids it gave.
struct Replica {
    name: &'static str,
    app: TestApp,
    users: Vec<TestUser>,
    groups: Vec<String>,
}

impl Replica {
    async fn start(db: Db, name: &'static str, threshold: usize, users: usize) -> Replica {
        let app = spawn_app_with(db, |c| {
            c.limits.large_group_threshold = threshold;
            // The reference reads the database; the others read through the cache,
            // which must never show them an older list.
            c.cache.mode = if name == "write" { CacheMode::Off } else { CacheMode::Local };
            if name.ends_with("async") {
                crate::pipeline::async_mode(c);
            }
        })
        .await;
        let admin = app.admin().await;
        let users = app.many_users(&admin, "member", users).await;
        Replica { name, app, users, groups: Vec::new() }
    }

    fn user_index(&self, id: &str) -> Value {
        match self.users.iter().position(|u| u.id == id) {
            Some(i) => json!(i),
            None => json!(format!("unknown user {id}")),
        }
    }

    /// A conversation row with this replica's ids and clock readings replaced by what
    /// every replica agrees on: group and user indexes, and whether a time is set.
    fn normalize(&self, mut c: Value) -> Value {
        let group = self.groups.iter().position(|g| c["channelId"] == g.as_str());
        c["channelId"] = json!(group);
        for t in ["lastActiveAt", "openedAt", "closedAt"] {
            c[t] = json!(!c[t].is_null());
        }
        if let Some(m) = c.get_mut("lastMessage").filter(|m| !m.is_null()) {
            m["id"] = json!(m["id"].is_string());
            m["sentAt"] = json!(m["sentAt"].is_i64());
            let sender = m["senderId"].as_str().unwrap_or_default().to_owned();
            m["senderId"] = self.user_index(&sender);
        }
        c
    }

    /// Every user's normalized list (all pages, in order) and total unread, once the
    /// projectors have applied everything (async mode).
    async fn lists(&self) -> Vec<(Vec<Value>, i64)> {
        if self.name.ends_with("async") {
            crate::pipeline::wait_drained(&self.app, 30).await;
        }
        let mut out = Vec::new();
        for u in &self.users {
            let (items, total) = self.app.conversation_list(u).await;
            out.push((items.into_iter().map(|c| self.normalize(c)).collect(), total));
        }
        out
    }

    /// Sends one request on behalf of user `u`; `{g}` in the path is the group's id here.
    async fn call(&self, method: Method, path: &str, u: usize, group: usize, body: Option<Value>) -> StatusCode {
        let path = path.replace("{g}", &self.groups[group]);
        let body = body.map(|b| self.with_ids(b));
        let r = self.app.call(method, &path, Some(&self.users[u].access), body).await;
        assert!(r.status.is_success(), "{}: {path}: {} {}", self.name, r.status, r.body);
        r.status
    }

    /// The id of group `group`'s message `seq`.
    async fn message_id(&self, group: usize, seq: i64) -> String {
        let sql = format!("SELECT id FROM message WHERE channel_id = {} AND seq = {seq}", self.groups[group]);
        self.app.scalar(&sql).await.to_string()
    }

    /// `{"u": i}` placeholders in a request body become this replica's user ids.
    fn with_ids(&self, body: Value) -> Value {
        match body {
            Value::Object(m) if m.len() == 1 && m.contains_key("u") => {
                json!(self.users[m["u"].as_u64().unwrap_or_default() as usize].id)
            }
            Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, self.with_ids(v))).collect()),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| self.with_ids(v)).collect()),
            v => v,
        }
    }
}

/// What the history generator knows of a group, to make only valid requests.
struct GroupModel {
    owner: usize,
    members: BTreeSet<usize>,
    last_seq: i64,
    /// The sender of each message (seq 1 first), and the seqs recalled.
    senders: Vec<usize>,
    recalled: BTreeSet<usize>,
    dismissed: bool,
}

fn uid(i: usize) -> Value {
    json!({"u": i})
}

/// The same random history of sends, edits, recalls, deletions for oneself, reactions,
/// reads, mentions, joins, leaves, hides, closes, pins, mutes and a dismissal, replayed on
/// four servers: write diffusion only, read diffusion for every group of two or more, and
/// a threshold of 5 that groups cross both ways, once in dual-write and once in async
/// mode (projectors).
/// Their conversation lists and total unread counts agree field by field at every
/// checkpoint (every 10 steps; the reference reads the database, the other three through
/// the cache, filled at one checkpoint and invalidated by the writes before the next),
/// and each passes the consistency checker.
async fn random_history_same_lists_under_every_strategy(db: Db) {
    const USERS: usize = 9;
    let mut replicas = Vec::new();
    for (name, threshold) in [("write", 10_000), ("read", 2), ("crossing", 5), ("crossing, async", 5)] {
        replicas.push(Replica::start(db, name, threshold, USERS).await);
    }
    let mut rng = Rng(0x5EED_0006);
    let mut recalled_previews = 0;
    let mut groups: Vec<GroupModel> = Vec::new();
    let everyone: Vec<usize> = (0..USERS).collect();

    for step in 0..220 {
        let live: Vec<usize> = (0..groups.len()).filter(|g| !groups[*g].dismissed).collect();
        let roll = rng.below(100);
        // (method, path, acting user, group, body); None: nothing valid to do this step
        let op: Option<(Method, String, usize, usize, Option<Value>)> = if live.is_empty()
            || (roll < 6 && live.len() < 7)
        {
            let owner = rng.pick(&everyone);
            let mut members: BTreeSet<usize> = BTreeSet::new();
            for _ in 0..1 + rng.below(5) {
                members.insert(rng.pick(&everyone));
            }
            members.remove(&owner);
            let ids: Vec<Value> = members.iter().map(|m| uid(*m)).collect();
            let body = json!({"name": format!("group {}", groups.len()), "memberIds": ids});
            for r in &mut replicas {
                let body = r.with_ids(body.clone());
                let resp = r.app.post("/api/v1/channels/groups", Some(&r.users[owner].access), body).await;
                assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
                r.groups.push(resp.body["id"].as_str().unwrap().to_owned());
            }
            members.insert(owner);
            groups.push(GroupModel {
                owner,
                members,
                last_seq: 0,
                senders: Vec::new(),
                recalled: BTreeSet::new(),
                dismissed: false,
            });
            None
        } else {
            let g = rng.pick(&live);
            let model = &mut groups[g];
            let members: Vec<usize> = model.members.iter().copied().collect();
            let outsiders: Vec<usize> = everyone.iter().copied().filter(|u| !model.members.contains(u)).collect();
            let member = rng.pick(&members);
            match roll {
                42..=44
                    if (1..=model.senders.len())
                        .any(|s| model.members.contains(&model.senders[s - 1]) && !model.recalled.contains(&s)) =>
                {
                    // a member edits a message of theirs, with new mentions at times
                    let editable: Vec<usize> = (1..=model.senders.len())
                        .filter(|s| model.members.contains(&model.senders[s - 1]) && !model.recalled.contains(s))
                        .collect();
                    let seq = rng.pick(&editable);
                    let sender = model.senders[seq - 1];
                    let mentions = match rng.below(3) {
                        0 => None,
                        1 => Some(json!([uid(rng.pick(&everyone))])),
                        _ => Some(json!([])),
                    };
                    let mut body = json!({"content": {"text": format!("edit {step}")}});
                    if let Some(m) = mentions {
                        body["mentions"] = m;
                    }
                    let path = format!("/api/v1/channels/{{g}}/messages/seq:{seq}");
                    Some((Method::PATCH, path, sender, g, Some(body)))
                }
                35..=39 if model.last_seq > 0 => {
                    // a member reacts, or takes a reaction back (no list changes)
                    let seq = 1 + rng.below(model.last_seq as usize);
                    let method = if rng.below(3) == 0 { Method::DELETE } else { Method::PUT };
                    let emoji = ["%F0%9F%91%8D", ":ok:"][rng.below(2)];
                    let path = format!("/api/v1/channels/{{g}}/messages/seq:{seq}/reactions/{emoji}");
                    if model.recalled.contains(&seq) { None } else { Some((method, path, model.owner, g, None)) }
                }
                40 | 41 if model.last_seq > 0 => {
                    // a member deletes a message for themselves
                    let seq = 1 + rng.below(model.last_seq as usize);
                    let path = format!("/api/v1/channels/{{g}}/messages/seq:{seq}");
                    Some((Method::DELETE, path, model.owner, g, None))
                }
                45..=49 if model.last_seq > 0 => {
                    // the owner recalls one of the group's messages (again, at times)
                    // the last message half the time: previews must follow
                    let seq = if rng.below(2) == 0 {
                        model.last_seq as usize
                    } else {
                        1 + rng.below(model.last_seq as usize)
                    };
                    model.recalled.insert(seq);
                    let path = format!("/api/v1/channels/{{g}}/messages/seq:{seq}/recall");
                    Some((Method::POST, path, model.owner, g, None))
                }
                6..=49 => {
                    model.last_seq += 1;
                    model.senders.push(member);
                    let mentions = match rng.below(10) {
                        0..=5 => Value::Null,
                        6 | 7 => json!((0..1 + rng.below(3)).map(|_| uid(rng.pick(&everyone))).collect::<Vec<_>>()),
                        _ => json!("all"),
                    };
                    let body = json!({"type": "text", "content": {"text": format!("m{step}")}, "mentions": mentions});
                    Some((Method::POST, "/api/v1/channels/{g}/messages".into(), member, g, Some(body)))
                }
                50..=64 => {
                    let seq = rng.below(model.last_seq as usize + 3) as i64;
                    Some((Method::POST, "/api/v1/channels/{g}/read".into(), member, g, Some(json!({"seq": seq}))))
                }
                65..=74 if !outsiders.is_empty() => {
                    let mut add: BTreeSet<usize> = BTreeSet::new();
                    for _ in 0..1 + rng.below(3) {
                        add.insert(rng.pick(&outsiders));
                    }
                    model.members.extend(add.iter().copied());
                    let ids: Vec<Value> = add.iter().map(|u| uid(*u)).collect();
                    let body = json!({"userIds": ids});
                    Some((Method::POST, "/api/v1/channels/{g}/members".into(), model.owner, g, Some(body)))
                }
                75..=83 if members.len() > 1 => {
                    let others: Vec<usize> = members.iter().copied().filter(|u| *u != model.owner).collect();
                    let leaver = rng.pick(&others);
                    model.members.remove(&leaver);
                    if rng.below(2) == 0 {
                        Some((Method::POST, "/api/v1/channels/{g}/leave".into(), leaver, g, None))
                    } else {
                        let path = format!("/api/v1/channels/{{g}}/members/{}", leaver);
                        Some((Method::DELETE, path, model.owner, g, None))
                    }
                }
                84..=88 => {
                    let body = json!({"isHidden": true});
                    Some((Method::PATCH, "/api/v1/conversations/{g}".into(), member, g, Some(body)))
                }
                89..=92 => Some((Method::DELETE, "/api/v1/conversations/{g}".into(), member, g, None)),
                93..=97 => {
                    let body = if rng.below(2) == 0 {
                        json!({"isPinned": rng.below(2) == 0})
                    } else {
                        json!({"isMuted": rng.below(2) == 0})
                    };
                    Some((Method::PATCH, "/api/v1/conversations/{g}".into(), member, g, Some(body)))
                }
                98 => {
                    model.dismissed = true;
                    Some((Method::DELETE, "/api/v1/channels/{g}".into(), model.owner, g, None))
                }
                _ => None,
            }
        };
        if let Some((method, path, user, g, body)) = op {
            for r in &replicas {
                // a path naming a user by index: this replica's id
                let path = match path.rsplit_once("/members/") {
                    Some((head, i)) => format!("{head}/members/{}", r.users[i.parse::<usize>().unwrap()].id),
                    None => path.clone(),
                };
                // a message named by its seq: this replica's id of it
                let path = match path.split_once("/messages/seq:") {
                    Some((head, rest)) => {
                        let (seq, tail) =
                            rest.split_once('/').map_or((rest, String::new()), |(s, t)| (s, format!("/{t}")));
                        format!("{head}/messages/{}{tail}", r.message_id(g, seq.parse().unwrap()).await)
                    }
                    None => path,
                };
                r.call(method.clone(), &path, user, g, body.clone()).await;
            }
        }
        // distinct clock readings per step, so every replica orders by time the same way
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;

        if step % 10 == 9 || step == 219 {
            let reference = replicas[0].lists().await;
            recalled_previews += reference
                .iter()
                .flat_map(|(items, _)| items)
                .filter(|c| c["lastMessage"]["type"] == "recalled")
                .count();
            for r in &replicas[1..] {
                let lists = r.lists().await;
                for (u, (want, got)) in reference.iter().zip(&lists).enumerate() {
                    assert_eq!(
                        want, got,
                        "step {step}: user {u}'s list differs between write diffusion and {}",
                        r.name
                    );
                }
            }
        }
    }

    // recalls, edits, deletions for oneself and reactions happened (and, above, some
    // list showed a recall notice)
    for r in &replicas {
        for event in ["message.recalled", "message.edited", "message.hidden", "message.reaction"] {
            let sql = format!("SELECT COUNT(*) FROM outbox WHERE event_type = '{event}'");
            assert!(r.app.scalar(&sql).await > 0, "{}: no {event}", r.name);
        }
    }
    assert!(recalled_previews > 0, "at some checkpoint a list showed a recall notice as a last message");

    // the strategies really were exercised: read-diffusion rows exist, and the crossing
    // replica moved groups across its threshold in both directions
    let read_rows =
        replicas[1].app.scalar("SELECT COUNT(*) FROM user_conversation_view WHERE read_diffusion = TRUE").await;
    assert!(read_rows > 0, "the read replica has read-diffusion rows");
    assert_eq!(
        replicas[0].app.scalar("SELECT COUNT(*) FROM user_conversation_view WHERE read_diffusion = TRUE").await,
        0
    );
    let crossings = replicas[2]
        .app
        .scalar(
            "SELECT COUNT(*) FROM outbox WHERE event_type IN ('channel.member_added', 'channel.member_removed')
             AND CAST(payload AS TEXT) LIKE '%diffusionChanged%'",
        )
        .await;
    assert!(crossings >= 2, "groups crossed the threshold {crossings} times");
    let mut seen = BTreeMap::new();
    for r in &replicas {
        r.app.assert_consistent().await;
        seen.insert(r.name, r.groups.len());
    }
    assert!(seen.values().all(|n| *n == groups.len()));
}

/// A message to a large group writes no member's conversation row (O(1) writes), while
/// its counts stay exact; one to a small group rewrites every member's row.
async fn large_group_message_writes_no_member_rows(db: Db) {
    let app = spawn_app_with(db, |c| c.limits.large_group_threshold = 20).await;
    let admin = app.admin().await;
    let users = app.many_users(&admin, "big", 30).await;
    let big_members: Vec<&TestUser> = users[1..25].iter().collect();
    let small_members: Vec<&TestUser> = users[1..5].iter().collect();
    let big = app.create_group(&users[0], "big", &big_members).await;
    let small = app.create_group(&users[0], "small", &small_members).await;
    let r = app.get(&format!("/api/v1/channels/{big}"), &users[0].access).await;
    assert_eq!((r.body["memberCount"].as_i64(), r.body["largeGroup"].as_bool()), (Some(25), Some(true)));
    let r = app.get(&format!("/api/v1/channels/{small}"), &users[0].access).await;
    assert_eq!(r.body["largeGroup"], false);

    let versions = |c: &str| {
        format!("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM user_conversation_view WHERE channel_id = {c}")
    };
    let (big_before, small_before) = (app.scalar(&versions(&big)).await, app.scalar(&versions(&small)).await);
    app.send_text(&users[3], &big, "hello all", json!("all")).await;
    app.send_text(&users[4], &big, "hello 2", json!([users[2].id])).await;
    app.send_text(&users[3], &small, "hello small", Value::Null).await;
    assert_eq!(app.scalar(&versions(&big)).await, big_before, "no member row of the large group was written");
    assert!(app.scalar(&versions(&small)).await >= small_before + 5, "every member row of the small group");

    // counts are exact when read: user 2 has two unread and two mentions (@all, @user2)
    let c = app.conversation(&users[2], &big).await.expect("conversation");
    assert_eq!((c["unreadCount"].as_i64(), c["mentionCount"].as_i64()), (Some(2), Some(2)), "{c}");
    assert_eq!(c["lastMessage"]["content"], "hello 2");
    // the senders: their own message advanced their read position
    let c = app.conversation(&users[4], &big).await.unwrap();
    assert_eq!((c["unreadCount"].as_i64(), c["mentionCount"].as_i64()), (Some(0), Some(0)));
    let c = app.conversation(&users[3], &big).await.unwrap();
    assert_eq!((c["unreadCount"].as_i64(), c["mentionCount"].as_i64()), (Some(1), Some(0)));
    // total unread counts both kinds: user 2 has 2 (big) + 1 (small)
    let (list, total) = app.conversation_list(&users[2]).await;
    assert_eq!(total, 3);
    assert_eq!(list[0]["channelId"], small.as_str(), "newest activity first across both kinds");
    assert_eq!(list[1]["channelId"], big.as_str());
    // reading clears it
    let r = app.post(&format!("/api/v1/channels/{big}/read"), Some(&users[2].access), json!({"seq": 2})).await;
    assert_eq!((r.body["unreadCount"].as_i64(), r.body["mentionCount"].as_i64()), (Some(0), Some(0)), "{}", r.body);

    // leaving below the hysteresis bound (20 - 2 = 18: down to 17) turns write diffusion back on
    for u in &users[1..9] {
        let r = app.call(Method::POST, &format!("/api/v1/channels/{big}/leave"), Some(&u.access), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    }
    let r = app.get(&format!("/api/v1/channels/{big}"), &users[0].access).await;
    assert_eq!((r.body["memberCount"].as_i64(), r.body["largeGroup"].as_bool()), (Some(17), Some(false)));
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM user_conversation_view WHERE channel_id = {big} AND read_diffusion = TRUE"
        ))
        .await,
        0
    );
    let c = app.conversation(&users[9], &big).await.unwrap();
    assert_eq!((c["unreadCount"].as_i64(), c["mentionCount"].as_i64()), (Some(2), Some(1)), "{c}");
    app.assert_consistent().await;
}

/// A large group's messages reach online members' sockets without a cursor (members
/// order them by the channel's seq) and are not written to anyone's inbox; an offline
/// member learns of them from `sync.done`, which always carries the large groups' rows,
/// and reads them by seq.
async fn large_group_messages_skip_the_inbox_and_are_caught_up_by_seq(db: Db) {
    let app = spawn_app_with(db, |c| c.limits.large_group_threshold = 4).await;
    let admin = app.admin().await;
    let users = app.many_users(&admin, "rt", 5).await;
    let (a, b, c) = (&users[0], &users[1], &users[2]);
    let members: Vec<&TestUser> = users[1..].iter().collect();
    let g = app.create_group(a, "large", &members).await;
    let (mut bs, _) = Client::connect_to(&app.address, b).await;
    for i in 1..=3 {
        app.send_text(a, &g, &format!("large {i}"), if i == 2 { json!([c.id]) } else { Value::Null }).await;
    }
    for i in 1..=3 {
        let m = bs.next_of("message.new").await;
        assert_eq!((m["data"]["seq"].as_i64(), m["data"]["readDiffusion"].as_bool()), (Some(i), Some(true)), "{m}");
        assert!(m.get("cursor").is_none(), "no inbox cursor on a large group's message: {m}");
    }
    let in_inboxes = app
        .scalar(
            "SELECT COUNT(*) FROM user_inbox i JOIN outbox o ON o.event_id = i.event_id WHERE o.event_type = 'message.sent'",
        )
        .await;
    assert_eq!(in_inboxes, 0, "no inbox row per member for a large group's message");

    // c was offline: the inbox has the group's creation, sync.done the group's row
    let (mut cs, ready) = Client::connect_to(&app.address, c).await;
    let head = ready["cursor"].as_i64().unwrap();
    assert!(head >= 1, "channel.created is in c's inbox");
    cs.send(json!({"type": "sync", "cursor": 0})).await;
    let (frames, done) = crate::realtime::synced(&mut cs).await;
    assert!(frames.iter().all(|f| f["type"] != "message.new"), "{frames:?}");
    let row = done["conversations"].as_array().unwrap().iter().find(|r| r["channelId"] == g.as_str()).cloned();
    let row = row.expect("the large group's row in sync.done");
    assert_eq!((row["unreadCount"].as_i64(), row["mentionCount"].as_i64()), (Some(3), Some(1)), "{row}");
    assert_eq!(row["lastMessage"]["seq"], 3);
    // nothing missed in the inbox: the large group's row still comes
    cs.send(json!({"type": "sync", "cursor": head})).await;
    let (frames, done) = crate::realtime::synced(&mut cs).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert!(done["conversations"].as_array().unwrap().iter().any(|r| r["channelId"] == g.as_str()), "{done}");
    // and the messages by seq
    let h = app.get(&format!("/api/v1/channels/{g}/messages?afterSeq=0"), &c.access).await;
    let seqs: Vec<i64> = h.body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    app.assert_consistent().await;
}

crate::both_backends!(
    random_history_same_lists_under_every_strategy,
    large_group_message_writes_no_member_rows,
    large_group_messages_skip_the_inbox_and_are_caught_up_by_seq
);
