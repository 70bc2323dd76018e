//! Prometheus metrics under the names the specification's recording rules use.
//!
//! `workflow_executions_total{workflow_id,status}` and `workflow_duration_seconds{workflow_id}`
//! are what `07-PrometheusRule.yaml` records from; the rest covers the specification's
//! per-execution `OrchestrationMetrics` (steps executed and failed, API calls) and what an
//! operator needs to see a deployment's health. Label values are bounded: workflow, service and
//! component names and fixed outcome words, never execution ids.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use orca_core::engine::{Execution, Status, StepStatus};
use orca_core::invoke::{Failure, FailureKind, Invoker, Request, Response, TrapKind};

/// Buckets for whole workflows: API orchestrations take milliseconds to minutes.
const WORKFLOW_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Buckets for single calls and component invocations.
const CALL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric Orca exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    executions: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    steps_executed: IntCounterVec,
    steps_failed: IntCounterVec,
    api_calls: IntCounterVec,
    retries: IntCounterVec,
    compensations: IntCounterVec,
    calls: IntCounterVec,
    call_duration: HistogramVec,
    wasm: IntCounterVec,
    wasm_duration: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("each metric is registered once");
    c
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric definition");
    registry
        .register(Box::new(h.clone()))
        .expect("each metric is registered once");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "orca_executions_in_flight",
                "Executions being driven by this process.",
            ),
            &["workflow_id"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(in_flight.clone()))
            .expect("each metric is registered once");
        Metrics {
            executions: counter(
                &registry,
                "workflow_executions_total",
                "Executions that reached a final status.",
                &["workflow_id", "status"],
            ),
            duration: histogram(
                &registry,
                "workflow_duration_seconds",
                "Wall time from an execution's start to its final status.",
                &["workflow_id"],
                WORKFLOW_BUCKETS,
            ),
            in_flight,
            steps_executed: counter(
                &registry,
                "workflow_steps_executed_total",
                "Steps that ran to completion.",
                &["workflow_id"],
            ),
            steps_failed: counter(
                &registry,
                "workflow_steps_failed_total",
                "Steps that failed for good.",
                &["workflow_id"],
            ),
            api_calls: counter(
                &registry,
                "workflow_api_calls_total",
                "Calls made by executions, retries and resumed calls included.",
                &["workflow_id"],
            ),
            retries: counter(
                &registry,
                "workflow_retries_total",
                "Attempts beyond the first, steps and compensations.",
                &["workflow_id"],
            ),
            compensations: counter(
                &registry,
                "workflow_compensations_total",
                "Compensations by outcome.",
                &["workflow_id", "outcome"],
            ),
            calls: counter(
                &registry,
                "orca_api_calls_total",
                "HTTP calls by service and status class (2xx..5xx, timeout, connection, error).",
                &["service", "status_class"],
            ),
            call_duration: histogram(
                &registry,
                "orca_api_call_duration_seconds",
                "HTTP call latency by service.",
                &["service"],
                CALL_BUCKETS,
            ),
            wasm: counter(
                &registry,
                "orca_wasm_invocations_total",
                "Component invocations by outcome (ok, error, deadline, memory, fuel, stack, crash).",
                &["component", "outcome"],
            ),
            wasm_duration: histogram(
                &registry,
                "orca_wasm_invocation_duration_seconds",
                "Component invocation time, instantiation included.",
                &["component"],
                CALL_BUCKETS,
            ),
            registry,
        }
    }

    /// Every family registered, by name (a family shows in [`Metrics::render`] only once it has
    /// a sample).
    pub fn family_names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 12] = [
            &self.executions,
            &self.duration,
            &self.in_flight,
            &self.steps_executed,
            &self.steps_failed,
            &self.api_calls,
            &self.retries,
            &self.compensations,
            &self.calls,
            &self.call_duration,
            &self.wasm,
            &self.wasm_duration,
        ];
        collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn execution_started(&self, workflow_id: &str) {
        self.in_flight.with_label_values(&[workflow_id]).inc();
    }

    /// Records a finished execution's totals. Called once per execution when it ends here.
    pub fn execution_finished(&self, execution: &Execution) {
        let workflow = &*execution.workflow_id;
        self.in_flight.with_label_values(&[workflow]).dec();
        self.executions
            .with_label_values(&[workflow, execution.status.as_str()])
            .inc();
        if let Some(end) = execution.ended_at_ms {
            let seconds = end.saturating_sub(execution.started_at_ms) as f64 / 1000.0;
            self.duration
                .with_label_values(&[workflow])
                .observe(seconds);
        }
        let steps = execution.steps.iter().filter(|s| !s.internal);
        let (mut executed, mut failed, mut retries) = (0u64, 0u64, 0u64);
        for step in steps {
            match step.status {
                StepStatus::Completed => executed += 1,
                StepStatus::Failed => failed += 1,
                _ => {}
            }
            retries += step.attempts.len().saturating_sub(1) as u64;
        }
        for comp in &execution.compensations {
            retries += comp.attempts.len().saturating_sub(1) as u64;
            let outcome = if comp.status == StepStatus::Completed {
                "completed"
            } else {
                "failed"
            };
            self.compensations
                .with_label_values(&[workflow, outcome])
                .inc();
        }
        self.steps_executed
            .with_label_values(&[workflow])
            .inc_by(executed);
        self.steps_failed
            .with_label_values(&[workflow])
            .inc_by(failed);
        self.retries.with_label_values(&[workflow]).inc_by(retries);
        self.api_calls
            .with_label_values(&[workflow])
            .inc_by(u64::from(execution.api_calls));
        debug_assert!(execution.status != Status::Running);
    }

    fn observe_call(&self, request: &Request, took: Duration, outcome: &Result<Response, Failure>) {
        match request {
            Request::Http(http) => {
                let service = http.service.as_deref().unwrap_or("unknown");
                let class = match outcome {
                    Ok(r) => status_class(r.status),
                    Err(f) => match f.kind {
                        FailureKind::Status(s) => status_class(s),
                        FailureKind::Timeout => "timeout",
                        FailureKind::Connection => "connection",
                        _ => "error",
                    },
                };
                self.calls.with_label_values(&[service, class]).inc();
                self.call_duration
                    .with_label_values(&[service])
                    .observe(took.as_secs_f64());
            }
            Request::Component(c) => {
                let outcome = match outcome {
                    Ok(_) => "ok",
                    Err(f) => match f.kind {
                        FailureKind::Trap(TrapKind::Deadline) => "deadline",
                        FailureKind::Trap(TrapKind::Memory) => "memory",
                        FailureKind::Trap(TrapKind::Fuel) => "fuel",
                        FailureKind::Trap(TrapKind::StackOverflow) => "stack",
                        FailureKind::Trap(_) => "crash",
                        _ => "error",
                    },
                };
                self.wasm.with_label_values(&[&c.component, outcome]).inc();
                self.wasm_duration
                    .with_label_values(&[&c.component])
                    .observe(took.as_secs_f64());
            }
        }
    }
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// An [`Invoker`] that records each call's outcome and latency.
pub struct Metered {
    inner: Arc<dyn Invoker>,
    metrics: Metrics,
}

impl Metered {
    pub fn new(inner: Arc<dyn Invoker>, metrics: Metrics) -> Self {
        Metered { inner, metrics }
    }
}

#[async_trait]
impl Invoker for Metered {
    async fn invoke(&self, request: &Request, attempt: u32) -> Result<Response, Failure> {
        let started = Instant::now();
        let outcome = self.inner.invoke(request, attempt).await;
        self.metrics
            .observe_call(request, started.elapsed(), &outcome);
        outcome
    }
}

/// Execution-level metrics follow the runner's lifecycle notifications.
impl orca_core::progress::Progress for Metrics {
    fn started(&self, execution: &Execution) {
        self.execution_started(&execution.workflow_id);
    }

    fn resumed(&self, execution: &Execution) {
        self.execution_started(&execution.workflow_id);
    }

    fn changed(&self, _plan: &orca_core::plan::Plan, _before: &Execution, _after: &Execution) {}

    fn compares_changes(&self) -> bool {
        false
    }

    fn finished(&self, execution: &Execution) {
        self.execution_finished(execution);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_core::invoke::HttpRequest;

    struct Answer(Result<Response, Failure>);

    #[async_trait]
    impl Invoker for Answer {
        async fn invoke(&self, _: &Request, _: u32) -> Result<Response, Failure> {
            self.0.clone()
        }
    }

    fn request(service: &str) -> Request {
        Request::Http(HttpRequest {
            method: "POST".into(),
            url: "http://x/y".into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: 1000,
            idempotency_key: "k".into(),
            service: Some(service.into()),
        })
    }

    #[test]
    fn every_family_is_named_even_before_it_has_samples() {
        let names = Metrics::new().family_names();
        assert_eq!(names.len(), 12);
        assert!(names.contains(&"workflow_executions_total".to_string()));
        assert!(names.contains(&"workflow_duration_seconds".to_string()));
    }

    #[tokio::test]
    async fn calls_are_counted_by_service_and_status_class() {
        let metrics = Metrics::new();
        let ok = Metered::new(
            Arc::new(Answer(Ok(Response {
                status: 201,
                headers: Default::default(),
                body: serde_json::Value::Null.into(),
            }))),
            metrics.clone(),
        );
        let busy = Metered::new(
            Arc::new(Answer(Err(Failure::new(FailureKind::Status(503), "busy")))),
            metrics.clone(),
        );
        ok.invoke(&request("orders"), 1).await.unwrap();
        ok.invoke(&request("orders"), 1).await.unwrap();
        busy.invoke(&request("payments"), 1).await.unwrap_err();
        let text = metrics.render();
        assert!(
            text.contains("orca_api_calls_total{service=\"orders\",status_class=\"2xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("orca_api_calls_total{service=\"payments\",status_class=\"5xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("orca_api_call_duration_seconds_count{service=\"orders\"} 2"),
            "{text}"
        );
    }
}
