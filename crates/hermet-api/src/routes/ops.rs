//! Operations: liveness, readiness, Prometheus metrics, the OpenAPI document.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use hermet_store::Database;
use utoipa::OpenApi;

use crate::AppState;
use crate::error::ApiError;

/// GET /healthz — the process is up.
pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"})))
}

/// How long `/readyz` waits for the database: a load balancer polls it, and a frozen
/// database must read as not ready at once, not after the request timeout.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// GET /readyz — the database answers within a second.
pub async fn readyz<D: Database>(State(st): State<AppState<D>>) -> impl IntoResponse {
    if !*st.app.database_up().borrow() {
        return ApiError(hermet_domain::Error::DatabaseUnavailable).into_response();
    }
    match tokio::time::timeout(READY_TIMEOUT, st.app.db.ping()).await {
        Ok(Ok(())) => {
            (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready", "database": st.app.db.backend()})))
                .into_response()
        }
        Ok(Err(e)) => ApiError(e.into()).into_response(),
        Err(_) => ApiError(hermet_domain::Error::DatabaseUnavailable).into_response(),
    }
}

/// GET /metrics — Prometheus text format.
pub async fn metrics<D: Database>(State(st): State<AppState<D>>) -> impl IntoResponse {
    for p in st.app.db.pool_status() {
        let pool = p.pool;
        metrics::gauge!("db_pool_connections", "pool" => pool, "state" => "open").set(p.size as f64);
        metrics::gauge!("db_pool_connections", "pool" => pool, "state" => "idle").set(p.available as f64);
        metrics::gauge!("db_pool_connections", "pool" => pool, "state" => "max").set(p.max_size as f64);
        metrics::gauge!("db_pool_waiting", "pool" => pool).set(p.waiting as f64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render())
}

/// GET /api/v1/openapi.json — the OpenAPI 3 document, generated from the code.
pub async fn openapi() -> impl IntoResponse {
    axum::Json(crate::openapi::ApiDoc::openapi())
}
