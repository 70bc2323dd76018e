//! Checks shared by orchestrations and state machines: node names, and the documents that are
//! not workflows (policies, stores, services, rules, components).

use std::collections::BTreeMap;

use crate::definition::{
    DefinitionSet, DocPosition, Document, LoadError, NAME_RULE, Text, check_name,
};

use super::component;
use super::expressions::BUILTIN_VARIABLES;
use super::ranges::{STORE_TTL, duration};
use super::retries::retry_policy;

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
