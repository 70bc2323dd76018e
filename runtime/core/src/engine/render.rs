//! Turning templates into concrete requests and outputs, from an execution's data.

use std::borrow::Cow;
use std::sync::Arc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value as Json, json};

use crate::cached_json::CachedJson;
use crate::component::{ComponentRequest, Export, Phase};
use crate::expr::{Variables, is_cel_identifier};
use crate::invoke::{HttpRequest, Request};
use crate::payload::Payload;
use crate::plan::{Call, ComponentCall, HttpCall, NodeId, Plan};

use super::{Execution, Output, StepRun, StepStatus};

/// Everything but RFC 3986's unreserved characters is escaped in a computed path segment or
/// query value, so a value can never add path segments or query parameters of its own.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// The variables expressions see: `input`, `execution`, `services`, `steps.<name>` (state,
/// status, headers, body), and each step's result by name and, for numbered steps, as
/// `stepN`. Each is built only when an expression reads it.
pub(crate) struct ExecutionScope<'a> {
    execution: &'a Execution,
    plan: &'a Plan,
}

impl Variables for ExecutionScope<'_> {
    fn variable(&self, name: &str) -> Option<Cow<'_, Json>> {
        let execution = self.execution;
        match name {
            "steps" => return Some(Cow::Owned(self.steps())),
            // Loading rejects step names that shadow these.
            "input" => return Some(Cow::Borrowed(&execution.input)),
            "execution" => {
                return Some(Cow::Owned(
                    json!({"id": execution.id, "workflow": execution.workflow_id}),
                ));
            }
            "services" => return Some(Cow::Owned(json!(*execution.services))),
            _ => {}
        }
        // `step7`, but not `step07`.
        let step_number = name.strip_prefix("step").and_then(|digits| {
            digits
                .parse::<u32>()
                .ok()
                .filter(|n| n.to_string() == digits)
        });
        // Should a name and a number point at different steps, the later step wins.
        let (_, run) = self
            .plan
            .nodes
            .iter()
            .zip(&execution.steps)
            .rev()
            .filter(|(node, _)| !node.internal)
            .find(|(node, _)| {
                (*node.name == *name && is_cel_identifier(name))
                    || (step_number.is_some() && node.step_number == step_number)
            })?;
        Some(visible_result(run))
    }
}

/// A step's result as expressions see it: null until the step has completed.
fn visible_result(run: &StepRun) -> Cow<'_, Json> {
    match (run.status, &run.result) {
        (StepStatus::Completed, Some(result)) => Cow::Borrowed(result.value()),
        _ => Cow::Owned(Json::Null),
    }
}

impl ExecutionScope<'_> {
    fn steps(&self) -> Json {
        let mut steps = Map::new();
        for (node, run) in self.plan.nodes.iter().zip(&self.execution.steps) {
            if node.internal {
                continue;
            }
            let result = visible_result(run).into_owned();
            let mut entry = Map::new();
            entry.insert("state".into(), json!(step_status_text(run.status)));
            if let Some(response) = &run.response {
                entry.insert("status".into(), json!(response.status));
                entry.insert("headers".into(), json!(response.headers));
            }
            entry.insert("body".into(), result);
            steps.insert(node.name.to_string(), Json::Object(entry));
        }
        Json::Object(steps)
    }
}

impl Execution {
    pub(crate) fn scope<'a>(&'a self, plan: &'a Plan) -> ExecutionScope<'a> {
        ExecutionScope {
            execution: self,
            plan,
        }
    }

    /// Renders a step's call. The idempotency key is the same for every attempt of this visit.
    pub(crate) fn render_call(
        &self,
        plan: &Plan,
        i: NodeId,
        call: &Call,
    ) -> Result<Request, String> {
        let call = match call {
            Call::Http(http) => http,
            Call::Component(c) => {
                return self.render_component(plan, i, c, Export::Step, Phase::Run);
            }
        };
        let node = plan.node(i);
        let visits = self.steps[i].visits;
        // Built by hand: this runs for every step, and `format!` costs twice as much.
        let mut key = String::with_capacity(self.id.len() + node.name.len() + 12);
        key.push_str(&self.id);
        key.push(':');
        key.push_str(&node.name);
        if visits > 1 {
            key.push(':');
            key.push_str(&visits.to_string());
        }
        self.render_request(plan, call, node.timeout.as_millis() as u64, key)
    }

    pub(crate) fn render_compensation(&self, plan: &Plan, k: usize) -> Result<Request, String> {
        let node = plan.node(self.compensations[k].node);
        let call = node
            .compensation
            .as_ref()
            .expect("only steps with a compensation are compensated");
        let call = match call {
            Call::Http(http) => http,
            Call::Component(c) => {
                return self.render_component(
                    plan,
                    self.compensations[k].node,
                    c,
                    Export::Step,
                    Phase::Compensate,
                );
            }
        };
        let key = format!("{}:{}:compensate", self.id, node.name);
        self.render_request(plan, call, node.timeout.as_millis() as u64, key)
    }

    /// Renders a component call: the context the guest sees, with this use's config merged
    /// over the component's defaults.
    pub(crate) fn render_component(
        &self,
        plan: &Plan,
        i: NodeId,
        call: &ComponentCall,
        export: Export,
        phase: Phase,
    ) -> Result<Request, String> {
        let digest = self
            .components
            .get(&call.component)
            .cloned()
            .ok_or_else(|| format!("component `{}` is not bound to any bytes", call.component))?;
        let mut config = call.defaults.clone();
        if let Some(template) = &call.config {
            let overrides = template
                .render(&self.scope(plan))
                .map_err(|e| format!("config: {e}"))?;
            if let (Json::Object(base), Json::Object(extra)) = (&mut config, overrides) {
                base.extend(extra);
            }
        }
        Ok(Request::Component(Box::new(ComponentRequest {
            component: call.component.clone(),
            digest,
            export,
            phase,
            tenant: self.tenant.to_string(),
            execution_id: self.id.to_string(),
            workflow: self.workflow_id.to_string(),
            step: plan.node(i).name.to_string(),
            input: self.input.clone(),
            results: self.results(plan),
            config,
            grants: call.grants.clone(),
            limits: call.limits,
        })))
    }

    /// Completed steps' results by name, shared with the steps.
    fn results(&self, plan: &Plan) -> Output {
        plan.nodes
            .iter()
            .zip(&self.steps)
            .filter(|(node, run)| !node.internal && run.status == StepStatus::Completed)
            .filter_map(|(node, run)| Some((node.name.clone(), run.result.clone()?)))
            .collect()
    }

    fn render_request(
        &self,
        plan: &Plan,
        call: &HttpCall,
        timeout_ms: u64,
        idempotency_key: String,
    ) -> Result<Request, String> {
        let scope = self.scope(plan);
        let base = match self.services.get(&*call.service) {
            Some(base) => Cow::Borrowed(base.as_str()),
            None => Cow::Owned(format!("http://{}", call.service)),
        };
        let base = base.trim_end_matches('/');
        // Room for what the expressions of the endpoint usually add, so it is made once.
        let mut url = String::with_capacity(base.len() + call.endpoint.literal_len() + 32);
        url.push_str(base);
        call.endpoint
            .render_onto(&scope, encode, &mut url)
            .map_err(|e| format!("endpoint: {e}"))?;
        for (n, (name, value)) in call.query.iter().enumerate() {
            let value = value
                .render(&scope, str::to_string)
                .map_err(|e| format!("query `{name}`: {e}"))?;
            let separator = if n == 0 && !url.contains('?') {
                '?'
            } else {
                '&'
            };
            url.push(separator);
            url.push_str(&encode(name));
            url.push('=');
            url.push_str(&encode(&value));
        }
        let headers = call
            .headers
            .iter()
            .map(|(name, value)| {
                let value = value
                    .render(&scope, str::to_string)
                    .map_err(|e| format!("header `{name}`: {e}"))?;
                Ok((name.clone(), value))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let body = match &call.body {
            Some(template) => Some(CachedJson::new(
                template.render(&scope).map_err(|e| format!("body: {e}"))?,
            )),
            // Without a body, a method that carries one sends the execution input.
            None if matches!(&*call.method, "POST" | "PUT" | "PATCH") => Some(self.input.clone()),
            None => None,
        };
        Ok(Request::Http(HttpRequest {
            method: call.method.clone(),
            url,
            headers,
            body,
            timeout_ms,
            idempotency_key,
            service: Some(call.service.clone()),
        }))
    }

    /// The execution's output: `spec.output` when given, else every result by step name.
    pub(crate) fn render_output(&self, plan: &Plan) -> Result<Output, String> {
        if plan.output.is_empty() {
            return Ok(self.results(plan));
        }
        let scope = self.scope(plan);
        plan.output
            .iter()
            .map(|(name, expr)| {
                let value = expr
                    .eval(&scope)
                    .map_err(|e| format!("output `{name}`: {e}"))?;
                Ok((Arc::from(name.as_str()), Arc::new(Payload::from(value))))
            })
            .collect()
    }
}

fn step_status_text(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "pending",
        StepStatus::Evaluating => "evaluating",
        StepStatus::Running => "running",
        StepStatus::Retrying => "retrying",
        StepStatus::Waiting => "waiting",
        StepStatus::Completed => "completed",
        StepStatus::Skipped => "skipped",
        StepStatus::Failed => "failed",
        StepStatus::Cancelled => "cancelled",
    }
}
