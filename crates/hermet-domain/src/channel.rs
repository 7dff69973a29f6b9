//! Channels (one-to-one and group), members and roles.

use serde::{Deserialize, Serialize};

use crate::id::{ChannelId, UserId};

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),* }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn parse_db(s: &str) -> $crate::error::Result<Self> {
                match s {
                    $($text => Ok($name::$variant),)*
                    other => Err($crate::error::Error::internal(anyhow::anyhow!(concat!("unknown ", stringify!($name), " in database: {}"), other))),
                }
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// `single`: a one-to-one chat between friends; `group`: a group chat.
    ChannelType { Single = "single", Group = "group" }
);
text_enum!(
    /// `creating`/`failed` are reserved for asynchronous creation; `archived` is a dismissed group.
    ChannelStatus { Creating = "creating", Active = "active", Failed = "failed", Archived = "archived" }
);
text_enum!(
    MemberRole { Owner = "owner", Admin = "admin", Member = "member" }
);

impl MemberRole {
    /// May manage the group (rename, add and remove members, review join requests).
    pub fn can_manage(self) -> bool {
        matches!(self, MemberRole::Owner | MemberRole::Admin)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub id: ChannelId,
    pub channel_type: ChannelType,
    pub name: String,
    pub avatar: String,
    pub status: ChannelStatus,
    pub channel_info_ver: i64,
    pub member_count: i32,
    pub last_seq: i64,
    pub last_message_at: Option<i64>,
    /// A large group: messages use read diffusion (docs/ARCHITECTURE.md "Large groups").
    pub read_diffusion: bool,
    pub creator_id: UserId,
    /// `lo:hi` user ids of a single channel.
    pub single_pair: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Only the owner and admins may send (docs/API.md "Moderation").
    pub mute_all: bool,
    /// Slow mode: a plain member sends at most one message per this many seconds; 0 off.
    pub slow_mode_secs: i32,
}

impl Channel {
    /// The other user of a single channel.
    pub fn peer_of(&self, user: UserId) -> Option<UserId> {
        let (a, b) = self.single_pair.as_deref()?.split_once(':')?;
        let (a, b): (i64, i64) = (a.parse().ok()?, b.parse().ok()?);
        if a == user.get() {
            Some(UserId(b))
        } else if b == user.get() {
            Some(UserId(a))
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub role: MemberRole,
    pub group_nickname: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
    pub join_seq: i64,
    pub left_seq: Option<i64>,
    /// Muted by a manager: may not send before this time.
    pub muted_until: Option<i64>,
    /// When the member last sent while the group was in slow mode.
    pub slow_sent_at: Option<i64>,
}

impl Member {
    pub fn is_active(&self) -> bool {
        self.left_at.is_none()
    }

    /// Muted at `now`.
    pub fn is_muted(&self, now: i64) -> bool {
        self.muted_until.is_some_and(|t| t > now)
    }
}

/// Longest slow-mode interval: one message a day.
pub const SLOW_MODE_MAX_SECS: i32 = 86_400;

/// The key that makes a pair of users share one single channel, whatever their order.
pub fn single_pair(a: UserId, b: UserId) -> String {
    let (lo, hi) = if a.get() < b.get() { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}
