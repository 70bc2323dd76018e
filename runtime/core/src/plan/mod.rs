//! The execution plan: every workflow kind compiled into one graph of nodes.
//!
//! Sequential, parallel and conditional orchestrations become a DAG (order implies edges,
//! `dependsOn` replaces them, consecutive `parallel: true` steps fork and join); a
//! `WorkflowDefinition` becomes nodes linked by `next`, with choice, wait, pass and parallel
//! states. One engine runs both, because both are the same thing underneath: a node starts
//! when its join is satisfied, does its work, and signals its successors.
//!
//! Compiling resolves every name (retry policies, `dependsOn`, `next`, the variables an
//! expression reads) and fails with a positioned [`LoadError`] on the first problem.

mod calls;
mod common;
mod component;
mod expressions;
mod graph;
mod orchestration;
mod ranges;
mod retries;
mod state_machine;

pub use graph::to_mermaid;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::definition::{DefinitionSet, Document, Kind, LoadError, LoadedDocument};
use crate::expr::{Expr, JsonTemplate, Template};
use crate::retry::RetryPolicy;

/// How long a call may take when the workflow does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub type NodeId = usize;

/// A compiled workflow, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The workflow's `metadata.name`, shared (`Arc`) by every execution of this plan.
    pub workflow_id: Arc<str>,
    pub kind: Kind,
    pub nodes: Vec<Node>,
    /// Nodes that start when the execution starts.
    pub roots: Vec<NodeId>,
    /// `spec.output`: the execution's output, built when every node has settled.
    pub output: Vec<(String, Expr)>,
    /// Every service name a call may use, for binding to base URLs when an execution starts.
    pub services: BTreeSet<String>,
    /// Every component a node may run, for binding to digests when an execution starts.
    pub components: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Node {
    /// Shared by every execution's record of this node's runs.
    pub name: Arc<str>,
    /// The orchestration's `step` number, which also names the result as `stepN`.
    pub step_number: Option<u32>,
    /// Nodes created by compilation rather than written by the user (a parallel state's fork).
    pub internal: bool,
    pub join: Join,
    /// Skip the node (recording it as skipped) unless this is true.
    pub condition: Option<Condition>,
    pub work: Work,
    /// Signalled when the node completes or is skipped (a choice signals only its pick).
    pub next: Vec<NodeId>,
    pub retry: Arc<RetryPolicy>,
    pub timeout: Duration,
    pub compensation: Option<Call>,
}

/// When a node may start.
#[derive(Debug, Clone, PartialEq)]
pub enum Join {
    /// As soon as any predecessor signals (state machine transitions; may repeat in loops).
    Any,
    /// When every group has had at least one of its members signal. A DAG dependency is a
    /// group of one; a parallel state's join has one group per branch (its possible ends).
    AllOf(Vec<Vec<NodeId>>),
}

#[derive(Debug, Clone)]
pub enum Work {
    Call(Call),
    /// Completes at once with the rendered value (or the execution input).
    Pass(Option<JsonTemplate>),
    Wait(Duration),
    Choice {
        rules: Vec<(Expr, NodeId)>,
        default: Option<NodeId>,
    },
    Succeed,
    Fail {
        error: String,
        cause: Option<String>,
    },
    /// Starts a parallel state's branches.
    Fork,
    /// Ends a parallel state: its result is the list of each branch's last result.
    Collect,
}

#[derive(Debug, Clone)]
pub enum Condition {
    Expression(Expr),
    Component(ComponentCall),
}

/// A call before rendering: to an HTTP service or to a component.
#[derive(Debug, Clone)]
pub enum Call {
    Http(HttpCall),
    Component(ComponentCall),
}

impl Call {
    pub fn label(&self) -> Option<&str> {
        match self {
            Call::Http(c) => c.label.as_deref(),
            Call::Component(c) => c.label.as_deref(),
        }
    }
}

/// A component use: the component, its grants and limits, and this use's config.
#[derive(Debug, Clone)]
pub struct ComponentCall {
    pub label: Option<String>,
    pub component: String,
    /// The component's default config.
    pub defaults: serde_json::Value,
    /// This use's config, merged over the defaults when rendered.
    pub config: Option<JsonTemplate>,
    pub grants: crate::component::Grants,
    pub limits: crate::component::Limits,
}

/// An HTTP call before rendering.
#[derive(Debug, Clone)]
pub struct HttpCall {
    /// The compensation's own name, when it has one.
    pub label: Option<String>,
    /// Shared with every request rendered from this call (`Arc`: a clone is a count).
    pub service: Arc<str>,
    pub endpoint: Template,
    pub method: Arc<str>,
    pub headers: Vec<(String, Template)>,
    pub query: Vec<(String, Template)>,
    /// `None` sends the execution input.
    pub body: Option<JsonTemplate>,
}

impl Plan {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| *n.name == *name)
    }
}

/// Compiles the workflow named `name`, or the only workflow of the set when `name` is `None`.
pub fn compile(set: &DefinitionSet, name: Option<&str>) -> Result<Plan, LoadError> {
    // Uses of policies and components rely on those documents being valid.
    common::check_documents(set)?;
    compile_document(set, choose(set, name)?)
}

/// Compiles every workflow of the set, as [`validate`] does (so an error in any of them is
/// reported), and returns the one `name` picks as [`compile`] would: each compiled once.
pub fn compile_checked(set: &DefinitionSet, name: Option<&str>) -> Result<Plan, LoadError> {
    let chosen = choose(set, name)?.name.clone();
    validate(set)?
        .into_iter()
        .find(|plan| *plan.workflow_id == *chosen)
        .ok_or_else(|| set_error(set, format!("no workflow named `{chosen}`")))
}

/// The workflow `name` names, or the set's only one.
fn choose<'a>(set: &'a DefinitionSet, name: Option<&str>) -> Result<&'a LoadedDocument, LoadError> {
    let workflows: Vec<_> = set.workflows().collect();
    let chosen = match name {
        Some(name) => workflows.iter().find(|d| d.name == name).ok_or_else(|| {
            let known: Vec<_> = workflows.iter().map(|d| d.name.as_str()).collect();
            set_error(set, format!("no workflow named `{name}`")).with_hint(format!(
                "workflows in these files: {}",
                list_or_none(&known)
            ))
        })?,
        None => match workflows.as_slice() {
            [only] => only,
            [] => {
                return Err(set_error(set, "no workflow to run").with_hint(
                    "a workflow is a SequentialOrchestration, ParallelOrchestration, ConditionalOrchestration or WorkflowDefinition document",
                ));
            }
            many => {
                let known: Vec<_> = many.iter().map(|d| d.name.as_str()).collect();
                return Err(set_error(set, "more than one workflow in these files")
                    .with_hint(format!("choose one with --workflow: {}", known.join(", "))));
            }
        },
    };
    Ok(*chosen)
}

fn compile_document(set: &DefinitionSet, chosen: &LoadedDocument) -> Result<Plan, LoadError> {
    let mut plan = match &chosen.document {
        Document::Orchestration(m) => orchestration::compile(set, chosen, m),
        Document::StateMachine(m) => state_machine::compile(set, chosen, m),
        _ => unreachable!("workflows() yields only workflow kinds"),
    }?;
    plan.collect_bindings();
    Ok(plan)
}

impl Plan {
    /// Fills `services` and `components` from the nodes.
    fn collect_bindings(&mut self) {
        let mut services = BTreeSet::new();
        let mut components = BTreeSet::new();
        for node in &self.nodes {
            let work = match &node.work {
                Work::Call(c) => Some(c),
                _ => None,
            };
            let condition = match &node.condition {
                Some(Condition::Component(c)) => Some(c),
                _ => None,
            };
            for call in work.into_iter().chain(node.compensation.as_ref()) {
                match call {
                    Call::Http(h) => services.insert(h.service.to_string()),
                    Call::Component(c) => components.insert(c.component.clone()),
                };
            }
            if let Some(c) = condition {
                components.insert(c.component.clone());
            }
        }
        self.services = services;
        self.components = components;
    }
}

/// Compiles every workflow and checks every other document, as `orca validate` does.
pub fn validate(set: &DefinitionSet) -> Result<Vec<Plan>, LoadError> {
    common::check_documents(set)?;
    set.workflows()
        .map(|doc| compile_document(set, doc))
        .collect()
}

fn set_error(set: &DefinitionSet, message: impl Into<String>) -> LoadError {
    let file = set
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    LoadError {
        file,
        line: 0,
        column: 0,
        field: None,
        message: message.into(),
        hint: None,
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests;
