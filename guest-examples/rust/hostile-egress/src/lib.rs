//! `hostile-egress` (step): calls a URL the test does NOT allow, and reports what the host said.
//!
//! config: `{"url": "http://127.0.0.1:PORT/..."}` (required), optional `method` (default GET).
//! result (always Ok, so the test can assert on it):
//! - `{"denied": "<host's message>"}` when the host refused the call (the expected outcome),
//! - `{"error": "<kind>", "message": "..."}` for any other failure,
//! - `{"status": N, "body": "..."}` if the call went through (a sandbox hole).

use orca_sdk::http::{self, HttpError};
use orca_sdk::{Context, Error};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Config {
    url: String,
    #[serde(default = "default_method")]
    method: String,
}

fn default_method() -> String {
    "GET".into()
}

fn egress(ctx: Context) -> Result<serde_json::Value, Error> {
    let config: Config = ctx.config()?;
    Ok(match http::Request::new(config.method, config.url).send() {
        Ok(response) => json!({ "status": response.status, "body": response.text() }),
        Err(HttpError::Denied(message)) => json!({ "denied": message }),
        Err(e) => json!({ "error": e.code(), "message": e.to_string() }),
    })
}

orca_sdk::export_step!(egress);
