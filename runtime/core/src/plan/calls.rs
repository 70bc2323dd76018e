//! The calls a node makes: an HTTP call (service, endpoint, method, headers, query, body), a
//! condition, a compensation; components go through [`super::component`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_saphyr::Spanned;

use crate::definition::{
    CompensationDef, ConditionDef, DefinitionSet, DocPosition, LoadError, Text, check_name,
};
use crate::expr::Template;

use super::expressions::{expression, json_template, template};
use super::{Call, Condition, HttpCall, component};

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
