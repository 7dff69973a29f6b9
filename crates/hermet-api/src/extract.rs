//! Extractors whose rejections use hermet's error format and name the offending field:
//! [`Json`], [`Query`], [`Auth`] and [`IdPath`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use hermet_app::Principal;
use hermet_domain::Error;
use hermet_store::Database;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// Turns a serde error at `path` into a 400 naming the field.
fn field_error(path: &serde_path_to_error::Path, inner: &str) -> Error {
    let mut field = path.to_string();
    // serde reports a missing field at its parent; the name is in the message. (An
    // unknown field is already the last segment of the path.)
    if let Some(name) = inner.split("missing field `").nth(1).and_then(|r| r.split('`').next()) {
        field = if field == "." || field.is_empty() { name.to_owned() } else { format!("{field}.{name}") };
    }
    if field == "." || field.is_empty() {
        return Error::Malformed(format!("invalid request: {inner}"));
    }
    let inner = inner.split(" at line ").next().unwrap_or(inner);
    Error::invalid(field.clone(), format!("{field}: {inner}"))
}

/// A JSON body: 400 for bad JSON or a bad field (named), 413 beyond the body limit.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
            .unwrap_or(false);
        if !is_json {
            return Err(Error::Malformed("expected a JSON body with Content-Type: application/json".into()).into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge("the request body is larger than the limit".into())
            } else {
                Error::Malformed(format!("could not read the request body: {rejection}"))
            }
        })?;
        // Every request body is an object; serde would also read a struct from an array.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::Malformed("the body must be a JSON object".into()).into());
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut *de) {
            // one JSON value and nothing after it but whitespace
            Ok(v) => match de.end() {
                Ok(()) => Ok(Json(v)),
                Err(e) => Err(Error::Malformed(format!("the body is not valid JSON: {e}")).into()),
            },
            Err(e) => {
                let inner = e.inner();
                if inner.is_syntax() || inner.is_eof() {
                    return Err(Error::Malformed(format!("the body is not valid JSON: {inner}")).into());
                }
                Err(field_error(e.path(), &inner.to_string()).into())
            }
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string; a bad parameter is a 400 naming it.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(q));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| field_error(e.path(), &e.inner().to_string()).into())
    }
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}

/// A path segment holding an id: 400 naming `id` when it is not one.
pub struct IdPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| IdPath(v))
            .map_err(|_| Error::invalid("id", "the id in the path is not a valid id").into())
    }
}

/// The authenticated caller: `Authorization: Bearer <token>` or `x-access-token`.
pub struct Auth(pub Principal);

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(token.trim());
    }
    // the original design's header, with or without the scheme
    let v = parts.headers.get("x-access-token").and_then(|v| v.to_str().ok())?.trim();
    Some(match v.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => v,
    })
}

impl<D: Database> FromRequestParts<AppState<D>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState<D>) -> Result<Self, ApiError> {
        let token = bearer(parts).filter(|t| !t.is_empty()).ok_or_else(Error::invalid_token)?;
        let principal = state.app.authenticate(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(principal.user_id));
        Ok(Auth(principal))
    }
}

/// The caller's User-Agent, for session records.
pub struct UserAgent(pub String);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(UserAgent(
            parts.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        ))
    }
}

/// The client's address for rate limits: the last address in the header named by
/// `rate_limits.client_ip_header` (what the nearest proxy appended) when one is set, else
/// the TCP peer; unspecified when neither is known (a router served without connect info).
pub struct ClientIp(pub std::net::IpAddr);

impl<D: Database> FromRequestParts<AppState<D>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState<D>) -> Result<Self, Self::Rejection> {
        let forwarded = state.app.client_ip_header().and_then(|h| {
            let v = parts.headers.get(h)?.to_str().ok()?;
            v.rsplit(',').next()?.trim().parse().ok()
        });
        let peer = || {
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
        };
        Ok(ClientIp(forwarded.unwrap_or_else(peer)))
    }
}
