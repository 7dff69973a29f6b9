//! Friendships and applications.

use serde::{Deserialize, Serialize};

use crate::channel::text_enum;
use crate::id::{ApplicationId, UserId};

text_enum!(
    /// How two users found each other.
    FriendSource { Search = "search", Qrcode = "qrcode", Group = "group" }
);
text_enum!(
    ApplicationStatus { Pending = "pending", Approved = "approved", Rejected = "rejected" }
);

pub const DEFAULT_GROUP: &str = "friends";
pub const REMARK_MAX: usize = 64;
pub const GROUP_NAME_MAX: usize = 32;
pub const TAG_MAX: usize = 32;
pub const TAGS_MAX: usize = 20;
pub const APPLICATION_MESSAGE_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct Friendship {
    pub user_id: UserId,
    pub friend_id: UserId,
    pub remark_name: String,
    pub source: FriendSource,
    pub tags: Vec<String>,
    pub group_name: String,
    pub is_starred: bool,
    pub is_blocked: bool,
    pub added_at: i64,
    pub deleted_at: Option<i64>,
}

impl Friendship {
    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactApplication {
    pub id: ApplicationId,
    pub applicant_id: UserId,
    pub target_id: UserId,
    pub message: String,
    pub source: FriendSource,
    pub status: ApplicationStatus,
    pub created_at: i64,
    pub updated_at: i64,
    pub reviewed_at: Option<i64>,
}

impl ContactApplication {
    /// Records the target's decision.
    pub fn review(&mut self, status: ApplicationStatus, now: i64) {
        self.status = status;
        self.updated_at = now;
        self.reviewed_at = Some(now);
    }
}
