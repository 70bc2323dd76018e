//! Resolving a use of a component (`component: NAME`) against its `Component` definition.

use std::collections::BTreeSet;

use serde_json::Value as Json;
use serde_saphyr::Spanned;

use crate::component::{Grants, Limits};
use crate::definition::{
    ComponentSpec, DefinitionSet, DocPosition, Document, Kind, LoadError, Text, closest,
};

use super::ComponentCall;
use super::expressions;
use super::ranges;
use super::ranges::{COMPONENT_DEADLINE, COMPONENT_FUEL, COMPONENT_MEMORY, COMPONENT_RESULT};

/// The `Component` document named `name`.
pub(super) fn find<'a>(set: &'a DefinitionSet, name: &str) -> Option<&'a ComponentSpec> {
    set.of_kind(Kind::Component)
        .find_map(|d| match &d.document {
            Document::Component(m) if d.name == name => Some(&m.spec),
            _ => None,
        })
}

pub(super) fn call(
    set: &DefinitionSet,
    pos: &DocPosition,
    name: &Text,
    config: Option<&Spanned<Json>>,
    label: Option<&Text>,
    field: &str,
    known: &BTreeSet<String>,
) -> Result<ComponentCall, LoadError> {
    let spec = find(set, &name.value).ok_or_else(|| {
        let names: Vec<&str> = set
            .of_kind(Kind::Component)
            .map(|d| d.name.as_str())
            .collect();
        let hint = match closest(&name.value, names.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None if names.is_empty() => {
                "define it in a `kind: Component` document loaded with the workflow".to_string()
            }
            None => format!("components: {}", names.join(", ")),
        };
        pos.error_at(name, field, format!("unknown component `{}`", name.value))
            .with_hint(hint)
    })?;
    let config = config
        .map(|c| {
            if !c.value.is_object() {
                return Err(pos.error_at(c, format!("{field}.config"), "config must be a mapping"));
            }
            expressions::json_template(pos, c, &format!("{field}.config"), known)
        })
        .transpose()?;
    Ok(ComponentCall {
        label: label.map(|l| l.value.clone()),
        component: name.value.clone(),
        defaults: spec
            .config
            .as_ref()
            .map(|c| c.value.clone())
            .unwrap_or_else(|| Json::Object(Default::default())),
        config,
        // Checked by `check`, which runs for every Component document before any use.
        grants: grants(pos, spec).unwrap_or_default(),
        limits: limits(pos, spec).unwrap_or_default(),
    })
}

/// Checks a `Component` document on its own.
pub(super) fn check(
    pos: &DocPosition,
    spec: &ComponentSpec,
    metadata_name: &Text,
) -> Result<(), LoadError> {
    if spec.source.is_none() && spec.digest.is_none() {
        return Err(pos
            .error_at(
                metadata_name,
                "spec.source",
                "a component needs `source` (a .wasm path) or `digest`",
            )
            .with_hint("point `source:` at the built component, relative to this file"));
    }
    if let Some(digest) = &spec.digest {
        let hex = digest.value.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(pos.error_at(
                digest,
                "spec.digest",
                format!("`{}` is not sha256:<64 hex digits>", digest.value),
            ));
        }
    }
    if let Some(config) = &spec.config
        && !config.value.is_object()
    {
        return Err(pos.error_at(config, "spec.config", "config must be a mapping"));
    }
    grants(pos, spec)?;
    limits(pos, spec)?;
    Ok(())
}

fn grants(pos: &DocPosition, spec: &ComponentSpec) -> Result<Grants, LoadError> {
    let mut grants = Grants::default();
    let Some(def) = &spec.grants else {
        return Ok(grants);
    };
    for host in &def.http {
        Grants::check_pattern(&host.value)
            .map_err(|m| pos.error_at(host, "spec.grants.http", m))?;
        grants.http.push(host.value.to_ascii_lowercase());
    }
    for scope in &def.state {
        match scope.value.as_str() {
            "execution" => grants.state_execution = true,
            "tenant" => grants.state_tenant = true,
            other => {
                return Err(pos
                    .error_at(
                        scope,
                        "spec.grants.state",
                        format!("unknown state scope `{other}`"),
                    )
                    .with_hint("use execution or tenant"));
            }
        }
    }
    Ok(grants)
}

fn limits(pos: &DocPosition, spec: &ComponentSpec) -> Result<Limits, LoadError> {
    let mut limits = Limits::default();
    let Some(def) = &spec.limits else {
        return Ok(limits);
    };
    if let Some(memory) = &def.memory {
        let asked = bytes(pos, memory, "spec.limits.memory")?;
        limits.memory_bytes = COMPONENT_MEMORY.check(pos, memory, "spec.limits.memory", asked)?;
    }
    if let Some(deadline) = &def.deadline {
        let field = "spec.limits.deadline";
        limits.deadline_ms =
            ranges::duration(pos, deadline, field, &COMPONENT_DEADLINE)?.as_millis() as u64;
    }
    if let Some(fuel) = &def.fuel {
        limits.fuel = Some(COMPONENT_FUEL.check(pos, fuel, "spec.limits.fuel", fuel.value)?);
    }
    if let Some(max) = &def.max_result {
        let asked = bytes(pos, max, "spec.limits.maxResult")?;
        limits.max_result_bytes =
            COMPONENT_RESULT.check(pos, max, "spec.limits.maxResult", asked)?;
    }
    Ok(limits)
}

/// `64MiB`, `512KiB`, `16MB`, `1GiB`, or a plain number of bytes.
fn bytes(pos: &DocPosition, text: &Text, field: &str) -> Result<u64, LoadError> {
    let t = text.value.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => u64::MAX,
    };
    match number.parse::<u64>() {
        Ok(n) if multiplier != u64::MAX && n > 0 => Ok(n.saturating_mul(multiplier)),
        _ => Err(pos
            .error_at(text, field, format!("`{}` is not a size", text.value))
            .with_hint("write a number with a unit, like 64MiB")),
    }
}
