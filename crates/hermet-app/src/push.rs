//! The push vocabulary shared by the notifier, the gateway, the read caches and the
//! cluster layers (`hermet-redis`): what a recipient is told ([`Notification`]), where
//! it goes ([`PushSink`] and the in-process sinks [`MemoryPush`] and [`TeePush`]), the
//! frames a connection sends (docs/PROTOCOL.md), and the one boxed-future alias the
//! object-safe traits of this crate return ([`BoxFuture`]).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use hermet_domain::id::UserId;
use hermet_store::ConversationRow;
use serde::Serialize;
use tokio::sync::broadcast;

/// A boxed, `Send` future: what the object-safe traits of hermet return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a recipient is told: the event as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub event_id: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub occurred_at: i64,
}

/// What a [`PushSink`] returns: done when the push was handed on.
pub type PushFuture<'a> = BoxFuture<'a, anyhow::Result<()>>;

/// Delivery to users' devices (implemented by the realtime gateway).
pub trait PushSink: Send + Sync + 'static {
    /// Pushes `notification` to each (user, the user's cursor for it).
    fn push<'a>(&'a self, targets: &'a [(UserId, i64)], notification: &'a Arc<Notification>) -> PushFuture<'a>;

    /// Pushes changed conversation rows to their owners (`conversation.updated`).
    fn push_conversations<'a>(&'a self, _rows: &'a [ConversationRow]) -> PushFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    /// Pushes a frame that is neither stored nor numbered (`typing`) to every device of
    /// `users` online.
    fn push_state<'a>(&'a self, _users: &'a [UserId], _body: Arc<str>) -> PushFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    /// Which of `users` this sink can reach now (online somewhere): the notifier reads
    /// conversation rows only for them. By default all of them.
    fn online<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, anyhow::Result<Vec<UserId>>> {
        Box::pin(async move { Ok(users.to_vec()) })
    }
}

/// An in-process sink that keeps the latest deliveries and broadcasts them to observers.
pub struct MemoryPush {
    recent: Mutex<VecDeque<(UserId, Arc<Notification>)>>,
    capacity: usize,
    live: broadcast::Sender<(UserId, Arc<Notification>)>,
}

impl MemoryPush {
    pub fn new(capacity: usize) -> Self {
        Self { recent: Mutex::new(VecDeque::new()), capacity, live: broadcast::channel(4096).0 }
    }

    /// The latest deliveries, oldest first (at most `capacity`).
    pub fn deliveries(&self) -> Vec<(UserId, Arc<Notification>)> {
        self.recent.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<(UserId, Arc<Notification>)> {
        self.live.subscribe()
    }
}

impl PushSink for MemoryPush {
    fn push<'a>(&'a self, targets: &'a [(UserId, i64)], n: &'a Arc<Notification>) -> PushFuture<'a> {
        Box::pin(async move {
            if let Ok(mut recent) = self.recent.lock() {
                for (u, _) in targets {
                    if recent.len() == self.capacity {
                        recent.pop_front();
                    }
                    recent.push_back((*u, n.clone()));
                }
            }
            for (u, _) in targets {
                let _ = self.live.send((*u, n.clone()));
            }
            Ok(())
        })
    }
}

/// Pushes to several sinks (the gateway and an in-process observer).
pub struct TeePush(pub Vec<Arc<dyn PushSink>>);

impl PushSink for TeePush {
    fn push<'a>(&'a self, targets: &'a [(UserId, i64)], n: &'a Arc<Notification>) -> PushFuture<'a> {
        Box::pin(async move {
            for sink in &self.0 {
                sink.push(targets, n).await?;
            }
            Ok(())
        })
    }

    fn push_conversations<'a>(&'a self, rows: &'a [ConversationRow]) -> PushFuture<'a> {
        Box::pin(async move {
            for sink in &self.0 {
                sink.push_conversations(rows).await?;
            }
            Ok(())
        })
    }

    fn push_state<'a>(&'a self, users: &'a [UserId], body: Arc<str>) -> PushFuture<'a> {
        Box::pin(async move {
            for sink in &self.0 {
                sink.push_state(users, body.clone()).await?;
            }
            Ok(())
        })
    }

    fn online<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, anyhow::Result<Vec<UserId>>> {
        Box::pin(async move {
            let mut all = std::collections::BTreeSet::new();
            for sink in &self.0 {
                all.extend(sink.online(users).await?);
            }
            Ok(all.into_iter().collect())
        })
    }
}

/// A server → client event frame (live or catch-up), serialized without its cursor: the
/// same body goes to every recipient, each with their own cursor ([`Frame::text`]).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventFrame<'a> {
    #[serde(rename = "type")]
    pub frame_type: &'static str,
    /// The domain event's id: the same event pushed twice (at-least-once) has the same id.
    pub event_id: String,
    pub occurred_at: i64,
    pub data: &'a serde_json::Value,
}

impl EventFrame<'_> {
    /// The frame body of a domain event, if it is pushed at all.
    pub fn body(event_type: &str, event_id: i64, occurred_at: i64, data: &serde_json::Value) -> Option<Arc<str>> {
        let frame_type = frame_type(event_type)?;
        let frame = EventFrame { frame_type, event_id: event_id.to_string(), occurred_at, data };
        serde_json::to_string(&frame).ok().map(Arc::from)
    }
}

/// The frame type a domain event is pushed as (docs/PROTOCOL.md).
pub fn frame_type(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "message.sent" => "message.new",
        "message.recalled" => "message.recalled",
        "message.edited" => "message.edited",
        "message.hidden" => "message.hidden",
        "message.reaction" => "message.reaction",
        "message.pinned" => "message.pinned",
        "channel.created" => "channel.created",
        "channel.updated" => "channel.updated",
        "channel.dismissed" => "channel.dismissed",
        "channel.moderation_changed" => "channel.moderation",
        "channel.member_muted" => "member.muted",
        "channel.member_banned" => "member.banned",
        "channel.member_added" => "member.added",
        "channel.member_removed" => "member.removed",
        "channel.member_role_changed" | "channel.member_updated" => "member.updated",
        "channel.application_created" | "channel.application_reviewed" => "channel.application",
        "contact.application_created" | "contact.application_reviewed" => "contact.application",
        "friendship.created" | "friendship.updated" | "friendship.deleted" => "contact.updated",
        "user.profile_updated" => "profile.updated",
        "conversation.read" => "read.updated",
        "conversation.settings_changed" => "conversation.settings",
        _ => return None,
    })
}

/// A frame queued on a connection.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The recipient's cursor for this event; 0 for state frames (`conversation.updated`),
    /// which are not in the inbox.
    pub cursor: i64,
    pub body: Arc<str>,
}

impl Frame {
    /// The text sent: the body with `"cursor"` first when it has one.
    pub fn text(&self) -> String {
        if self.cursor == 0 {
            return self.body.to_string();
        }
        let rest = self.body.strip_prefix('{').unwrap_or(&self.body);
        let sep = if rest.starts_with('}') { "" } else { "," };
        format!("{{\"cursor\":{}{sep}{rest}", self.cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_recipients_cursor_first() {
        let body: Arc<str> = Arc::from("{\"type\":\"message.new\",\"eventId\":\"7\"}");
        let f = Frame { cursor: 42, body: body.clone() };
        let v: serde_json::Value = serde_json::from_str(&f.text()).unwrap();
        assert_eq!(v["cursor"], 42);
        assert_eq!(v["type"], "message.new");
        assert_eq!(Frame { cursor: 0, body }.text(), "{\"type\":\"message.new\",\"eventId\":\"7\"}");
    }
}
