//! The one closed error enum every layer returns. The HTTP layer maps it to a status
//! in one exhaustive match; `Internal` carries a cause that is logged, never returned.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(thiserror::Error)]
pub enum Error {
    /// 400: the request is well-formed JSON but a value is invalid; names the field.
    #[error("{message}")]
    Validation { field: String, message: String },
    /// 400: the request could not be read (bad JSON, wrong content type, bad query).
    #[error("{0}")]
    Malformed(String),
    /// 401: not authenticated; `code` says why (invalid_credentials, invalid_token, …).
    #[error("{message}")]
    Unauthorized { code: &'static str, message: &'static str },
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the named resource does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: conflicts with the current state (duplicate account, …).
    #[error("{message}")]
    Conflict { code: &'static str, message: String, field: Option<&'static str> },
    /// 422: understood but semantically impossible (unknown member ids, …).
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
        details: Option<Box<serde_json::Value>>,
    },
    /// 413: the body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: too many requests.
    #[error("too many requests")]
    RateLimited,
    /// 503: a dependency (database, …) is unavailable or timed out.
    #[error("{0}")]
    Unavailable(&'static str),
    /// 500: a bug or an unexpected failure; the cause is logged, never returned.
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

    /// The stable snake_case code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation { .. } => "validation_failed",
            Error::Malformed(_) => "malformed_request",
            Error::Unauthorized { code, .. } => code,
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict { code, .. } => code,
            Error::Unprocessable { code, .. } => code,
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::RateLimited => "rate_limited",
            Error::Unavailable(_) => "service_unavailable",
            Error::Internal(_) => "internal_error",
        }
    }

    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Validation { field, .. } => Some(field),
            Error::Conflict { field, .. } | Error::Unprocessable { field, .. } => *field,
            _ => None,
        }
    }

    pub fn invalid_token() -> Self {
        Error::Unauthorized {
            code: "invalid_token",
            message: "the access token is missing, invalid, expired or revoked",
        }
    }
}
