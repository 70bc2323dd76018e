//! `fraud-score` (step): scores an order from a risk API and the order's amount.
//!
//! - input: the order, `{"order_id": "o-1", "amount": 1500, "customer": ...}` (other fields are
//!   passed through to the risk API).
//! - config: `{"risk_url": "http://127.0.0.1:PORT/risk"}` (required; its host must be in the
//!   component's `grants.http`), optional `review_at` (default 40) and `reject_at` (default 70).
//! - calls `POST risk_url` with the order as JSON, expecting `{"risk": 0..1}`.
//! - result: `{"order_id", "score": 0..100, "decision": "approve"|"review"|"reject", "risk"}`
//!   where `score = round(100 * (0.7 * risk + 0.3 * min(amount / 10000, 1)))`, and the
//!   decision is `reject` from `reject_at`, `review` from `review_at`, else `approve`.
//! - errors: a timeout, connection failure or HTTP 5xx/408/429 is retryable; a denied host, a
//!   4xx, or a risk outside 0..1 is fatal.

use orca_sdk::{Context, Error, http};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Order {
    order_id: String,
    amount: f64,
}

#[derive(Deserialize)]
struct Config {
    risk_url: String,
    #[serde(default = "default_review_at")]
    review_at: u32,
    #[serde(default = "default_reject_at")]
    reject_at: u32,
}

fn default_review_at() -> u32 {
    40
}

fn default_reject_at() -> u32 {
    70
}

#[derive(Deserialize)]
struct Risk {
    risk: f64,
}

#[derive(Serialize)]
struct Score {
    order_id: String,
    score: u32,
    decision: &'static str,
    risk: f64,
}

fn score(ctx: Context) -> Result<Score, Error> {
    let order: Order = ctx.input()?;
    let config: Config = ctx.config()?;
    if !order.amount.is_finite() || order.amount < 0.0 {
        return Err(Error::fatal(format!(
            "amount must be a non-negative number, got {}",
            order.amount
        ))
        .with_code("bad_input"));
    }
    // Send the whole order (with any extra fields) to the risk API.
    let body: serde_json::Value = ctx.input()?;
    let risk: Risk = http::post_json(&config.risk_url, &body)?
        .error_for_status()?
        .json()?;
    if !(0.0..=1.0).contains(&risk.risk) {
        return Err(Error::fatal(format!(
            "the risk API returned risk {}, outside 0..1",
            risk.risk
        ))
        .with_code("bad_risk"));
    }
    let amount_factor = (order.amount / 10_000.0).min(1.0);
    let score = (100.0 * (0.7 * risk.risk + 0.3 * amount_factor))
        .round()
        .clamp(0.0, 100.0) as u32;
    let decision = if score >= config.reject_at {
        "reject"
    } else if score >= config.review_at {
        "review"
    } else {
        "approve"
    };
    orca_sdk::info!("scored order {}", order.order_id; score = score, decision = decision, attempt = ctx.attempt());
    Ok(Score {
        order_id: order.order_id,
        score,
        decision,
        risk: risk.risk,
    })
}

orca_sdk::export_step!(score);
