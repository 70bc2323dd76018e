//! The routes, in one place.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::{App, admin, components, definitions, executions, openapi, ops, stream};

/// The routes of a `--metrics-listen` address: `/metrics`, without a token.
pub(super) fn metrics_only(app: App) -> Router {
    Router::new()
        .route("/metrics", get(ops::scrape))
        .fallback(ops::not_found)
        .with_state(app)
}

pub fn router(app: App) -> Router {
    let body_limit = app.config.max_body_bytes;
    let component_limit = app.config.max_component_bytes;
    let uploads = Router::new()
        .route(
            "/v1/components",
            post(components::upload).get(components::list),
        )
        .layer(DefaultBodyLimit::max(component_limit));
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/tenants", post(admin::create_tenant))
        .route("/v1/tenants/{tenant}/tokens", post(admin::create_token))
        .route(
            "/v1/definitions",
            post(definitions::apply).get(definitions::list),
        )
        .route(
            "/v1/definitions/{name}",
            get(definitions::get).delete(definitions::delete),
        )
        .route(
            "/v1/components/{digest}",
            get(components::get).delete(components::delete),
        )
        .route(
            "/v1/executions",
            post(executions::start).get(executions::list),
        )
        .route("/v1/executions/{id}", get(executions::get))
        .route("/v1/executions/{id}/events", get(stream::events_of))
        .route("/v1/executions/{id}/cancel", post(executions::cancel))
        .route("/v1/executions/{id}/resume", post(executions::resume))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(uploads)
        .fallback(ops::not_found)
        .with_state(app)
}
