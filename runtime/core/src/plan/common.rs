//! Compilation steps shared by orchestrations and state machines.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::definition::{
    DefinitionSet, DocPosition, Document, Kind, LoadError, NAME_RULE, RetrySpec, Text, check_name,
    closest,
};
use crate::expr::{Expr, JsonTemplate, Template, is_cel_identifier};
use crate::retry::{RetryOn, RetryPolicy, Strategy};

use super::ranges::{JITTER, MAX_RETRIES, MULTIPLIER, RETRY_DELAY, Range, STORE_TTL};
use super::{Call, Condition, HttpCall, component};
use crate::definition::{CompensationDef, ConditionDef};

/// Variables every expression may read besides the steps' results.
pub(super) const BUILTIN_VARIABLES: [&str; 4] = ["input", "steps", "execution", "services"];

/// Compiles an expression and checks that it reads only variables that exist.
pub(super) fn expression(
    pos: &DocPosition,
    text: &Text,
    field: &str,
    known: &BTreeSet<String>,
) -> Result<Expr, LoadError> {
    let expr = Expr::compile(&text.value).map_err(|m| pos.error_at(text, field, m))?;
    check_variables(pos, text, field, &expr, known)?;
    Ok(expr)
}

fn check_variables(
    pos: &DocPosition,
    text: &Text,
    field: &str,
    expr: &Expr,
    known: &BTreeSet<String>,
) -> Result<(), LoadError> {
    for variable in expr.variables() {
        if !known.contains(variable) {
            let hint = match closest(variable, known.iter().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "an expression can read: {}",
                    known.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(pos
                .error_at(
                    text,
                    field,
                    format!(
                        "`{}` reads `{variable}`, which is not defined",
                        expr.source()
                    ),
                )
                .with_hint(hint));
        }
    }
    Ok(())
}

/// Compiles a `${ … }` template and checks its variables.
pub(super) fn template(
    pos: &DocPosition,
    text: &Text,
    field: &str,
    input_placeholders: bool,
    known: &BTreeSet<String>,
) -> Result<Template, LoadError> {
    let template = Template::parse(&text.value, input_placeholders)
        .map_err(|m| pos.error_at(text, field, m))?;
    for expr in template.expressions() {
        check_variables(pos, text, field, expr, known)?;
    }
    Ok(template)
}

/// The variables a workflow's expressions may read, given its node names and step numbers.
pub(super) fn known_variables<'a>(
    names: impl IntoIterator<Item = &'a str>,
    step_numbers: impl IntoIterator<Item = u32>,
) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = BUILTIN_VARIABLES.iter().map(|s| s.to_string()).collect();
    known.extend(
        names
            .into_iter()
            .filter(|n| is_cel_identifier(n))
            .map(str::to_string),
    );
    known.extend(step_numbers.into_iter().map(|n| format!("step{n}")));
    known
}

/// A node name must be unique and must not shadow a built-in variable.
pub(super) fn check_node_name(
    pos: &DocPosition,
    name: &Text,
    field: &str,
    seen: &mut BTreeMap<String, u64>,
) -> Result<(), LoadError> {
    if name.value.trim().is_empty() {
        return Err(pos.error_at(name, field, "a name cannot be empty"));
    }
    if BUILTIN_VARIABLES.contains(&name.value.as_str()) {
        return Err(pos
            .error_at(name, field, format!("`{}` is reserved", name.value))
            .with_hint("expressions use this name for something else; pick another"));
    }
    if let Some(line) = seen.insert(name.value.clone(), name.referenced.line() + pos.line_offset) {
        return Err(pos
            .error_at(
                name,
                field,
                format!("`{}` is already used at line {line}", name.value),
            )
            .with_hint("names must be unique within a workflow"));
    }
    Ok(())
}

/// Parses `30s`, `1m30s`, `250ms`, `24h`, within `range`.
pub(super) fn duration(
    pos: &DocPosition,
    text: &Text,
    field: &str,
    range: &Range<Duration>,
) -> Result<Duration, LoadError> {
    let parsed = humantime::parse_duration(text.value.trim()).map_err(|e| {
        pos.error_at(
            text,
            field,
            format!("`{}` is not a duration: {e}", text.value),
        )
        .with_hint("write a number with a unit, like `500ms`, `10s` or `24h`")
    })?;
    range.check(pos, text, field, parsed)
}

/// Picks a node's retry policy: inline `retry`, then `retryPolicy` by name, then the workflow's
/// own, then the only `RetryPolicy` loaded alongside the workflow, else none.
pub(super) struct RetryDefaults {
    pub(super) workflow: Arc<RetryPolicy>,
}

impl RetryDefaults {
    pub(super) fn new(
        set: &DefinitionSet,
        pos: &DocPosition,
        inline: &Option<Spanned<RetrySpec>>,
        by_name: &Option<Text>,
    ) -> Result<Self, LoadError> {
        let workflow = match resolve(set, pos, inline, by_name, "spec")? {
            Some(p) => p,
            None => {
                let mut policies = set.of_kind(Kind::RetryPolicy);
                match (policies.next(), policies.next()) {
                    (Some(only), None) => Arc::new(named_policy(only)?),
                    _ => Arc::new(RetryPolicy::none()),
                }
            }
        };
        Ok(RetryDefaults { workflow })
    }

    pub(super) fn for_node(
        &self,
        set: &DefinitionSet,
        pos: &DocPosition,
        inline: &Option<Spanned<RetrySpec>>,
        by_name: &Option<Text>,
        field: &str,
    ) -> Result<Arc<RetryPolicy>, LoadError> {
        Ok(resolve(set, pos, inline, by_name, field)?.unwrap_or_else(|| self.workflow.clone()))
    }
}

fn resolve(
    set: &DefinitionSet,
    pos: &DocPosition,
    inline: &Option<Spanned<RetrySpec>>,
    by_name: &Option<Text>,
    field: &str,
) -> Result<Option<Arc<RetryPolicy>>, LoadError> {
    match (inline, by_name) {
        (Some(_), Some(name)) => Err(pos
            .error_at(
                name,
                format!("{field}.retryPolicy"),
                "both `retry` and `retryPolicy` are set",
            )
            .with_hint(
                "keep one: `retry` for an inline policy, `retryPolicy` to name a RetryPolicy",
            )),
        (Some(spec), None) => Ok(Some(Arc::new(retry_policy(
            pos,
            &spec.value,
            None,
            &format!("{field}.retry"),
        )?))),
        (None, Some(name)) => {
            let found = set
                .of_kind(Kind::RetryPolicy)
                .find(|d| d.name == name.value)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        set.of_kind(Kind::RetryPolicy).map(|d| d.name.as_str()).collect();
                    let hint = match closest(&name.value, names.iter().copied()) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None if names.is_empty() => {
                            "no RetryPolicy is loaded: pass its file too (orca run workflow.yaml policies.yaml)".to_string()
                        }
                        None => format!("loaded retry policies: {}", names.join(", ")),
                    };
                    pos.error_at(
                        name,
                        format!("{field}.retryPolicy"),
                        format!("unknown retry policy `{}`", name.value),
                    )
                    .with_hint(hint)
                })?;
            Ok(Some(Arc::new(named_policy(found)?)))
        }
        (None, None) => Ok(None),
    }
}

fn named_policy(doc: &crate::definition::LoadedDocument) -> Result<RetryPolicy, LoadError> {
    match &doc.document {
        Document::RetryPolicy(m) => {
            retry_policy(&doc.position, &m.spec, Some(doc.name.clone()), "spec")
        }
        _ => unreachable!("of_kind(RetryPolicy) yields RetryPolicy documents"),
    }
}

/// Turns a `RetryPolicy` spec into a policy, checking every value.
pub(super) fn retry_policy(
    pos: &DocPosition,
    spec: &RetrySpec,
    name: Option<String>,
    field: &str,
) -> Result<RetryPolicy, LoadError> {
    let mut policy = RetryPolicy::none();
    policy.name = name;
    policy.max_retries = MAX_RETRIES.check(
        pos,
        &spec.max_retries,
        format!("{field}.maxRetries"),
        spec.max_retries.value,
    )?;
    policy.jitter = 0.2;
    policy.retry_on = match &spec.retryable_errors {
        None => RetryOn::transient(),
        Some(entries) => {
            let mut on = RetryOn::default();
            for entry in entries {
                on.add(&entry.value)
                    .map_err(|m| pos.error_at(entry, format!("{field}.retryableErrors"), m))?;
            }
            on
        }
    };
    if let Some(backoff) = &spec.backoff {
        if let Some(strategy) = &backoff.strategy {
            policy.strategy = match strategy.value.as_str() {
                "exponential" => Strategy::Exponential,
                "linear" => Strategy::Linear,
                "fixed" => Strategy::Fixed,
                other => {
                    return Err(pos
                        .error_at(
                            strategy,
                            format!("{field}.backoff.strategy"),
                            format!("unknown backoff strategy `{other}`"),
                        )
                        .with_hint("use exponential, linear or fixed"));
                }
            };
        }
        if let Some(d) = &backoff.initial_delay {
            let at = format!("{field}.backoff.initialDelay");
            policy.initial_delay = duration(pos, d, &at, &RETRY_DELAY)?;
        }
        if let Some(d) = &backoff.max_delay {
            let at = format!("{field}.backoff.maxDelay");
            policy.max_delay = duration(pos, d, &at, &RETRY_DELAY)?;
        }
        if let Some(m) = &backoff.multiplier {
            let at = format!("{field}.backoff.multiplier");
            policy.multiplier = MULTIPLIER.check(pos, m, at, m.value)?;
        }
        if let Some(j) = &backoff.jitter {
            policy.jitter = JITTER.check(pos, j, format!("{field}.backoff.jitter"), j.value)?;
        }
    }
    if policy.max_delay < policy.initial_delay {
        policy.max_delay = policy.initial_delay;
    }
    Ok(policy)
}

/// Compiles a JSON value whose strings may hold `${ … }` templates.
pub(super) fn json_template(
    pos: &DocPosition,
    value: &Spanned<serde_json::Value>,
    field: &str,
    known: &BTreeSet<String>,
) -> Result<JsonTemplate, LoadError> {
    let compiled = JsonTemplate::parse(&value.value).map_err(|m| pos.error_at(value, field, m))?;
    let as_text = Spanned {
        value: String::new(),
        referenced: value.referenced,
        defined: value.defined,
    };
    for expr in compiled.expressions() {
        check_variables(pos, &as_text, field, expr, known)?;
    }
    Ok(compiled)
}

/// The pieces of a call as the YAML writes them.
pub(super) struct CallFields<'a> {
    pub(super) label: Option<&'a Text>,
    pub(super) service: &'a Text,
    pub(super) endpoint: Option<&'a Text>,
    pub(super) method: Option<&'a Text>,
    pub(super) headers: &'a BTreeMap<String, Text>,
    pub(super) query: &'a BTreeMap<String, Text>,
    pub(super) body: Option<&'a Spanned<serde_json::Value>>,
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

pub(super) fn call(
    pos: &DocPosition,
    fields: CallFields<'_>,
    field: &str,
    known: &BTreeSet<String>,
) -> Result<HttpCall, LoadError> {
    let service = fields.service.value.trim();
    if let Err(why) = check_name(service) {
        return Err(pos
            .error_at(fields.service, field, format!("`{}` is not a service name: {why}", service.escape_debug()))
            .with_hint("name a service (like `order-service`) and map it to a URL in a Services document or with --service"));
    }
    let method = match fields.method {
        None => Arc::from("POST"),
        Some(m) => {
            let upper = m.value.trim().to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return Err(pos
                    .error_at(
                        m,
                        format!("{field}.method"),
                        format!("unknown HTTP method `{}`", m.value),
                    )
                    .with_hint(format!("use one of {}", METHODS.join(", "))));
            }
            Arc::from(upper)
        }
    };
    let endpoint = match fields.endpoint {
        Some(e) => {
            if !e.value.starts_with('/') && !e.value.starts_with("${") {
                return Err(pos
                    .error_at(
                        e,
                        format!("{field}.endpoint"),
                        format!("endpoint `{}` must start with `/`", e.value),
                    )
                    .with_hint("the endpoint is a path on the service, like /api/v1/orders"));
            }
            template(pos, e, &format!("{field}.endpoint"), true, known)?
        }
        None => Template::parse("/", false).expect("a literal template parses"),
    };
    let pairs = |map: &BTreeMap<String, Text>, what: &str| {
        map.iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    template(pos, v, &format!("{field}.{what}.{k}"), false, known)?,
                ))
            })
            .collect::<Result<Vec<_>, LoadError>>()
    };
    let body = match fields.body {
        None => None,
        Some(value) => Some(json_template(pos, value, &format!("{field}.body"), known)?),
    };
    Ok(HttpCall {
        label: fields.label.map(|l| l.value.clone()),
        service: Arc::from(service),
        endpoint,
        method,
        headers: pairs(fields.headers, "headers")?,
        query: pairs(fields.query, "query")?,
        body,
    })
}

/// A component step takes no HTTP fields: say so rather than ignore them.
pub(super) fn reject_http_fields(
    pos: &DocPosition,
    field: &str,
    endpoint: Option<&Text>,
    method: Option<&Text>,
    body: Option<&Spanned<serde_json::Value>>,
) -> Result<(), LoadError> {
    let misplaced = [
        ("endpoint", endpoint.map(|t| t.referenced)),
        ("method", method.map(|t| t.referenced)),
        ("body", body.map(|b| b.referenced)),
    ];
    for (name, at) in misplaced {
        if let Some(at) = at {
            return Err(pos
                .error_at_line(
                    at.line(),
                    at.column(),
                    format!("{field}.{name}"),
                    format!("`{name}` does not apply to a component"),
                )
                .with_hint("pass data to a component through `config` (templates allowed)"));
        }
    }
    Ok(())
}

/// A step's `condition`: `always`, a CEL expression, or `{component: NAME, config}`.
pub(super) fn condition(
    set: &DefinitionSet,
    pos: &DocPosition,
    def: &Spanned<ConditionDef>,
    field: &str,
    known: &BTreeSet<String>,
) -> Result<Option<Condition>, LoadError> {
    let at = |value: String| Spanned {
        value,
        referenced: def.referenced,
        defined: def.defined,
    };
    match &def.value {
        ConditionDef::Expression(text) if text.trim() == "always" => Ok(None),
        ConditionDef::Expression(text) => Ok(Some(Condition::Expression(expression(
            pos,
            &at(text.clone()),
            field,
            known,
        )?))),
        ConditionDef::Component(use_) => {
            let config = use_.config.clone().map(|c| Spanned {
                value: c,
                referenced: def.referenced,
                defined: def.defined,
            });
            Ok(Some(Condition::Component(component::call(
                set,
                pos,
                &at(use_.component.clone()),
                config.as_ref(),
                None,
                field,
                known,
            )?)))
        }
    }
}

/// A step's `compensation`: an HTTP call (`api`, `endpoint`) or a component.
pub(super) fn compensation(
    set: &DefinitionSet,
    pos: &DocPosition,
    def: &Spanned<CompensationDef>,
    field: &str,
    known: &BTreeSet<String>,
) -> Result<Call, LoadError> {
    let c = &def.value;
    match (&c.api, &c.component) {
        (Some(api), None) => {
            let endpoint = c.endpoint.as_ref().ok_or_else(|| {
                pos.error_at(
                    api,
                    format!("{field}.endpoint"),
                    "an HTTP compensation needs an `endpoint`",
                )
            })?;
            Ok(Call::Http(call(
                pos,
                CallFields {
                    label: c.name.as_ref(),
                    service: api,
                    endpoint: Some(endpoint),
                    method: c.method.as_ref(),
                    headers: &c.headers,
                    query: &c.query,
                    body: c.body.as_ref(),
                },
                field,
                known,
            )?))
        }
        (None, Some(component)) => {
            reject_http_fields(
                pos,
                field,
                c.endpoint.as_ref(),
                c.method.as_ref(),
                c.body.as_ref(),
            )?;
            Ok(Call::Component(component::call(
                set,
                pos,
                component,
                c.config.as_ref(),
                c.name.as_ref(),
                &format!("{field}.component"),
                known,
            )?))
        }
        _ => Err(pos
            .error_at_line(
                def.referenced.line(),
                def.referenced.column(),
                field,
                "a compensation needs exactly one of `api` (with `endpoint`) and `component`",
            )
            .with_hint("undo the step with an HTTP call or with a component")),
    }
}

/// Checks the documents that are not workflows (policies, stores, services, rules).
pub(super) fn check_documents(set: &DefinitionSet) -> Result<(), LoadError> {
    for doc in &set.documents {
        let pos = &doc.position;
        match &doc.document {
            Document::RetryPolicy(m) => {
                retry_policy(pos, &m.spec, Some(doc.name.clone()), "spec")?;
            }
            Document::StateStore(m) => {
                const TYPES: [&str; 4] = ["sqlite", "memory", "redis", "postgresql"];
                let t = &m.spec.store_type;
                if !TYPES.contains(&t.value.as_str()) {
                    return Err(pos
                        .error_at(
                            t,
                            "spec.type",
                            format!("unknown state store type `{}`", t.value),
                        )
                        .with_hint(format!("use one of {}", TYPES.join(", "))));
                }
                if let Some(ttl) = &m.spec.ttl {
                    duration(pos, ttl, "spec.ttl", &STORE_TTL)?;
                }
                if let Some(backend) = m.spec.persistence.as_ref().and_then(|p| p.backend.as_ref())
                    && backend.value != "postgresql"
                {
                    return Err(pos
                        .error_at(
                            backend,
                            "spec.persistence.backend",
                            format!("unknown persistence backend `{}`", backend.value),
                        )
                        .with_hint("use postgresql"));
                }
            }
            Document::Services(m) => {
                for (name, url) in &m.spec.services {
                    if let Err(why) = check_name(name) {
                        return Err(pos
                            .error_at(url, format!("spec.services.{name}"), why)
                            .with_hint(NAME_RULE));
                    }
                    if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
                        return Err(pos
                            .error_at(
                                url,
                                format!("spec.services.{name}"),
                                format!("`{}` is not an http(s) URL", url.value),
                            )
                            .with_hint(
                                "write the service's base URL, like http://127.0.0.1:8081",
                            ));
                    }
                }
            }
            Document::PrometheusRule(m) => {
                for (g, group) in m.spec.groups.iter().enumerate() {
                    for (r, rule) in group.rules.iter().enumerate() {
                        if rule.record.is_some() == rule.alert.is_some() {
                            return Err(pos.error_at(
                                &rule.expr,
                                format!("spec.groups[{g}].rules[{r}]"),
                                "a rule needs exactly one of `record` and `alert`",
                            ));
                        }
                    }
                }
            }
            Document::Component(m) => component::check(pos, &m.spec, &m.metadata.name)?,
            Document::Orchestration(_) | Document::StateMachine(_) => {}
        }
    }
    Ok(())
}
