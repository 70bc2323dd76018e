//! The execution record: everything needed to report on an execution and to resume it.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use smallvec::SmallVec;

use crate::cached_json::CachedJson;
use crate::invoke::{Failure, FailureKind, Headers, Request, Response};
use crate::payload::Payload;
use crate::plan::{NodeId, Plan};

/// An execution's output, a JSON object: `spec.output`'s fields, or else every completed
/// step's result by the step's name, shared with the step rather than copied (a finished
/// execution is kept, and the copies were half of what it kept).
pub type Output = BTreeMap<Arc<str>, Arc<Payload>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    /// A step failed; the completed steps are being undone.
    Compensating,
    Completed,
    /// A step failed and nothing needed undoing.
    Failed,
    /// A step failed and every completed step with a compensation was undone.
    Compensated,
    /// A step failed and some compensation failed too (the error names which).
    CompensationFailed,
    /// Stopped on request; completed steps with compensations were undone.
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Running,
        Status::Compensating,
        Status::Completed,
        Status::Failed,
        Status::Compensated,
        Status::CompensationFailed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Compensating => "compensating",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Compensated => "compensated",
            Status::CompensationFailed => "compensation_failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Status::Running | Status::Compensating)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// A condition component is deciding whether the step runs.
    Evaluating,
    Running,
    /// Failed; waiting for the next attempt.
    Retrying,
    /// A `wait` state's timer is armed.
    Waiting,
    Completed,
    Skipped,
    Failed,
    /// Stopped because another step failed.
    Cancelled,
}

impl StepStatus {
    pub fn is_active(self) -> bool {
        matches!(
            self,
            StepStatus::Evaluating
                | StepStatus::Running
                | StepStatus::Retrying
                | StepStatus::Waiting
        )
    }
}

/// One execution of one workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// Shared (`Arc`) with every snapshot of the record and every stored copy of it.
    pub id: Arc<str>,
    pub workflow_id: Arc<str>,
    pub status: Status,
    /// Never changes: serialized once.
    pub input: CachedJson<Json>,
    /// The tenant whose execution this is (namespaces component state).
    pub tenant: Arc<str>,
    /// Service name to base URL, fixed when the execution started. Kept with its JSON, and
    /// shared by the record's snapshots, like the input.
    pub services: CachedJson<BTreeMap<String, String>>,
    /// Component name to the digest of the bytes that run, fixed when the execution started.
    #[serde(default)]
    pub components: CachedJson<BTreeMap<String, String>>,
    /// One entry per plan node, in plan order. A finished step's run no longer changes, so
    /// each keeps its JSON between checkpoints.
    pub steps: Vec<CachedJson<StepRun>>,
    /// The steps that are running, retrying or waiting now.
    pub current: Vec<Arc<str>>,
    /// Nodes in the order they completed; compensation runs in reverse.
    pub completion_order: Vec<NodeId>,
    pub compensations: Vec<Compensation>,
    /// Kept with its JSON: made once, shared by the final checkpoint and the caller.
    pub output: Option<CachedJson<Output>>,
    /// What made the execution fail, once it has.
    pub failure: Option<String>,
    /// The final error shown to the user (the failure, plus what could not be undone).
    pub error: Option<String>,
    pub started_at_ms: u64,
    pub ended_at_ms: Option<u64>,
    /// Requests sent, retries and resumed calls included.
    pub api_calls: u32,
    pub resumes: u32,
    /// Cancellation was requested.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// The stamp of the last change; every change the engine makes takes the next one,
    /// which its events are numbered after (see [`crate::events`]).
    #[serde(default)]
    pub seq: u64,
    /// The stamp of the change that ended the execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_seq: Option<u64>,
}

/// A call's attempts: almost always one, kept inline so that a step's first attempt does
/// not allocate. Serialized as a list.
pub type Attempts = SmallVec<[Attempt; 1]>;

/// The predecessors that signalled a node: one in a sequence, a few at a join; inline for
/// the same reason.
pub type Signals = SmallVec<[NodeId; 2]>;

/// The progress of one call: a step's or a compensation's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub status: StepStatus,
    pub attempts: Attempts,
    /// The rendered request, reused by every attempt and by a resumed run. Shared with the
    /// actions that send it, so an attempt does not copy its URL, headers and body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Arc<Request>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// The stamps of the changes that started and ended the run (see [`crate::events`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_seq: Option<u64>,
    /// A wait state's end, kept after it (`timer_at_ms` is cleared when the timer fires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until_ms: Option<u64>,
}

impl Run {
    fn new() -> Self {
        Run {
            status: StepStatus::Pending,
            attempts: Attempts::new(),
            request: None,
            timer_at_ms: None,
            error: None,
            started_at_ms: None,
            ended_at_ms: None,
            started_seq: None,
            ended_seq: None,
            wait_until_ms: None,
        }
    }

    /// Arms the timer of the next attempt, due at `at_ms`.
    pub(crate) fn retry_at(&mut self, at_ms: u64) {
        self.status = StepStatus::Retrying;
        self.timer_at_ms = Some(at_ms);
        if let Some(last) = self.attempts.last_mut() {
            last.retry_at_ms = Some(at_ms);
        }
    }

    /// Ends the run at `now_ms`, with the change stamped `seq`.
    pub(crate) fn end(&mut self, now_ms: u64, seq: u64) {
        self.ended_at_ms = Some(now_ms);
        self.ended_seq = Some(seq);
    }

    /// Whether an outcome for `attempt` is the one this run is waiting for.
    pub(crate) fn is_current(&self, status: StepStatus, attempt: u32) -> bool {
        self.status == status && self.attempts.len() as u32 == attempt
    }

    pub(crate) fn finish_attempt(&mut self, now_ms: u64, seq: u64, outcome: Outcome) {
        if let Some(last) = self.attempts.last_mut() {
            last.ended_at_ms = Some(now_ms);
            last.ended_seq = Some(seq);
            last.outcome = Some(outcome);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    pub name: Arc<str>,
    /// Created by compilation (a parallel state's fork), not written by the user.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(flatten)]
    pub run: Run,
    /// How many times the node has started (more than once only in state-machine loops).
    pub visits: u32,
    /// The response body, or a pass state's value, or a parallel state's branch results.
    /// Shared, not copied, by the execution's default output. Loaded as text.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::payload::optional_text"
    )]
    pub result: Option<Arc<Payload>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseMeta>,
    /// The choice state's pick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<NodeId>,
    /// Signalled and waiting for its join.
    #[serde(default)]
    pub armed: bool,
    /// The predecessors that signalled since the node last started.
    #[serde(default)]
    pub signals: Signals,
}

impl Deref for StepRun {
    type Target = Run;
    fn deref(&self) -> &Run {
        &self.run
    }
}

impl DerefMut for StepRun {
    fn deref_mut(&mut self) -> &mut Run {
        &mut self.run
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMeta {
    pub status: u16,
    pub headers: Headers,
}

/// The undoing of one completed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compensation {
    pub node: NodeId,
    /// The step being undone.
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(flatten)]
    pub run: Run,
}

impl Compensation {
    pub(crate) fn new(node: NodeId, plan: &Plan) -> Self {
        Compensation {
            node,
            step: plan.node(node).name.to_string(),
            label: plan
                .node(node)
                .compensation
                .as_ref()
                .and_then(|c| c.label().map(str::to_string)),
            run: Run::new(),
        }
    }
}

impl Deref for Compensation {
    type Target = Run;
    fn deref(&self) -> &Run {
        &self.run
    }
}

impl DerefMut for Compensation {
    fn deref_mut(&mut self) -> &mut Run {
        &mut self.run
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub started_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// The stamps of the changes that started and ended the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_seq: Option<u64>,
    /// When the next attempt was due, if this one failed and was retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Ok { status: u16 },
    Error { kind: FailureKind, message: String },
}

impl Outcome {
    pub(crate) fn ok(response: &Response) -> Self {
        Outcome::Ok {
            status: response.status,
        }
    }

    pub(crate) fn failed(failure: &Failure) -> Self {
        Outcome::Error {
            kind: failure.kind,
            message: failure.message.clone(),
        }
    }
}

/// What an execution is bound to when it starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bindings {
    pub tenant: String,
    pub services: BTreeMap<String, String>,
    pub components: BTreeMap<String, String>,
}

impl Execution {
    pub(crate) fn new(
        plan: &Plan,
        id: String,
        input: Json,
        bindings: Bindings,
        now_ms: u64,
    ) -> Self {
        Execution {
            id: id.into(),
            workflow_id: plan.workflow_id.clone(),
            status: Status::Running,
            input: input.into(),
            tenant: bindings.tenant.into(),
            services: bindings.services.into(),
            components: bindings.components.into(),
            steps: plan
                .nodes
                .iter()
                .map(|n| {
                    CachedJson::new(StepRun {
                        name: n.name.clone(),
                        internal: n.internal,
                        run: Run::new(),
                        visits: 0,
                        result: None,
                        response: None,
                        chosen: None,
                        armed: false,
                        signals: Signals::new(),
                    })
                })
                .collect(),
            current: Vec::new(),
            // Every node completes at most once outside state-machine loops: one allocation.
            completion_order: Vec::with_capacity(plan.nodes.len()),
            compensations: Vec::new(),
            output: None,
            failure: None,
            error: None,
            started_at_ms: now_ms,
            ended_at_ms: None,
            api_calls: 0,
            resumes: 0,
            cancelled: false,
            seq: 0,
            ended_seq: None,
        }
    }

    /// The stamp of the change being made: one more than the last.
    pub(crate) fn stamp(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}
