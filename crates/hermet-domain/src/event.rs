//! Domain events. A command records its events in the outbox in the same transaction as
//! its write-side changes; projections and notifiers consume them (see docs/EVENTS.md).

use serde::{Deserialize, Serialize};

use crate::id::{EventId, UserId};

/// Every event hermet emits. The serde tag is the event type as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum DomainEvent {
    #[serde(rename = "user.profile_updated")]
    UserProfileUpdated(UserProfileUpdated),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfileUpdated {
    pub user_id: UserId,
    pub profile_ver: i64,
    pub nickname: String,
    pub avatar: String,
    pub gender: String,
    pub region: String,
    pub birthday: Option<String>,
    pub tagline: String,
    /// Names of the fields that changed, camelCase.
    pub changed: Vec<String>,
    pub updated_at: i64,
}

impl DomainEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::UserProfileUpdated(_) => "user.profile_updated",
        }
    }

    /// Payload schema version; bumped when a payload changes incompatibly.
    pub fn schema_version(&self) -> i32 {
        match self {
            DomainEvent::UserProfileUpdated(_) => 1,
        }
    }

    /// The aggregate whose order the event belongs to: (aggregate type, key).
    pub fn aggregate(&self) -> (&'static str, String) {
        match self {
            DomainEvent::UserProfileUpdated(e) => ("user", e.user_id.to_string()),
        }
    }

    pub fn payload(&self) -> serde_json::Value {
        match self {
            DomainEvent::UserProfileUpdated(e) => serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// An outbox row: one event ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub id: EventId,
    pub event_type: &'static str,
    pub schema_version: i32,
    pub aggregate_type: &'static str,
    pub aggregate_key: String,
    pub occurred_at: i64,
    pub payload: serde_json::Value,
}

impl OutboxEvent {
    pub fn new(id: EventId, occurred_at: i64, event: &DomainEvent) -> Self {
        let (aggregate_type, aggregate_key) = event.aggregate();
        Self {
            id,
            event_type: event.event_type(),
            schema_version: event.schema_version(),
            aggregate_type,
            aggregate_key,
            occurred_at,
            payload: event.payload(),
        }
    }
}
