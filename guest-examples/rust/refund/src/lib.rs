//! `refund` (compensation): refunds the payment an earlier step took.
//!
//! - config: `{"refund_url": "http://127.0.0.1:PORT/refund"}` (required) and optional
//!   `payment_step` (default `create_payment`): the step whose result holds `payment_id`.
//! - phase `compensate`: `POST refund_url` with `{"payment_id": <results.<payment_step>.payment_id>}`
//!   (and an `idempotency-key: <execution-id>:refund` header), then records
//!   `refunded:<payment_id>` in execution state (value `{"payment_id", "status"}`).
//!   Result: `{"refunded": true, "payment_id", "status": <refund API status>}`.
//! - phase `run`: a fatal error, code `not_a_step` ("this component is not a step (it only
//!   compensates)").
//! - errors: HTTP timeouts/5xx are retryable (the compensation is retried); a missing
//!   payment result is fatal, code `missing_result`.

use orca_sdk::state::{self, Scope};
use orca_sdk::{Context, Error, http};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Config {
    refund_url: String,
    #[serde(default = "default_payment_step")]
    payment_step: String,
}

fn default_payment_step() -> String {
    "create_payment".into()
}

#[derive(Deserialize)]
struct Payment {
    payment_id: serde_json::Value,
}

#[derive(Serialize)]
struct Refunded {
    refunded: bool,
    payment_id: serde_json::Value,
    status: u16,
}

fn refund(ctx: Context) -> Result<Refunded, Error> {
    let config: Config = ctx.config()?;
    let payment: Payment = ctx.result(&config.payment_step)?;
    let response = http::Request::post(&config.refund_url)
        .header("idempotency-key", format!("{}:refund", ctx.execution_id()))
        .json(&serde_json::json!({ "payment_id": payment.payment_id }))
        .send()?
        .error_for_status()?;
    let id = match &payment.payment_id {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let key = format!("refunded:{id}");
    state::set_json(
        Scope::Execution,
        &key,
        &serde_json::json!({ "payment_id": payment.payment_id, "status": response.status }),
        None,
    )?;
    orca_sdk::info!("refunded payment {id}"; status = response.status);
    Ok(Refunded {
        refunded: true,
        payment_id: payment.payment_id,
        status: response.status,
    })
}

orca_sdk::export_compensation!(refund);
