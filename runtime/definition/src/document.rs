//! The YAML documents a user writes, as typed data.
//!
//! These types mirror the files one to one: every struct denies unknown fields so a typo is a
//! load error rather than a silently ignored setting, and every value that a later check may
//! complain about is `Spanned`, so that complaint can point at the user's line and column.
//! Nothing here resolves names or does I/O; `super::validate` and `crate::plan` do that.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::strict;

/// A string with the place it was written.
pub type Text = Spanned<String>;

/// `metadata` as Kubernetes-style manifests write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: Text,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// One document: the common envelope around a kind's `spec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest<S> {
    pub api_version: Text,
    pub kind: Text,
    pub metadata: Metadata,
    pub spec: S,
}

/// `SequentialOrchestration`, `ParallelOrchestration` and `ConditionalOrchestration` share one
/// shape; the kind only says which pattern the author had in mind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrchestrationSpec {
    pub steps: Vec<StepDef>,
    #[serde(default)]
    pub retry_policy: Option<Text>,
    #[serde(default)]
    pub retry: Option<Spanned<RetrySpec>>,
    #[serde(default)]
    pub timeout: Option<Text>,
    #[serde(default)]
    pub output: Option<BTreeMap<String, Text>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepDef {
    #[serde(default, deserialize_with = "strict::optional")]
    pub step: Option<Spanned<u32>>,
    pub name: Text,
    #[serde(default)]
    pub api: Option<Text>,
    #[serde(default)]
    pub endpoint: Option<Text>,
    #[serde(default)]
    pub method: Option<Text>,
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    #[serde(default)]
    pub query: BTreeMap<String, Text>,
    /// JSON body; strings inside may hold `${ expr }` templates. Defaults to the execution input.
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    /// A `Component` to run instead of an HTTP call.
    #[serde(default)]
    pub component: Option<Text>,
    /// The component's `config` for this use (templates allowed), merged over its defaults.
    #[serde(default)]
    pub config: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub depends_on: Vec<Text>,
    #[serde(default, deserialize_with = "strict::flag")]
    pub parallel: bool,
    #[serde(default)]
    pub condition: Option<Spanned<ConditionDef>>,
    #[serde(default)]
    pub retry_policy: Option<Text>,
    #[serde(default)]
    pub retry: Option<Spanned<RetrySpec>>,
    #[serde(default)]
    pub timeout: Option<Text>,
    #[serde(default)]
    pub compensation: Option<Spanned<CompensationDef>>,
}

/// A step's condition: a CEL expression, or a condition component.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConditionDef {
    Expression(String),
    Component(ComponentUseDef),
}

/// `{component: NAME, config: {...}}` where a component stands in for an expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentUseDef {
    pub component: String,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

/// The undo call of a step (the saga's compensating action): an HTTP call or a component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CompensationDef {
    #[serde(default)]
    pub name: Option<Text>,
    #[serde(default)]
    pub api: Option<Text>,
    #[serde(default)]
    pub endpoint: Option<Text>,
    #[serde(default)]
    pub component: Option<Text>,
    #[serde(default)]
    pub config: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub method: Option<Text>,
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    #[serde(default)]
    pub query: BTreeMap<String, Text>,
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
}

/// `WorkflowDefinition`: a state machine in the style of Amazon States Language.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StateMachineSpec {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    pub start_at: Text,
    pub states: Vec<StateDef>,
    #[serde(default)]
    pub retry_policy: Option<Text>,
    #[serde(default)]
    pub retry: Option<Spanned<RetrySpec>>,
    #[serde(default)]
    pub timeout: Option<Text>,
    #[serde(default)]
    pub output: Option<BTreeMap<String, Text>>,
}

/// One state. Which fields apply depends on `type`; validation rejects the ones that do not.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StateDef {
    pub name: Text,
    #[serde(rename = "type")]
    pub state_type: Text,
    #[serde(default)]
    pub comment: Option<String>,
    // task
    /// A service name, or the name of a `Component`.
    #[serde(default)]
    pub resource: Option<Text>,
    /// The component's `config` when `resource` names a component.
    #[serde(default)]
    pub config: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub endpoint: Option<Text>,
    #[serde(default)]
    pub method: Option<Text>,
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    #[serde(default)]
    pub query: BTreeMap<String, Text>,
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub retry_policy: Option<Text>,
    #[serde(default)]
    pub retry: Option<Spanned<RetrySpec>>,
    #[serde(default)]
    pub timeout: Option<Text>,
    #[serde(default)]
    pub compensation: Option<Spanned<CompensationDef>>,
    // transitions
    #[serde(default)]
    pub next: Option<Text>,
    #[serde(default, deserialize_with = "strict::optional")]
    pub end: Option<Spanned<bool>>,
    // choice
    #[serde(default)]
    pub choices: Option<Spanned<Vec<ChoiceRuleDef>>>,
    #[serde(default)]
    pub default: Option<Text>,
    // parallel
    #[serde(default)]
    pub branches: Option<Spanned<Vec<BranchDef>>>,
    // wait
    #[serde(default, deserialize_with = "strict::optional")]
    pub seconds: Option<Spanned<f64>>,
    // pass
    #[serde(default)]
    pub result: Option<Spanned<serde_json::Value>>,
    // fail
    #[serde(default)]
    pub error: Option<Text>,
    #[serde(default)]
    pub cause: Option<Text>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChoiceRuleDef {
    pub condition: Text,
    pub next: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BranchDef {
    pub start_at: Text,
    pub states: Vec<StateDef>,
}

/// `RetryPolicy.spec`, also accepted inline as `retry:` on a step or workflow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetrySpec {
    #[serde(deserialize_with = "strict::scalar")]
    pub max_retries: Spanned<u32>,
    #[serde(default)]
    pub backoff: Option<BackoffSpec>,
    #[serde(default)]
    pub retryable_errors: Option<Vec<Text>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackoffSpec {
    #[serde(default)]
    pub strategy: Option<Text>,
    #[serde(default)]
    pub initial_delay: Option<Text>,
    #[serde(default)]
    pub max_delay: Option<Text>,
    #[serde(default, deserialize_with = "strict::optional")]
    pub multiplier: Option<Spanned<f64>>,
    /// Randomize each delay by up to +-`jitter` of itself (0.0 to 1.0; default 0.2).
    #[serde(default, deserialize_with = "strict::optional")]
    pub jitter: Option<Spanned<f64>>,
}

/// `StateStore.spec`: where executions are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StateStoreSpec {
    #[serde(rename = "type")]
    pub store_type: Text,
    #[serde(default)]
    pub endpoint: Option<Text>,
    #[serde(default)]
    pub path: Option<Text>,
    #[serde(default)]
    pub ttl: Option<Text>,
    #[serde(default)]
    pub persistence: Option<PersistenceSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PersistenceSpec {
    #[serde(default, deserialize_with = "strict::flag")]
    pub enabled: bool,
    #[serde(default)]
    pub backend: Option<Text>,
    #[serde(default)]
    pub endpoint: Option<Text>,
}

/// `Services.spec` (Orca's own kind): service name to base URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicesSpec {
    pub services: BTreeMap<String, Text>,
}

/// `PrometheusRule.spec` as the Prometheus operator defines it (the fields Orca reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusRuleSpec {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleGroup {
    pub name: Text,
    #[serde(default)]
    pub interval: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub record: Option<Text>,
    #[serde(default)]
    pub alert: Option<Text>,
    pub expr: Text,
    #[serde(default, rename = "for")]
    pub for_duration: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `Component.spec`: a Wasm component, its grants and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Path to the `.wasm` file, relative to this YAML file.
    #[serde(default)]
    pub source: Option<Text>,
    /// `sha256:<hex>` of the component's bytes: pins `source`, or names an uploaded component.
    #[serde(default)]
    pub digest: Option<Text>,
    /// Default configuration, merged under each use's `config`.
    #[serde(default)]
    pub config: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub grants: Option<GrantsDef>,
    #[serde(default)]
    pub limits: Option<LimitsDef>,
}

/// What the component may reach. Nothing is granted by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrantsDef {
    /// Hosts the component may call: `api.example.com`, `*.example.com`, `127.0.0.1:8080`.
    #[serde(default)]
    pub http: Vec<Text>,
    /// State scopes: `execution`, `tenant`.
    #[serde(default)]
    pub state: Vec<Text>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsDef {
    /// Memory cap, like `64MiB`.
    #[serde(default)]
    pub memory: Option<Text>,
    /// Wall-clock deadline per call, like `2s`.
    #[serde(default)]
    pub deadline: Option<Text>,
    /// Instruction budget per call.
    #[serde(default, deserialize_with = "strict::optional")]
    pub fuel: Option<Spanned<u64>>,
    /// Largest result, like `1MiB`.
    #[serde(default)]
    pub max_result: Option<Text>,
}
