//! Sequential, parallel and conditional orchestrations to a DAG.
//!
//! A step without `dependsOn` runs after the step before it, or after every step of the
//! parallel group before it; a step with `dependsOn` runs after exactly the steps it names.
//! Consecutive `parallel: true` steps all start after the step before the group.

use std::collections::BTreeMap;

use crate::definition::{LoadError, LoadedDocument, Manifest, OrchestrationSpec, closest};

use super::calls::{self, CallFields};
use super::common;
use super::expressions;
use super::ranges;
use super::ranges::{CALL_TIMEOUT, STEP_NUMBER};
use super::retries::RetryDefaults;
use super::{Call, DEFAULT_TIMEOUT, Join, Node, NodeId, Plan, Work, component};

pub(super) fn compile(
    set: &crate::definition::DefinitionSet,
    doc: &LoadedDocument,
    manifest: &Manifest<OrchestrationSpec>,
) -> Result<Plan, LoadError> {
    let pos = &doc.position;
    let spec = &manifest.spec;
    if spec.steps.is_empty() {
        return Err(pos.error_at(
            &manifest.kind,
            "spec.steps",
            "an orchestration needs at least one step",
        ));
    }

    let mut seen = BTreeMap::new();
    let mut numbers: BTreeMap<u32, String> = BTreeMap::new();
    for (i, step) in spec.steps.iter().enumerate() {
        common::check_node_name(pos, &step.name, &format!("spec.steps[{i}].name"), &mut seen)?;
        if let Some(n) = &step.step {
            STEP_NUMBER.check(pos, n, format!("spec.steps[{i}].step"), n.value)?;
        }
        if let Some(n) = &step.step
            && let Some(other) = numbers.insert(n.value, step.name.value.clone())
        {
            return Err(pos
                .error_at(
                    n,
                    format!("spec.steps[{i}].step"),
                    format!("step number {} is already used by `{other}`", n.value),
                )
                .with_hint("step numbers name results as stepN, so each must be unique"));
        }
    }
    let known = expressions::known_variables(
        spec.steps.iter().map(|s| s.name.value.as_str()),
        numbers.keys().copied(),
    );
    let index: BTreeMap<&str, NodeId> = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.value.as_str(), i))
        .collect();

    let deps = dependencies(doc, spec, &index)?;
    check_acyclic(doc, spec, &deps)?;

    let defaults = RetryDefaults::new(set, pos, &spec.retry, &spec.retry_policy)?;
    let default_timeout = match &spec.timeout {
        Some(t) => ranges::duration(pos, t, "spec.timeout", &CALL_TIMEOUT)?,
        None => DEFAULT_TIMEOUT,
    };

    let mut nodes = Vec::with_capacity(spec.steps.len());
    for (i, step) in spec.steps.iter().enumerate() {
        let field = format!("spec.steps[{i}]");
        let call = match (&step.api, &step.component) {
            (Some(api), None) => Call::Http(calls::call(
                pos,
                CallFields {
                    label: None,
                    service: api,
                    endpoint: step.endpoint.as_ref(),
                    method: step.method.as_ref(),
                    headers: &step.headers,
                    query: &step.query,
                    body: step.body.as_ref(),
                },
                &field,
                &known,
            )?),
            (None, Some(name)) => {
                calls::reject_http_fields(
                    pos,
                    &field,
                    step.endpoint.as_ref(),
                    step.method.as_ref(),
                    step.body.as_ref(),
                )?;
                Call::Component(component::call(
                    set,
                    pos,
                    name,
                    step.config.as_ref(),
                    None,
                    &format!("{field}.component"),
                    &known,
                )?)
            }
            (Some(api), Some(_)) => {
                return Err(pos
                    .error_at(
                        api,
                        format!("{field}.api"),
                        format!("step `{}` has both `api` and `component`", step.name.value),
                    )
                    .with_hint("a step calls a service or runs a component, not both"));
            }
            (None, None) => {
                return Err(pos
                    .error_at(
                        &step.name,
                        format!("{field}.api"),
                        format!("step `{}` has no `api`", step.name.value),
                    )
                    .with_hint(
                        "name the service the step calls (`api: order-service`) or a component (`component: NAME`)",
                    ));
            }
        };
        if step.config.is_some() && step.component.is_none() {
            return Err(pos.error_at(
                &step.name,
                format!("{field}.config"),
                "`config` is only for component steps",
            ));
        }
        let condition = match &step.condition {
            Some(c) => calls::condition(set, pos, c, &format!("{field}.condition"), &known)?,
            None => None,
        };
        let compensation = match &step.compensation {
            Some(c) => Some(calls::compensation(
                set,
                pos,
                c,
                &format!("{field}.compensation"),
                &known,
            )?),
            None => None,
        };
        let timeout = match &step.timeout {
            Some(t) => ranges::duration(pos, t, &format!("{field}.timeout"), &CALL_TIMEOUT)?,
            None => default_timeout,
        };
        nodes.push(Node {
            name: step.name.value.as_str().into(),
            step_number: step.step.as_ref().map(|n| n.value),
            internal: false,
            join: Join::AllOf(deps[i].iter().map(|&d| vec![d]).collect()),
            condition,
            work: Work::Call(call),
            next: Vec::new(),
            retry: defaults.for_node(set, pos, &step.retry, &step.retry_policy, &field)?,
            timeout,
            compensation,
        });
    }
    for (i, node_deps) in deps.iter().enumerate() {
        for &d in node_deps {
            nodes[d].next.push(i);
        }
    }
    let roots = (0..nodes.len()).filter(|&i| deps[i].is_empty()).collect();
    let output = match &spec.output {
        Some(map) => map
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    expressions::expression(pos, v, &format!("spec.output.{k}"), &known)?,
                ))
            })
            .collect::<Result<_, LoadError>>()?,
        None => Vec::new(),
    };
    Ok(Plan {
        workflow_id: doc.name.as_str().into(),
        kind: doc.kind,
        nodes,
        roots,
        output,
        services: Default::default(),
        components: Default::default(),
    })
}

/// Each step's predecessors, from `dependsOn` or from the order and parallel groups.
fn dependencies(
    doc: &LoadedDocument,
    spec: &OrchestrationSpec,
    index: &BTreeMap<&str, NodeId>,
) -> Result<Vec<Vec<NodeId>>, LoadError> {
    let mut deps = Vec::with_capacity(spec.steps.len());
    let mut before: Vec<NodeId> = Vec::new();
    // The steps a parallel group starts after, and the group's members so far.
    let mut group: Option<(Vec<NodeId>, Vec<NodeId>)> = None;
    for (i, step) in spec.steps.iter().enumerate() {
        let explicit = step
            .depends_on
            .iter()
            .map(|name| {
                let &d = index.get(name.value.as_str()).ok_or_else(|| {
                    let hint = match closest(&name.value, index.keys().copied()) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!(
                            "steps: {}",
                            index.keys().copied().collect::<Vec<_>>().join(", ")
                        ),
                    };
                    doc.position
                        .error_at(
                            name,
                            format!("spec.steps[{i}].dependsOn"),
                            format!("unknown step `{}`", name.value),
                        )
                        .with_hint(hint)
                })?;
                if d == i {
                    return Err(doc.position.error_at(
                        name,
                        format!("spec.steps[{i}].dependsOn"),
                        format!("step `{}` depends on itself", name.value),
                    ));
                }
                Ok(d)
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        let implicit = if step.parallel {
            let (barrier, members) = group.get_or_insert_with(|| (before.clone(), Vec::new()));
            members.push(i);
            barrier.clone()
        } else {
            if let Some((_, members)) = group.take() {
                before = members;
            }
            std::mem::replace(&mut before, vec![i])
        };
        let mut mine = if step.depends_on.is_empty() {
            implicit
        } else {
            explicit
        };
        mine.sort_unstable();
        mine.dedup();
        deps.push(mine);
    }
    Ok(deps)
}

fn check_acyclic(
    doc: &LoadedDocument,
    spec: &OrchestrationSpec,
    deps: &[Vec<NodeId>],
) -> Result<(), LoadError> {
    // Depth-first search; a node met again while on the stack closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        n: NodeId,
        deps: &[Vec<NodeId>],
        marks: &mut [Mark],
        stack: &mut Vec<NodeId>,
    ) -> Option<Vec<NodeId>> {
        marks[n] = Mark::Active;
        stack.push(n);
        for &d in &deps[n] {
            match marks[d] {
                Mark::Active => {
                    let start = stack.iter().position(|&s| s == d).unwrap_or(0);
                    return Some(stack[start..].to_vec());
                }
                Mark::New => {
                    if let Some(cycle) = visit(d, deps, marks, stack) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[n] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; deps.len()];
    for n in 0..deps.len() {
        if marks[n] == Mark::New
            && let Some(cycle) = visit(n, deps, &mut marks, &mut Vec::new())
        {
            let first = cycle[0];
            let mut names: Vec<&str> = cycle
                .iter()
                .map(|&c| spec.steps[c].name.value.as_str())
                .collect();
            names.push(&spec.steps[first].name.value);
            let step = &spec.steps[first];
            let at = step.depends_on.first().unwrap_or(&step.name);
            return Err(doc
                .position
                .error_at(
                    at,
                    format!("spec.steps[{first}].dependsOn"),
                    format!(
                        "dependsOn forms a cycle: {} (each depends on the next)",
                        names.join(" -> ")
                    ),
                )
                .with_hint("remove one of these dependsOn entries"));
        }
    }
    Ok(())
}
