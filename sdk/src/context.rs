//! What a component learns about the call it serves.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::orca::plugin::types as wit;
use crate::Error;

/// Why a component is being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Run the step (or evaluate the condition).
    Run,
    /// Undo the step: the execution failed after this step completed.
    Compensate,
}

impl Phase {
    /// `"run"` or `"compensate"`, as in the WIT contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Run => "run",
            Phase::Compensate => "compensate",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The call a component serves: ids, the phase, the attempt, and the execution's JSON
/// documents (input, earlier results, this use's config), decoded on demand with serde.
#[derive(Debug, Clone)]
pub struct Context {
    execution_id: String,
    workflow: String,
    step: String,
    phase: Phase,
    attempt: u32,
    input: String,
    results: String,
    config: String,
}

impl Context {
    /// A context for unit tests of a component's logic on the host (no host calls are made):
    /// phase `run`, attempt 1, input and config `{}`, no results.
    pub fn new(step: impl Into<String>) -> Self {
        Context {
            execution_id: "test-execution".into(),
            workflow: "test-workflow".into(),
            step: step.into(),
            phase: Phase::Run,
            attempt: 1,
            input: "{}".into(),
            results: "{}".into(),
            config: "{}".into(),
        }
    }

    /// Sets the execution input (for tests).
    #[must_use]
    pub fn with_input<T: Serialize + ?Sized>(mut self, input: &T) -> Self {
        self.input = serde_json::to_string(input).expect("input serializes to JSON");
        self
    }

    /// Sets the earlier results, a JSON object keyed by step name (for tests).
    #[must_use]
    pub fn with_results<T: Serialize + ?Sized>(mut self, results: &T) -> Self {
        self.results = serde_json::to_string(results).expect("results serialize to JSON");
        self
    }

    /// Sets this use's config (for tests).
    #[must_use]
    pub fn with_config<T: Serialize + ?Sized>(mut self, config: &T) -> Self {
        self.config = serde_json::to_string(config).expect("config serializes to JSON");
        self
    }

    /// Sets the phase (for tests).
    #[must_use]
    pub fn with_phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }

    /// Sets the attempt number (for tests).
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The execution's id: unique per run, stable across retries and resumes (a good
    /// idempotency key).
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        &self.workflow
    }

    /// The step (or state) this component serves.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Why the component is called.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether this call undoes the step (`phase == Compensate`).
    pub fn is_compensation(&self) -> bool {
        self.phase == Phase::Compensate
    }

    /// 1 for the first attempt, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The execution input, decoded. A fatal error (code `bad_input`) if it does not fit `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, Error> {
        decode(&self.input, "the input", "bad_input")
    }

    /// The results of the steps completed so far (a JSON object keyed by step name), decoded.
    pub fn results<T: DeserializeOwned>(&self) -> Result<T, Error> {
        decode(&self.results, "the results", "bad_results")
    }

    /// The result of the earlier step `step`, decoded. A fatal error (code `missing_result`)
    /// if that step has no result; see [`Context::result_opt`] to tolerate that.
    pub fn result<T: DeserializeOwned>(&self, step: &str) -> Result<T, Error> {
        self.result_opt(step)?.ok_or_else(|| {
            Error::fatal(format!(
                "no result for step `{step}` (it has not run, or produced nothing)"
            ))
            .with_code("missing_result")
        })
    }

    /// The result of the earlier step `step`, decoded, or `None` if it has none.
    pub fn result_opt<T: DeserializeOwned>(&self, step: &str) -> Result<Option<T>, Error> {
        let mut all: serde_json::Map<String, serde_json::Value> =
            decode(&self.results, "the results", "bad_results")?;
        match all.remove(step) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v).map(Some).map_err(|e| {
                Error::fatal(format!("cannot decode the result of step `{step}`: {e}"))
                    .with_code("bad_results")
            }),
        }
    }

    /// This use's config (merged over the component's defaults), decoded. Give `T`
    /// `#[serde(default)]` fields for optional keys. A fatal error (code `bad_config`) if it
    /// does not fit.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, Error> {
        decode(&self.config, "the config", "bad_config")
    }

    /// The input as raw JSON text.
    pub fn input_json(&self) -> &str {
        &self.input
    }

    /// The results as raw JSON text.
    pub fn results_json(&self) -> &str {
        &self.results
    }

    /// The config as raw JSON text.
    pub fn config_json(&self) -> &str {
        &self.config
    }
}

/// Decodes a JSON document; empty text counts as `null`.
pub(crate) fn decode<T: DeserializeOwned>(text: &str, what: &str, code: &str) -> Result<T, Error> {
    let text = if text.trim().is_empty() { "null" } else { text };
    serde_json::from_str(text)
        .map_err(|e| Error::fatal(format!("cannot decode {what}: {e}")).with_code(code))
}

impl From<wit::Context> for Context {
    fn from(c: wit::Context) -> Self {
        Context {
            execution_id: c.execution_id,
            workflow: c.workflow,
            step: c.step,
            phase: match c.phase {
                wit::Phase::Run => Phase::Run,
                wit::Phase::Compensate => Phase::Compensate,
            },
            attempt: c.attempt,
            input: c.input,
            results: c.results,
            config: c.config,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Order {
        order_id: String,
        amount: f64,
    }

    #[test]
    fn typed_accessors() {
        let ctx = Context::new("score")
            .with_input(&json!({"order_id": "o-1", "amount": 12.5, "extra": true}))
            .with_results(&json!({"charge": {"payment_id": "p-9"}, "skipped": null}))
            .with_config(&json!({"threshold": 10}));
        let order: Order = ctx.input().unwrap();
        assert_eq!(
            order,
            Order {
                order_id: "o-1".into(),
                amount: 12.5
            }
        );
        let pid: serde_json::Value = ctx.result("charge").unwrap();
        assert_eq!(pid["payment_id"], "p-9");
        assert_eq!(
            ctx.result_opt::<serde_json::Value>("skipped").unwrap(),
            None
        );
        let missing = ctx.result::<serde_json::Value>("nope").unwrap_err();
        assert_eq!(missing.code.as_deref(), Some("missing_result"));
        #[derive(Deserialize)]
        struct Cfg {
            threshold: u32,
            #[serde(default)]
            other: Option<String>,
        }
        let cfg: Cfg = ctx.config().unwrap();
        assert_eq!((cfg.threshold, cfg.other), (10, None));
        assert_eq!(ctx.phase(), Phase::Run);
        assert!(!ctx.is_compensation());
    }

    #[test]
    fn bad_input_is_fatal_with_code() {
        let ctx = Context::new("s").with_input(&json!({"order_id": 1}));
        let e = ctx.input::<Order>().unwrap_err();
        assert!(!e.retryable);
        assert_eq!(e.code.as_deref(), Some("bad_input"));
        assert!(e.message.starts_with("cannot decode the input"), "{e}");
    }

    #[test]
    fn empty_documents_are_null() {
        let mut ctx = Context::new("s");
        ctx.input = String::new();
        assert_eq!(ctx.input::<Option<u32>>().unwrap(), None);
    }
}
