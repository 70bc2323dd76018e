//! Operations endpoints, without authentication: metrics, liveness and readiness.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::App;
use super::error::{ApiError, ApiResult};

pub(super) async fn metrics(State(app): State<App>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when both stores answer.
pub(super) async fn readyz(State(app): State<App>) -> ApiResult<&'static str> {
    let unavailable = |e: crate::store::StoreError| {
        tracing::warn!(error = %e, "store not ready");
        ApiError::Unavailable("the store is not reachable".into())
    };
    app.tenants.ping().await.map_err(unavailable)?;
    app.executions
        .list(&crate::store::ListFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    Ok("ready\n")
}

pub(super) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}
