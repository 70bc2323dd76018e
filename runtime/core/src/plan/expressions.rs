//! Expressions and templates as a definition writes them: compiled, and checked to read only
//! variables that exist (the inputs, the steps' results, the built-ins).

use std::collections::BTreeSet;

use serde_saphyr::Spanned;

use crate::definition::{DocPosition, LoadError, Text, closest};
use crate::expr::{Expr, JsonTemplate, Template, is_cel_identifier};

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
