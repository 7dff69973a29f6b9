//! Typing indicators (docs/PROTOCOL.md "typing"): a member's `typing` frame is pushed to
//! the channel's other members online, at most once per [`TYPING_INTERVAL_MS`] per member
//! and channel (the rest are dropped silently), never stored, never counted.

use hermet_domain::Result;
use hermet_domain::id::{ChannelId, UserId};
use hermet_domain::time::now_ms;
use hermet_store::Database;

use crate::{App, Principal};

/// A member's typing is forwarded at most this often per channel.
pub const TYPING_INTERVAL_MS: i64 = 3_000;

/// When each (member, channel) last had its typing forwarded; bounded.
pub(crate) struct TypingThrottle(quick_cache::sync::Cache<(UserId, ChannelId), i64>);

impl TypingThrottle {
    pub(crate) fn new() -> Self {
        Self(quick_cache::sync::Cache::new(100_000))
    }

    /// Whether a typing of `key` at `now` is forwarded (and, if so, records it).
    fn admit(&self, key: (UserId, ChannelId), now: i64) -> bool {
        if self.0.get(&key).is_some_and(|last| now - last < TYPING_INTERVAL_MS) {
            return false;
        }
        self.0.insert(key, now);
        true
    }
}

impl<D: Database> App<D> {
    /// A `typing` frame from `who` in `channel`: pushed to its other active members who
    /// are online. Not in large groups (read diffusion), whose members would get one
    /// frame per keystroke burst of thousands of people.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, channel_id = %channel))]
    pub async fn typing(&self, who: Principal, channel: ChannelId) -> Result<()> {
        let now = now_ms();
        if !self.typing.admit((who.user_id, channel), now) {
            return Ok(());
        }
        let (c, _) = self.membership(who, channel).await?;
        if c.read_diffusion {
            return Ok(());
        }
        let others: Vec<UserId> = self
            .db
            .channel_audience(&[channel])
            .await?
            .into_iter()
            .map(|(_, u, _)| u)
            .filter(|u| *u != who.user_id)
            .collect();
        let sink = self.pipeline.push_sink();
        let online = sink.online(&others).await.map_err(hermet_domain::Error::internal)?;
        if online.is_empty() {
            return Ok(());
        }
        let body = serde_json::json!({
            "type": "typing",
            "data": {"channelId": channel, "userId": who.user_id, "at": now},
        })
        .to_string();
        sink.push_state(&online, body.into()).await.map_err(hermet_domain::Error::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_typing_per_interval_per_member_and_channel() {
        let t = TypingThrottle::new();
        let (a, b, c) = (UserId(1), UserId(2), ChannelId(9));
        assert!(t.admit((a, c), 10_000));
        assert!(!t.admit((a, c), 12_999));
        assert!(t.admit((b, c), 12_999), "another member is throttled apart");
        assert!(t.admit((a, ChannelId(8)), 12_999), "another channel too");
        assert!(t.admit((a, c), 13_000));
    }
}
