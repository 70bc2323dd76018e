//! `orca-e2e`: the end-to-end tests of the `orca` binary (in `tests/e2e/`), and the example
//! services the demo runs against (`orca-mock`, built from [`demo_router`]).
//!
//! The example services answer the endpoints the seed examples and `examples/order-saga.yaml`
//! call, with small fixed JSON bodies. They keep no state except a payment counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value as Json, json};

#[derive(Default)]
struct Demo {
    payments: AtomicU64,
    verbose: bool,
}

/// The example services: order, inventory, payment, discount and shipping endpoints.
///
/// With `verbose`, every request is logged to stderr as `METHOD PATH BODY`.
pub fn demo_router(verbose: bool) -> Router {
    let state = Arc::new(Demo {
        verbose,
        ..Demo::default()
    });
    Router::new()
        .route("/api/v1/orders/validate", post(validate_order))
        .route("/api/v1/orders/{id}/amount", post(order_amount))
        .route("/api/v1/inventory/check", post(check_inventory))
        .route("/api/v1/payments", post(create_payment))
        .route("/api/v1/payments/refund", post(refund_payment))
        .route("/api/v1/payment-methods/check", post(check_payment_method))
        .route("/api/v1/discounts/apply", post(apply_discount))
        .route("/api/v1/shipping", post(ship_order))
        .route("/api/v1/shipping/priority", post(priority_shipping))
        .route("/api/v1/risk", post(risk))
        .with_state(state)
}

/// The request body as JSON; an empty or malformed body reads as `null`.
fn input(body: &Bytes) -> Json {
    serde_json::from_slice(body).unwrap_or(Json::Null)
}

fn log(demo: &Demo, path: &str, body: &Bytes) {
    if demo.verbose {
        eprintln!("orca-mock: POST {path} {}", String::from_utf8_lossy(body));
    }
}

async fn validate_order(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    log(&demo, "/api/v1/orders/validate", &body);
    let order_id = input(&body)
        .get("order_id")
        .cloned()
        .unwrap_or_else(|| json!("o-1"));
    axum::Json(json!({"valid": true, "order_id": order_id})).into_response()
}

async fn order_amount(
    State(demo): State<Arc<Demo>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    log(&demo, &format!("/api/v1/orders/{id}/amount"), &body);
    let amount = input(&body)
        .get("amount")
        .cloned()
        .unwrap_or_else(|| json!(1500));
    axum::Json(json!({"id": id, "amount": amount})).into_response()
}

async fn check_inventory(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    log(&demo, "/api/v1/inventory/check", &body);
    axum::Json(json!({"in_stock": true})).into_response()
}

async fn create_payment(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    log(&demo, "/api/v1/payments", &body);
    let n = demo.payments.fetch_add(1, Ordering::Relaxed) + 1;
    axum::Json(json!({"payment_id": format!("pay-{n}"), "status": "captured"})).into_response()
}

async fn refund_payment(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    log(&demo, "/api/v1/payments/refund", &body);
    axum::Json(json!({"refunded": true})).into_response()
}

async fn check_payment_method(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    log(&demo, "/api/v1/payment-methods/check", &body);
    axum::Json(json!({"accepted": true})).into_response()
}

async fn apply_discount(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    log(&demo, "/api/v1/discounts/apply", &body);
    axum::Json(json!({"discount": 10})).into_response()
}

async fn ship_order(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    log(&demo, "/api/v1/shipping", &body);
    if input(&body).get("fail_shipping") == Some(&Json::Bool(true)) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "shipping is unavailable"})),
        )
            .into_response();
    }
    axum::Json(json!({"tracking": "t-1"})).into_response()
}

async fn priority_shipping(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    log(&demo, "/api/v1/shipping/priority", &body);
    axum::Json(json!({"priority": true})).into_response()
}

/// A risk score in 0..1 for the fraud-score component: riskier as the amount grows.
async fn risk(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    log(&demo, "/api/v1/risk", &body);
    let amount = input(&body)
        .get("amount")
        .and_then(Json::as_f64)
        .unwrap_or(0.0);
    axum::Json(json!({"risk": (amount / 20_000.0).min(1.0)})).into_response()
}
