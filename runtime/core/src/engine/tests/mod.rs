//! The engine fed events by hand: every decision is checked without I/O or clocks.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::*;
use crate::definition::{DefinitionSet, Source};
use crate::invoke::{Failure, FailureKind, Headers, HttpRequest, Request, Response};
use crate::plan::{self, Plan};

fn plan_of(yaml: &str) -> Plan {
    let set = DefinitionSet::load(vec![Source {
        name: "test.yaml".into(),
        text: yaml.into(),
    }])
    .unwrap();
    plan::compile(&set, None).unwrap()
}

fn seed(name: &str) -> Plan {
    let path = format!("{}/../../examples/spec/{name}", env!("CARGO_MANIFEST_DIR"));
    plan_of(&std::fs::read_to_string(path).unwrap())
}

fn start(plan: &Plan, input: Json) -> (Execution, Vec<Action>) {
    let services = plan
        .services
        .iter()
        .map(|s| (s.clone(), format!("http://{s}.test")))
        .collect::<BTreeMap<_, _>>();
    let bindings = Bindings {
        tenant: "default".into(),
        services,
        components: BTreeMap::new(),
    };
    Execution::start(plan, "ex1".into(), input, bindings, 1_000)
}

/// The (step name, attempt, request) of each invoke action.
fn invokes<'a>(
    plan: &'a Plan,
    e: &'a Execution,
    actions: &'a [Action],
) -> Vec<(String, u32, &'a HttpRequest)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Invoke {
                target,
                attempt,
                request,
            } => {
                let Request::Http(r) = &**request else {
                    return None;
                };
                let name = match target {
                    Target::Step(i) => plan.node(*i).name.to_string(),
                    Target::Compensation(k) => format!("undo:{}", e.compensations[*k].step),
                };
                Some((name, *attempt, r))
            }
            _ => None,
        })
        .collect()
}

fn names(plan: &Plan, e: &Execution, actions: &[Action]) -> Vec<String> {
    invokes(plan, e, actions)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect()
}

fn ok(target: Target, attempt: u32, body: Json) -> Event {
    Event::Succeeded {
        target,
        attempt,
        response: Response {
            status: 200,
            headers: Headers::default(),
            body: body.into(),
        },
    }
}

fn fail(target: Target, attempt: u32, status: u16) -> Event {
    Event::Failed {
        target,
        attempt,
        failure: Failure::new(FailureKind::Status(status), format!("returned {status}")),
    }
}

/// The execution's output as JSON (null before it has one).
fn output(e: &Execution) -> Json {
    serde_json::to_value(&e.output).unwrap()
}

fn step(plan: &Plan, name: &str) -> Target {
    Target::Step(plan.find(name).unwrap())
}

mod checkpoints;
mod events;
mod orchestrations;
mod retries;
mod saga;
mod state_machines;
