//! `WorkflowDefinition` state machines to plan nodes.
//!
//! Each state becomes a node that starts whenever a transition reaches it (so loops through a
//! choice work). A parallel state becomes two nodes: an internal fork that starts every branch,
//! and a join, named after the state, that waits for each branch to end and holds their results.
//! State names are unique across the whole machine, branches included, because every result is
//! stored under its state's name.

use std::collections::{BTreeMap, BTreeSet};

use crate::definition::{
    DefinitionSet, LoadError, LoadedDocument, Manifest, StateDef, StateMachineSpec, Text, closest,
};

use super::calls::{self, CallFields};
use super::common;
use super::expressions;
use super::ranges;
use super::ranges::{CALL_TIMEOUT, WAIT_SECONDS};
use super::retries::RetryDefaults;
use super::{Call, DEFAULT_TIMEOUT, Join, Node, NodeId, Plan, Work, component};

const TYPES: [&str; 7] = [
    "task", "choice", "parallel", "wait", "pass", "succeed", "fail",
];

/// A state with where it sits.
struct Entry<'a> {
    def: &'a StateDef,
    field: String,
    /// Scope: 0 for the top level, then one per branch.
    scope: usize,
    /// The parallel state (entry index) whose join this state's end leads to.
    parent: Option<usize>,
    kind: &'a str,
}

pub(super) fn compile(
    set: &DefinitionSet,
    doc: &LoadedDocument,
    manifest: &Manifest<StateMachineSpec>,
) -> Result<Plan, LoadError> {
    let pos = &doc.position;
    let spec = &manifest.spec;

    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut scopes: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    collect(
        doc,
        &spec.states,
        "spec.states",
        0,
        None,
        &mut entries,
        &mut scopes,
    )?;
    if entries.is_empty() {
        return Err(pos.error_at(
            &spec.start_at,
            "spec.states",
            "a workflow needs at least one state",
        ));
    }

    let mut seen = BTreeMap::new();
    for e in &entries {
        common::check_node_name(pos, &e.def.name, &format!("{}.name", e.field), &mut seen)?;
    }
    let known = expressions::known_variables(entries.iter().map(|e| e.def.name.value.as_str()), []);

    // Node ids: one per state, plus a fork node for each parallel state, after all states.
    let mut fork_of: BTreeMap<usize, NodeId> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.kind == "parallel" {
            fork_of.insert(i, entries.len() + fork_of.len());
        }
    }
    let by_name: BTreeMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.def.name.value.as_str(), i))
        .collect();
    let entry_node = |i: usize| fork_of.get(&i).copied().unwrap_or(i);
    // A transition target must be a state of the same scope.
    let target = |name: &Text, scope: usize, field: String| -> Result<usize, LoadError> {
        match by_name.get(name.value.as_str()) {
            Some(&t) if entries[t].scope == scope => Ok(t),
            Some(_) => Err(pos
                .error_at(
                    name,
                    field,
                    format!("state `{}` is in another branch or level", name.value),
                )
                .with_hint(
                    "a transition can only reach states of its own branch (or of the top level)",
                )),
            None => {
                let same: Vec<&str> = entries
                    .iter()
                    .filter(|e| e.scope == scope)
                    .map(|e| e.def.name.value.as_str())
                    .collect();
                let hint = match closest(&name.value, same.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("states here: {}", same.join(", ")),
                };
                Err(pos
                    .error_at(name, field, format!("unknown state `{}`", name.value))
                    .with_hint(hint))
            }
        }
    };

    let defaults = RetryDefaults::new(set, pos, &spec.retry, &spec.retry_policy)?;
    let default_timeout = match &spec.timeout {
        Some(t) => ranges::duration(pos, t, "spec.timeout", &CALL_TIMEOUT)?,
        None => DEFAULT_TIMEOUT,
    };

    let start = target(&spec.start_at, 0, "spec.startAt".into())?;
    let mut nodes: Vec<Node> = Vec::with_capacity(entries.len() + fork_of.len());
    let mut forks: Vec<Node> = Vec::new();
    let mut edges: Vec<(usize, usize)> = Vec::new(); // state -> state, for reachability
    for (i, e) in entries.iter().enumerate() {
        let s = e.def;
        let f = &e.field;
        check_fields(doc, e)?;
        let mut next: Vec<NodeId> = Vec::new();
        let ends = s.end.as_ref().is_some_and(|b| b.value) || e.kind == "succeed";
        if let Some(n) = &s.next {
            let t = target(n, e.scope, format!("{f}.next"))?;
            edges.push((i, t));
            next.push(entry_node(t));
        } else if ends && let Some(p) = e.parent {
            next.push(p);
        }
        let mut join = Join::Any;
        let mut compensation = None;
        let work = match e.kind {
            "task" => {
                let resource = s.resource.as_ref().ok_or_else(|| {
                    pos.error_at(&s.name, format!("{f}.resource"), format!("task state `{}` has no `resource`", s.name.value))
                        .with_hint("name the service (or the Component) the task calls, like `resource: order-service`")
                })?;
                if let Some(c) = &s.compensation {
                    compensation = Some(calls::compensation(
                        set,
                        pos,
                        c,
                        &format!("{f}.compensation"),
                        &known,
                    )?);
                }
                if component::find(set, &resource.value).is_some() {
                    calls::reject_http_fields(
                        pos,
                        f,
                        s.endpoint.as_ref(),
                        s.method.as_ref(),
                        s.body.as_ref(),
                    )?;
                    Work::Call(Call::Component(component::call(
                        set,
                        pos,
                        resource,
                        s.config.as_ref(),
                        None,
                        &format!("{f}.resource"),
                        &known,
                    )?))
                } else {
                    if let Some(config) = &s.config {
                        return Err(pos
                            .error_at(config, format!("{f}.config"), format!("`config` is only for components, and `{}` is not a Component", resource.value))
                            .with_hint("define the component in a `kind: Component` document loaded with the workflow"));
                    }
                    Work::Call(Call::Http(calls::call(
                        pos,
                        CallFields {
                            label: None,
                            service: resource,
                            endpoint: s.endpoint.as_ref(),
                            method: s.method.as_ref(),
                            headers: &s.headers,
                            query: &s.query,
                            body: s.body.as_ref(),
                        },
                        f,
                        &known,
                    )?))
                }
            }
            "pass" => Work::Pass(
                s.result
                    .as_ref()
                    .map(|r| expressions::json_template(pos, r, &format!("{f}.result"), &known))
                    .transpose()?,
            ),
            "wait" => {
                let seconds = s.seconds.as_ref().ok_or_else(|| {
                    pos.error_at(
                        &s.name,
                        format!("{f}.seconds"),
                        format!("wait state `{}` has no `seconds`", s.name.value),
                    )
                })?;
                let seconds =
                    WAIT_SECONDS.check(pos, seconds, format!("{f}.seconds"), seconds.value)?;
                Work::Wait(std::time::Duration::from_secs_f64(seconds))
            }
            "choice" => {
                let choices = s
                    .choices
                    .as_ref()
                    .filter(|c| !c.value.is_empty())
                    .ok_or_else(|| {
                        pos.error_at(
                            &s.name,
                            format!("{f}.choices"),
                            format!("choice state `{}` has no `choices`", s.name.value),
                        )
                        .with_hint("add `choices:` with `condition` and `next` for each rule")
                    })?;
                let mut rules = Vec::new();
                for (r, rule) in choices.value.iter().enumerate() {
                    let rf = format!("{f}.choices[{r}]");
                    let expr = expressions::expression(
                        pos,
                        &rule.condition,
                        &format!("{rf}.condition"),
                        &known,
                    )?;
                    let t = target(&rule.next, e.scope, format!("{rf}.next"))?;
                    edges.push((i, t));
                    rules.push((expr, entry_node(t)));
                }
                let default = match &s.default {
                    Some(d) => {
                        let t = target(d, e.scope, format!("{f}.default"))?;
                        edges.push((i, t));
                        Some(entry_node(t))
                    }
                    None => None,
                };
                Work::Choice { rules, default }
            }
            "succeed" => Work::Succeed,
            "fail" => Work::Fail {
                error: s
                    .error
                    .as_ref()
                    .map(|e| e.value.clone())
                    .unwrap_or_else(|| "failed".into()),
                cause: s.cause.as_ref().map(|c| c.value.clone()),
            },
            "parallel" => {
                let branches = s
                    .branches
                    .as_ref()
                    .filter(|b| !b.value.is_empty())
                    .ok_or_else(|| {
                        pos.error_at(
                            &s.name,
                            format!("{f}.branches"),
                            format!("parallel state `{}` has no `branches`", s.name.value),
                        )
                    })?;
                let mut groups = Vec::new();
                let mut fork_next = Vec::new();
                for (b, branch) in branches.value.iter().enumerate() {
                    let scope = scopes[&(i, b)];
                    let t = target(
                        &branch.start_at,
                        scope,
                        format!("{f}.branches[{b}].startAt"),
                    )?;
                    edges.push((i, t));
                    fork_next.push(entry_node(t));
                    groups.push(
                        entries
                            .iter()
                            .enumerate()
                            .filter(|(_, x)| {
                                x.scope == scope && x.parent == Some(i) && ends_branch(x)
                            })
                            .map(|(n, _)| n)
                            .collect(),
                    );
                }
                forks.push(Node {
                    name: format!("{}/fork", s.name.value).into(),
                    step_number: None,
                    internal: true,
                    join: Join::Any,
                    condition: None,
                    work: Work::Fork,
                    next: fork_next,
                    retry: defaults.workflow.clone(),
                    timeout: default_timeout,
                    compensation: None,
                });
                join = Join::AllOf(groups);
                Work::Collect
            }
            _ => unreachable!("check_fields rejects unknown types"),
        };
        let timeout = match &s.timeout {
            Some(t) => ranges::duration(pos, t, &format!("{f}.timeout"), &CALL_TIMEOUT)?,
            None => default_timeout,
        };
        let retry = defaults.for_node(set, pos, &s.retry, &s.retry_policy, f)?;
        nodes.push(Node {
            name: s.name.value.as_str().into(),
            step_number: None,
            internal: false,
            join,
            condition: None,
            work,
            next,
            retry,
            timeout,
            compensation,
        });
    }
    nodes.extend(forks);

    // Every state must be reachable from startAt, as in Amazon States Language.
    let mut reached = BTreeSet::from([start]);
    let mut frontier = vec![start];
    while let Some(s) = frontier.pop() {
        for &(from, to) in &edges {
            if from == s && reached.insert(to) {
                frontier.push(to);
            }
        }
    }
    if let Some(unreached) = (0..entries.len()).find(|i| !reached.contains(i)) {
        let e = &entries[unreached];
        return Err(pos
            .error_at(
                &e.def.name,
                format!("{}.name", e.field),
                format!("state `{}` is never reached", e.def.name.value),
            )
            .with_hint("point a `next`, choice rule or `startAt` at it, or remove it"));
    }

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
        roots: vec![entry_node(start)],
        output,
        services: Default::default(),
        components: Default::default(),
    })
}

fn ends_branch(e: &Entry<'_>) -> bool {
    e.kind == "succeed" || e.def.end.as_ref().is_some_and(|b| b.value)
}

fn collect<'a>(
    doc: &LoadedDocument,
    states: &'a [StateDef],
    field: &str,
    scope: usize,
    parent: Option<usize>,
    entries: &mut Vec<Entry<'a>>,
    scopes: &mut BTreeMap<(usize, usize), usize>,
) -> Result<(), LoadError> {
    for (i, def) in states.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let kind = TYPES
            .iter()
            .find(|t| t.eq_ignore_ascii_case(def.state_type.value.trim()))
            .copied()
            .ok_or_else(|| {
                doc.position
                    .error_at(
                        &def.state_type,
                        format!("{f}.type"),
                        format!("unknown state type `{}`", def.state_type.value),
                    )
                    .with_hint(format!("use one of {}", TYPES.join(", ")))
            })?;
        let me = entries.len();
        entries.push(Entry {
            def,
            field: f.clone(),
            scope,
            parent,
            kind,
        });
        if let Some(branches) = &def.branches {
            for (b, branch) in branches.value.iter().enumerate() {
                let branch_scope = scopes.len() + 1;
                scopes.insert((me, b), branch_scope);
                collect(
                    doc,
                    &branch.states,
                    &format!("{f}.branches[{b}].states"),
                    branch_scope,
                    Some(me),
                    entries,
                    scopes,
                )?;
            }
        }
    }
    Ok(())
}

/// Rejects fields that do not apply to the state's type, and checks `next` / `end`.
fn check_fields(doc: &LoadedDocument, e: &Entry<'_>) -> Result<(), LoadError> {
    let s = e.def;
    let pos = &doc.position;
    let present: [(&str, bool, &[&str]); 15] = [
        ("resource", s.resource.is_some(), &["task"]),
        ("config", s.config.is_some(), &["task"]),
        ("endpoint", s.endpoint.is_some(), &["task"]),
        ("method", s.method.is_some(), &["task"]),
        ("headers", !s.headers.is_empty(), &["task"]),
        ("query", !s.query.is_empty(), &["task"]),
        ("body", s.body.is_some(), &["task"]),
        (
            "retry",
            s.retry.is_some() || s.retry_policy.is_some(),
            &["task"],
        ),
        ("compensation", s.compensation.is_some(), &["task"]),
        ("choices", s.choices.is_some(), &["choice"]),
        ("default", s.default.is_some(), &["choice"]),
        ("branches", s.branches.is_some(), &["parallel"]),
        ("seconds", s.seconds.is_some(), &["wait"]),
        ("result", s.result.is_some(), &["pass"]),
        ("error", s.error.is_some() || s.cause.is_some(), &["fail"]),
    ];
    for (name, is_set, allowed) in present {
        if is_set && !allowed.contains(&e.kind) {
            return Err(pos
                .error_at(
                    &s.name,
                    format!("{}.{name}", e.field),
                    format!("`{name}` does not apply to a {} state", e.kind),
                )
                .with_hint(format!("`{name}` is for {} states", allowed.join("/"))));
        }
    }
    let ends = s.end.as_ref().is_some_and(|b| b.value);
    let needs_transition = matches!(e.kind, "task" | "pass" | "wait" | "parallel");
    if needs_transition && s.next.is_some() == ends {
        return Err(pos
            .error_at(
                &s.name,
                format!("{}.next", e.field),
                format!(
                    "state `{}` needs exactly one of `next` and `end: true`",
                    s.name.value
                ),
            )
            .with_hint("say where the workflow goes after this state, or end it here"));
    }
    if !needs_transition && (s.next.is_some() || s.end.is_some()) {
        return Err(pos
            .error_at(
                &s.name,
                format!("{}.next", e.field),
                format!("a {} state takes no `next` or `end`", e.kind),
            )
            .with_hint(if e.kind == "choice" {
                "choice rules and `default` say where to go"
            } else {
                "it ends its branch or the workflow by itself"
            }));
    }
    Ok(())
}
