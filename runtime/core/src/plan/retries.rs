//! Retry policies: inline `retry`, a `RetryPolicy` by name, the workflow's own, or the only
//! one loaded alongside; every value checked against its range.

use std::sync::Arc;

use serde_saphyr::Spanned;

use crate::definition::{
    DefinitionSet, DocPosition, Document, Kind, LoadError, RetrySpec, Text, closest,
};
use crate::retry::{RetryOn, RetryPolicy, Strategy};

use super::ranges::{JITTER, MAX_RETRIES, MULTIPLIER, RETRY_DELAY, duration};

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
