//! The one closed error enum every layer returns, and the catalogue of the codes clients
//! receive. An error's HTTP status is its code's; `Internal` carries a cause that is
//! logged, never returned.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every code a client can receive, with its HTTP status and what it means. `docs/API.md`'s
/// error table is this catalogue (a test checks that they agree), and the HTTP status of an
/// error is its code's.
macro_rules! catalogue {
    ($($variant:ident => $code:literal, $status:literal, $meaning:literal;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order of the catalogue.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable snake_case text clients switch on.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status every response with this code has.
            pub const fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// One line on when a client receives it.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)*
                }
            }
        }
    };
}

catalogue! {
    MalformedRequest => "malformed_request", 400, "the body, query or path could not be read: not JSON, wrong content type, wrong type of a value";
    ValidationFailed => "validation_failed", 400, "a value is invalid; `field` names it";
    InvalidToken => "invalid_token", 401, "the access token is missing, invalid, expired or revoked";
    InvalidCredentials => "invalid_credentials", 401, "wrong account or password (the same answer for both)";
    InvalidRefreshToken => "invalid_refresh_token", 401, "the refresh token is invalid, expired or revoked";
    RefreshTokenReused => "refresh_token_reused", 401, "a retired refresh token came back; its session is now revoked";
    AccountDisabled => "account_disabled", 401, "the account was disabled by an administrator";
    Forbidden => "forbidden", 403, "authenticated but not allowed (not a member, not an admin, not the owner)";
    Banned => "banned", 403, "the caller is banned from this group";
    MemberMuted => "member_muted", 403, "the sender is muted in this group until `details.mutedUntil`";
    ChannelMuted => "channel_muted", 403, "everyone is muted in this group but its owner and admins";
    NotFound => "not_found", 404, "no such resource, or not visible to the caller; also an unknown route";
    AccountTaken => "account_taken", 409, "an account with this e-mail or mobile number already exists";
    AlreadyFriends => "already_friends", 409, "the user is already a friend";
    ApplicationPending => "application_pending", 409, "a concurrent application is pending; try again";
    ApplicationNotPending => "application_not_pending", 409, "the application was already accepted or rejected";
    AlreadyMember => "already_member", 409, "the caller is already a member of the group they ask to join";
    ChannelArchived => "channel_archived", 409, "the group has been dismissed";
    OwnerMustTransfer => "owner_must_transfer", 409, "the owner leaves only after making someone owner or admin, or dismisses the group";
    ClientMsgIdReused => "client_msg_id_reused", 409, "the clientMsgId was already used for a message in another channel";
    DeadLetterNotPending => "dead_letter_not_pending", 409, "the dead letter was already retried or discarded";
    MessageRecalled => "message_recalled", 409, "the message was recalled; it cannot be edited, reacted to, quoted, forwarded or pinned";
    PayloadTooLarge => "payload_too_large", 413, "the body is larger than the configured limit";
    CannotAddSelf => "cannot_add_self", 422, "a friend application to oneself";
    ApplicantInactive => "applicant_inactive", 422, "the applicant's account is no longer active";
    NotFriends => "not_friends", 422, "a one-to-one message to someone who is no longer a friend";
    RecipientInactive => "recipient_inactive", 422, "a one-to-one message to an account that was disabled or deleted";
    NotAGroup => "not_a_group", 422, "a group operation on a one-to-one channel";
    DuplicateMembers => "duplicate_members", 422, "the request repeats user ids (listed in `details`)";
    InvalidMembers => "invalid_members", 422, "unknown, deleted or disabled users (listed in `details`)";
    AlreadyMembers => "already_members", 422, "some users are already members (listed in `details`)";
    BannedUsers => "banned_users", 422, "some users are banned from the group (listed in `details`)";
    GroupFull => "group_full", 422, "the group would exceed `limits.max_group_members`";
    UseLeave => "use_leave", 422, "removing oneself from a group; leave it instead";
    CannotChangeOwnRole => "cannot_change_own_role", 422, "the owner hands over ownership by making another member owner";
    CannotLockOutSelf => "cannot_lock_out_self", 422, "an administrator disabling or deleting their own account";
    RecallWindowPassed => "recall_window_passed", 422, "the sender's time to recall the message (`limits.recall_window_secs`) has passed";
    TooManyReactions => "too_many_reactions", 422, "a member may put at most 20 reactions on one message";
    EditWindowPassed => "edit_window_passed", 422, "the sender's time to edit the message (`limits.edit_window_secs`) has passed";
    ContentNotOfType => "content_not_of_type", 422, "an edit's content does not suit the message's type (a text message needs a non-empty `content.text`)";
    UnknownMessage => "unknown_message", 422, "`replyTo` or `messageIds` names a message the caller cannot read (listed in `details.messageIds`)";
    TooManyPins => "too_many_pins", 422, "a channel may have at most 50 pinned messages";
    RateLimited => "rate_limited", 429, "too many requests";
    SlowMode => "slow_mode", 429, "the group is in slow mode; the sender may send again after `details.retryAfterSecs`";
    InternalError => "internal_error", 500, "a bug; the message is opaque, the cause is logged under the request id";
    ServiceUnavailable => "service_unavailable", 503, "a dependency or the request timed out; try again";
    DatabaseUnavailable => "database_unavailable", 503, "the database is unreachable or does not answer; try again after `Retry-After` seconds";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(thiserror::Error)]
pub enum Error {
    /// The request is well-formed JSON but a value is invalid; names the field.
    #[error("{message}")]
    Validation { field: String, message: String },
    /// The request could not be read (bad JSON, wrong content type, bad query).
    #[error("{0}")]
    Malformed(String),
    /// Not authenticated; `code` says why (one of the 401 codes).
    #[error("{message}")]
    Unauthorized { code: ErrorCode, message: &'static str },
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The named resource does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Understood, and refused: it conflicts with the current state (409 codes) or is
    /// impossible as asked (422 codes); the code decides which.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String, field: Option<&'static str>, details: Option<Box<serde_json::Value>> },
    /// The body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Too many requests of this kind (`limit`, e.g. `sends_per_user`); the caller may try
    /// again after `retry_after_secs` (the `Retry-After` header).
    #[error("too many requests ({limit}); try again in {retry_after_secs} s")]
    RateLimited { limit: &'static str, retry_after_secs: u64 },
    /// A dependency is unavailable or timed out.
    #[error("{0}")]
    Unavailable(&'static str),
    /// The database is unreachable, refuses connections or does not answer in time.
    #[error("the database is unavailable; try again")]
    DatabaseUnavailable,
    /// A bug or an unexpected failure; the cause is logged, never returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal(e) => write!(f, "Internal({e:#})"),
            other => write!(f, "{}({})", other.code(), other),
        }
    }
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation { field: field.into(), message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden(message.into())
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Error::Internal(e.into())
    }

    /// The code clients switch on; its catalogue entry gives the HTTP status.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Validation { .. } => ErrorCode::ValidationFailed,
            Error::Malformed(_) => ErrorCode::MalformedRequest,
            Error::Unauthorized { code, .. } | Error::Refused { code, .. } => *code,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Error::DatabaseUnavailable => ErrorCode::DatabaseUnavailable,
            Error::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The HTTP status of this error: its code's.
    pub fn status(&self) -> u16 {
        self.code().status()
    }

    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Validation { field, .. } => Some(field),
            Error::Refused { field, .. } => *field,
            _ => None,
        }
    }

    pub fn invalid_token() -> Self {
        Error::Unauthorized {
            code: ErrorCode::InvalidToken,
            message: "the access token is missing, invalid, expired or revoked",
        }
    }
}

/// `docs/API.md`'s error table as the catalogue renders it.
pub fn catalogue_table() -> String {
    let mut table = String::from("| code | status | when |\n|---|---|---|\n");
    for c in ErrorCode::ALL {
        table.push_str(&format!("| `{}` | {} | {} |\n", c.as_str(), c.status(), c.meaning()));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_documents_every_code_as_the_catalogue_states_it() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md")).unwrap();
        let table = catalogue_table();
        assert!(doc.contains(&table), "docs/API.md's error table differs from the catalogue; it should read:\n{table}");
    }

    #[test]
    fn codes_are_unique_snake_case_with_error_statuses() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{} is listed twice", c.as_str());
            assert!(c.as_str().chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'), "{}", c.as_str());
            assert!((400..600).contains(&c.status()), "{}: {}", c.as_str(), c.status());
            assert!(!c.meaning().is_empty());
        }
    }

    #[test]
    fn an_error_answers_with_its_codes_status() {
        let e = Error::Refused { code: ErrorCode::GroupFull, message: "full".into(), field: None, details: None };
        assert_eq!((e.code().as_str(), e.status()), ("group_full", 422));
        let e = Error::Refused { code: ErrorCode::AccountTaken, message: "taken".into(), field: None, details: None };
        assert_eq!(e.status(), 409);
        assert_eq!(Error::invalid_token().status(), 401);
        assert_eq!(Error::internal(anyhow::anyhow!("boom")).status(), 500);
    }
}
