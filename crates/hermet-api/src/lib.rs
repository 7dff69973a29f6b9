//! The HTTP API of hermet: an axum router over the application services.
//!
//! Conventions (docs/API.md): JSON in camelCase, ids as strings, errors as
//! `{"error": {"code", "message", "field"?}}`, lists paged by opaque cursor, a request
//! id on every response and log line.

pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod schemas;
pub mod security;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use hermet_app::App;
use hermet_domain::Error;
use hermet_store::Database;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted (413 beyond).
    pub body_limit_bytes: usize,
    /// Largest body of admin bulk requests.
    pub admin_body_limit_bytes: usize,
    /// A request still running after this long gets a 503.
    pub request_timeout_secs: u64,
    /// Browser origins allowed to call the API and open WebSockets (CORS); `*`: any.
    pub allowed_origins: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 2 * 1024 * 1024,
            admin_body_limit_bytes: 16 * 1024 * 1024,
            request_timeout_secs: 30,
            allowed_origins: Vec::new(),
        }
    }
}

/// State shared by all handlers: one `Arc`, so the clone every handler's `State` takes
/// is one reference count, not one per part.
pub struct AppState<D: Database>(std::sync::Arc<SharedState<D>>);

/// What [`AppState`] holds.
pub struct SharedState<D: Database> {
    pub app: App<D>,
    pub metrics: PrometheusHandle,
    /// The gateway: this node's WebSocket connections, presence, routing between nodes.
    pub cluster: std::sync::Arc<dyn hermet_app::gateway::Cluster>,
    /// Browser origins allowed to open WebSockets (and call the API).
    pub origins: security::Origins,
}

impl<D: Database> AppState<D> {
    pub fn new(shared: SharedState<D>) -> Self {
        Self(std::sync::Arc::new(shared))
    }
}

impl<D: Database> std::ops::Deref for AppState<D> {
    type Target = SharedState<D>;
    fn deref(&self) -> &SharedState<D> {
        &self.0
    }
}

impl<D: Database> Clone for AppState<D> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// While the database watchdog (`hermet_app::health`) sees the database down, requests
/// are answered 503 `database_unavailable` at once, and those already waiting on it are
/// answered so as soon as it goes down, instead of hanging until the request timeout.
/// (A handler dropped here rolls its transaction back; a message already queued for a
/// batch is committed or not as the database decides, and a retry with its
/// `clientMsgId` finds it.)
async fn database_guard<D: Database>(
    State(st): State<AppState<D>>,
    req: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    let mut up = st.app.database_up();
    if !*up.borrow_and_update() {
        return ApiError(Error::DatabaseUnavailable).into_response();
    }
    let down = async move {
        if up.wait_for(|up| !*up).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = next.run(req) => r,
        () = down => ApiError(Error::DatabaseUnavailable).into_response(),
    }
}

/// A write that answered before its read models caught up (async mode, projection
/// behind: broker down, projector stopped) says so: `X-Read-Model: behind`. The write is
/// committed; lists may not show it yet.
async fn read_model_marker(req: Request<axum::body::Body>, next: axum::middleware::Next) -> Response {
    let (mut r, behind) = hermet_app::pipeline::read_model::tracked(next.run(req)).await;
    if behind {
        r.headers_mut().insert(HeaderName::from_static("x-read-model"), axum::http::HeaderValue::from_static("behind"));
    }
    r
}

/// Every 503 (a dependency away, a request timed out) says when to try again: soon, since
/// a returning database or broker is used at once.
async fn retry_after(mut r: Response) -> Response {
    if r.status() == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().entry(axum::http::header::RETRY_AFTER).or_insert(axum::http::HeaderValue::from_static("1"));
    }
    r
}

/// The whole HTTP surface of one node.
pub fn router<D: Database>(state: AppState<D>, http: &HttpSettings) -> Router {
    use routes::{admin, auth, channels, contacts, conversations, ops, users, ws};

    let admin_routes = Router::new()
        .route("/api/v1/admin/users", post(admin::bulk_create::<D>))
        .route("/api/v1/admin/users/{id}", axum::routing::delete(admin::delete::<D>))
        .route("/api/v1/admin/users/{id}/disable", post(admin::disable::<D>))
        .route("/api/v1/admin/users/{id}/enable", post(admin::enable::<D>))
        .layer(DefaultBodyLimit::max(http.admin_body_limit_bytes));

    let api = Router::new()
        .route("/api/v1/auth/sign-up", post(auth::sign_up::<D>))
        .route("/api/v1/auth/sign-in", post(auth::sign_in::<D>))
        .route("/api/v1/auth/refresh-token", post(auth::refresh_token::<D>))
        .route("/api/v1/auth/sign-out", post(auth::sign_out::<D>))
        .route("/api/v1/users", get(users::profiles::<D>))
        .route("/api/v1/users/me", get(users::me::<D>).patch(users::update_me::<D>))
        .route("/api/v1/users/search", get(users::search::<D>))
        .route("/api/v1/users/{id}", get(users::get_user::<D>))
        .route("/api/v1/users/{id}/presence", get(users::presence::<D>))
        .route("/api/v1/contacts/applications", post(contacts::apply::<D>).get(contacts::applications::<D>))
        .route("/api/v1/contacts/applications/{id}/accept", post(contacts::accept::<D>))
        .route("/api/v1/contacts/applications/{id}/reject", post(contacts::reject::<D>))
        .route("/api/v1/contacts", get(contacts::list::<D>))
        .route("/api/v1/contacts/{id}", patch(contacts::update::<D>).delete(contacts::delete::<D>))
        .route("/api/v1/channels", get(channels::mine::<D>))
        .route("/api/v1/channels/groups", post(channels::create_group::<D>))
        .route("/api/v1/channels/{id}", get(channels::get::<D>).patch(channels::update::<D>))
        .route("/api/v1/channels/{id}/members", get(channels::members::<D>).post(channels::add_members::<D>))
        .route(
            "/api/v1/channels/{id}/members/{user}",
            patch(channels::update_member::<D>).delete(channels::remove_member::<D>),
        )
        .route("/api/v1/channels/{id}/leave", post(channels::leave::<D>))
        .route("/api/v1/channels/{id}/applications", post(channels::apply::<D>).get(channels::applications::<D>))
        .route("/api/v1/channels/{id}/applications/{app}/accept", post(channels::accept_application::<D>))
        .route("/api/v1/channels/{id}/applications/{app}/reject", post(channels::reject_application::<D>))
        .route("/api/v1/channels/{id}/messages", post(channels::send::<D>).get(channels::messages::<D>))
        .route(
            "/api/v1/channels/{id}/messages/{messageId}",
            patch(channels::edit::<D>).delete(channels::delete_for_me::<D>),
        )
        .route("/api/v1/channels/{id}/messages/{messageId}/recall", post(channels::recall::<D>))
        .route("/api/v1/channels/{id}/messages/{messageId}/versions", get(channels::versions::<D>))
        .route("/api/v1/channels/{id}/pins", get(channels::pins::<D>))
        .route("/api/v1/channels/{id}/dismiss", post(channels::dismiss::<D>))
        .route("/api/v1/channels/{id}/bans", get(channels::bans::<D>))
        .route("/api/v1/channels/{id}/bans/{userId}", post(channels::ban::<D>).delete(channels::unban::<D>))
        .route("/api/v1/channels/{id}/pins/{messageId}", put(channels::pin::<D>).delete(channels::unpin::<D>))
        .route("/api/v1/messages/forward", post(channels::forward::<D>))
        .route("/api/v1/messages/search", get(channels::search::<D>))
        .route("/api/v1/channels/{id}/messages/{messageId}/receipts", get(channels::receipts::<D>))
        .route(
            "/api/v1/channels/{id}/messages/{messageId}/reactions/{emoji}",
            put(channels::react::<D>).delete(channels::unreact::<D>),
        )
        .route("/api/v1/channels/{id}/read", post(channels::read::<D>))
        .route("/api/v1/conversations", get(conversations::list::<D>))
        .route(
            "/api/v1/conversations/{id}",
            get(conversations::get_one::<D>).patch(conversations::update::<D>).delete(conversations::close::<D>),
        )
        .layer(DefaultBodyLimit::max(http.body_limit_bytes))
        .merge(admin_routes)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), database_guard::<D>));

    let cors = state.origins.cors();
    let router = Router::new()
        .merge(api)
        .route("/api/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/api/v1/ws", get(ws::upgrade::<D>))
        .route("/readyz", get(ops::readyz::<D>))
        .route("/metrics", get(ops::metrics::<D>))
        .fallback(|| async { ApiError(Error::NotFound("route")) })
        .method_not_allowed_fallback(|| async {
            let mut r = ApiError(Error::Malformed("method not allowed on this route".into())).into_response();
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r
        })
        .layer(axum::middleware::from_fn(read_model_marker))
        .layer(axum::middleware::from_fn(security::headers))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(http.request_timeout_secs)))
        .layer(axum::middleware::map_response(retry_after))
        .layer(CatchPanicLayer::custom(|_| ApiError(Error::internal(anyhow::anyhow!("handler panicked"))).into_response()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", request_id = %id, method = %req.method(), uri = %req.uri().path(), user_id = tracing::field::Empty)
                })
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state);
    // Outermost, so a preflight is answered before anything else runs.
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}
