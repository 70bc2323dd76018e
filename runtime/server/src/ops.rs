//! Operations endpoints: metrics (behind a token on the API's listener, or alone on a
//! listener of their own), liveness and readiness (without authentication).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::App;
use super::auth::Scraper;
use super::error::{ApiError, ApiResult};

pub(super) async fn metrics(_: Scraper, State(app): State<App>) -> impl IntoResponse {
    scrape(State(app)).await
}

/// The metrics, for the `--metrics-listen` listener, which has no other route.
pub(super) async fn scrape(State(app): State<App>) -> impl IntoResponse {
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
    let unavailable = |e: orca_store::StoreError| {
        tracing::warn!(error = %e, "store not ready");
        ApiError::Unavailable("the store is not reachable".into())
    };
    app.tenants.ping().await.map_err(unavailable)?;
    app.executions
        .list(&orca_store::ListFilter {
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
