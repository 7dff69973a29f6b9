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

/// GET /readyz — the database answers.
pub async fn readyz<D: Database>(State(st): State<AppState<D>>) -> impl IntoResponse {
    match st.app.db.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready", "database": st.app.db.backend()})))
            .into_response(),
        Err(e) => ApiError(e.into()).into_response(),
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
