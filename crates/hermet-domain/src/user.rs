//! Users: account kinds, statuses, profiles and the profile patch.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::UserId;
use crate::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Email,
    Mobile,
}

/// A normalized sign-in account: a lower-cased e-mail or an E.164 mobile number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Account {
    Email(String),
    Mobile(String),
}

impl Account {
    pub fn parse(kind: AccountType, raw: &str) -> Result<Self> {
        Ok(match kind {
            AccountType::Email => Account::Email(validate::email("account", raw)?),
            AccountType::Mobile => Account::Mobile(validate::mobile("account", raw)?),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Account::Email(s) | Account::Mobile(s) => s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
            UserStatus::Deleted => "deleted",
        }
    }

    pub fn parse_db(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            "deleted" => Ok(UserStatus::Deleted),
            other => Err(Error::internal(anyhow::anyhow!("unknown user status in database: {other}"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    #[default]
    Unknown,
    Male,
    Female,
}

impl Gender {
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Unknown => "unknown",
            Gender::Male => "male",
            Gender::Female => "female",
        }
    }

    pub fn parse_db(s: &str) -> Result<Self> {
        match s {
            "unknown" => Ok(Gender::Unknown),
            "male" => Ok(Gender::Male),
            "female" => Ok(Gender::Female),
            other => Err(Error::internal(anyhow::anyhow!("unknown gender in database: {other}"))),
        }
    }
}

/// A user row of the write side.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub nickname: String,
    pub avatar: String,
    pub gender: Gender,
    pub region: String,
    pub birthday: Option<String>,
    pub tagline: String,
    pub profile_ver: i64,
    pub status: UserStatus,
    pub deleted_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A user to insert. `password_hash` is `None` for accounts that cannot sign in with
/// a password (bulk-created by an admin without a credential).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub account: Account,
    pub password_hash: Option<String>,
    pub nickname: String,
    pub avatar: String,
    pub created_at: i64,
}

/// What `PATCH /users/me` may change; `None` leaves a field as it is. `birthday:
/// Some(None)` clears the birthday.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfilePatch {
    pub nickname: Option<String>,
    pub avatar: Option<String>,
    pub gender: Option<Gender>,
    pub region: Option<String>,
    pub birthday: Option<Option<String>>,
    pub tagline: Option<String>,
}

impl ProfilePatch {
    pub fn is_empty(&self) -> bool {
        *self == ProfilePatch::default()
    }

    /// Applies the patch to a copy of `user` (the caller bumps versions and times).
    pub fn apply(&self, user: &User) -> User {
        let mut u = user.clone();
        if let Some(v) = &self.nickname {
            u.nickname = v.clone();
        }
        if let Some(v) = &self.avatar {
            u.avatar = v.clone();
        }
        if let Some(v) = self.gender {
            u.gender = v;
        }
        if let Some(v) = &self.region {
            u.region = v.clone();
        }
        if let Some(v) = &self.birthday {
            u.birthday = v.clone();
        }
        if let Some(v) = &self.tagline {
            u.tagline = v.clone();
        }
        u
    }
}

/// The key user search orders and matches nicknames by: Unicode lower case, so that
/// both backends match prefixes the same way with a plain index.
pub fn search_key(nickname: &str) -> String {
    nickname.to_lowercase()
}
