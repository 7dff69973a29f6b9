//! Maps the domain [`Error`] to HTTP: the status is its code's (the catalogue in
//! `hermet_domain::ErrorCode`). Internal causes are
//! logged with the request's span (and so its request id) and never returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hermet_domain::Error;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code from the catalogue (docs/API.md), e.g. `validation_failed`.
    #[schema(schema_with = code_schema)]
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request field the error is about, when there is one (e.g. `nickname`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Structured details (e.g. the unknown ids of a 422).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// The catalogue's codes, as an enum.
fn code_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::schema::Type::String))
        .enum_values(Some(hermet_domain::ErrorCode::ALL.iter().map(|c| c.as_str())))
        .build()
}

/// An [`Error`] on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<hermet_store::StoreError> for ApiError {
    fn from(e: hermet_store::StoreError) -> Self {
        ApiError(e.into())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn status_of(e: &Error) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// What a client is told about `e` (HTTP bodies and WebSocket `error` frames).
pub fn detail(e: &Error) -> ErrorDetail {
    let details = match e {
        Error::Refused { details, .. } => details.as_deref().cloned(),
        Error::RateLimited { limit, retry_after_secs } => {
            Some(serde_json::json!({"limit": limit, "retryAfterSecs": retry_after_secs}))
        }
        _ => None,
    };
    ErrorDetail {
        code: e.code().as_str().to_owned(),
        message: e.to_string(),
        field: e.field().map(str::to_owned),
        details,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = status_of(&e);
        if let Error::Internal(cause) = &e {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let body = ErrorBody { error: detail(&e) };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        if let Error::RateLimited { retry_after_secs, .. } = &e {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(*retry_after_secs));
        }
        resp
    }
}
