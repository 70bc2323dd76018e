//! `aggregate` (step): merges all earlier results into one object, the workflow's answer.
//!
//! - results: every earlier step's result. Each object result's fields are merged into the
//!   answer in step-name order (a later step's field wins over an earlier one's); a non-object
//!   result is kept under its step's name.
//! - input: `order_id` is taken from the input when no result has one.
//! - config: optional `exclude` (step names to leave out, default none) and `steps_key`
//!   (default `steps`).
//! - result: e.g. `{"order_id", "decision", "payment_id", ..., "steps": ["create_payment", "fraud", ...]}`
//!   where `steps` lists the merged steps' names, sorted.

use orca_sdk::{Context, Error};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    exclude: Vec<String>,
    steps_key: Option<String>,
}

fn aggregate(ctx: Context) -> Result<Value, Error> {
    let config: Config = ctx.config()?;
    let results: Option<Map<String, Value>> = ctx.results()?;
    let mut results: Vec<(String, Value)> = results.unwrap_or_default().into_iter().collect();
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let mut answer = Map::new();
    let mut steps = Vec::new();
    for (step, result) in results {
        if config.exclude.contains(&step) || result.is_null() {
            continue;
        }
        match result {
            Value::Object(fields) => answer.extend(fields),
            other => {
                answer.insert(step.clone(), other);
            }
        }
        steps.push(Value::String(step));
    }
    if !answer.contains_key("order_id") {
        let input: Value = ctx.input()?;
        if let Some(id) = input.get("order_id") {
            answer.insert("order_id".into(), id.clone());
        }
    }
    answer.insert(
        config.steps_key.unwrap_or_else(|| "steps".into()),
        Value::Array(steps),
    );
    Ok(Value::Object(answer))
}

orca_sdk::export_step!(aggregate);
