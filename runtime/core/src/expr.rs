//! Expressions: CEL for conditions and data mapping, and `${ … }` templates built on it.
//!
//! One small, side-effect-free language serves every place a workflow computes something
//! (conditions, choice rules, request templates, outputs). Expressions compile when the
//! definition loads, so a syntax error is a load error, and evaluate against [`Variables`]
//! that hand out JSON values by name (`input`, `steps`, each result by name and `stepN`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde_json::Value as Json;

mod cost;

pub use cost::{MAX_ITERATIONS, MAX_RESULT_BYTES, MAX_SOURCE_BYTES};

/// How many iterations an evaluation may take before it is handed to [`LONG_EVALUATIONS`]:
/// a few milliseconds of work.
const OFFLOAD_FROM: u64 = 10_000;

/// Where long evaluations run, set once by the host: an async host hands them to a thread
/// where they cannot hold up other tasks (request handling above all). This crate owns no
/// runtime, so it only offers the hook; without it they run where they are called.
pub static LONG_EVALUATIONS: std::sync::OnceLock<fn(&mut dyn FnMut())> = std::sync::OnceLock::new();

/// A compiled CEL expression with its source text (kept for messages).
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<cel::Program>,
    /// The top-level variables it reads, found once at compile time.
    variables: Arc<[String]>,
    /// Whether it holds a comprehension (a macro such as `all` or `map`), whose cost depends
    /// on the data: such an expression is checked against [`MAX_ITERATIONS`] before each
    /// evaluation.
    loops: bool,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expression `{source_text}` failed: {message}")]
pub struct EvalError {
    pub source_text: String,
    pub message: String,
}

impl Expr {
    /// Compiles `source`; the error is the parser's message, suitable to show the user. An
    /// expression longer than [`MAX_SOURCE_BYTES`], or one that would iterate more than
    /// [`MAX_ITERATIONS`] times whatever its data, is refused here.
    pub fn compile(source: &str) -> Result<Expr, String> {
        let source = source.trim();
        if source.len() > MAX_SOURCE_BYTES {
            return Err(format!(
                "the expression is {} bytes long; at most {MAX_SOURCE_BYTES} are allowed \
                 (split the work over several steps or expressions)",
                source.len()
            ));
        }
        // The parser is a dependency fed with a tenant's text: a panic inside it is a
        // refused expression, not a crashed request.
        let program = std::panic::catch_unwind(|| cel::Program::compile(source))
            .map_err(|_| format!("`{source}` is not a valid expression: the parser failed on it"))?
            .map_err(|errors| describe_syntax_error(source, &errors.to_string()))?;
        let shape = cost::Shape::of(program.expression());
        if shape.loops {
            let least = cost::iterations(program.expression(), cost::Unknown::Empty);
            if least > MAX_ITERATIONS {
                return Err(over_budget(source, least));
            }
        }
        Ok(Expr {
            source: source.to_string(),
            program: Arc::new(program),
            variables: shape.variables.into(),
            loops: shape.loops,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The top-level variables the expression reads, so loading can reject unknown names.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// Evaluates against `scope`, asking it only for the variables this expression reads.
    /// Within the budget: at most [`MAX_ITERATIONS`] comprehension iterations (checked
    /// before evaluating, from the sizes of the values read) and a result of at most
    /// [`MAX_RESULT_BYTES`].
    pub fn eval(&self, scope: &dyn Variables) -> Result<Json, EvalError> {
        let mut context = cel::Context::default();
        let mut longest = 0u64;
        for name in self.variables.iter() {
            if let Some(value) = scope.variable(name) {
                if self.loops {
                    longest = longest.max(cost::longest_container(&value));
                }
                context.add_variable_from_value(name.clone(), json_to_cel(&value));
            }
        }
        let most = if self.loops {
            cost::iterations(self.program.expression(), cost::Unknown::AtMost(longest))
        } else {
            0
        };
        if most > MAX_ITERATIONS {
            return Err(self.error(format!(
                "with this data it could iterate {most} times, over the budget of \
                 {MAX_ITERATIONS} per evaluation"
            )));
        }
        let mut outcome = None;
        let mut evaluate = || {
            outcome = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || self.program.execute(&context),
            )));
        };
        match LONG_EVALUATIONS.get() {
            Some(offload) if most > OFFLOAD_FROM => offload(&mut evaluate),
            _ => evaluate(),
        }
        let value = outcome
            .unwrap_or_else(|| Err(Box::new("not evaluated")))
            .map_err(|_| self.error("the evaluator failed on it".to_string()))?
            .map_err(|e| self.error(e.to_string()))?;
        if cost::json_size_within(&value, MAX_RESULT_BYTES).is_none() {
            return Err(self.error(format!(
                "its result is larger than {} MiB",
                MAX_RESULT_BYTES >> 20
            )));
        }
        value
            .json()
            .map_err(|e| self.error(format!("result cannot be JSON: {e}")))
    }

    /// Evaluates a condition: anything but a boolean is an error, not a truthiness guess.
    pub fn eval_bool(&self, scope: &dyn Variables) -> Result<bool, EvalError> {
        match self.eval(scope)? {
            Json::Bool(b) => Ok(b),
            other => Err(self.error(format!("expected a boolean, got {other}"))),
        }
    }

    fn error(&self, message: String) -> EvalError {
        EvalError {
            source_text: self.source.clone(),
            message,
        }
    }
}

fn over_budget(source: &str, least: u64) -> String {
    format!(
        "`{source}` would iterate at least {least} times, over the budget of {MAX_ITERATIONS} \
         per evaluation (nested `all`/`exists`/`map`/`filter` multiply)"
    )
}

/// The CEL parser reports `<input>:LINE:COL: Syntax error: mismatched input … expecting {…}`
/// with a long token list; keep what a person needs: what went wrong, and where.
fn describe_syntax_error(source: &str, raw: &str) -> String {
    let first = raw
        .lines()
        .next()
        .unwrap_or(raw)
        .trim_start_matches("ERROR: ");
    let column = first
        .strip_prefix("<input>:")
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|c| c.trim().parse::<usize>().ok());
    let detail = first.split_once("Syntax error: ").map_or(first, |(_, d)| d);
    let detail = detail.split(" expecting ").next().unwrap_or(detail);
    let detail = if detail.contains("'<EOF>'") {
        "the expression ends too early".to_string()
    } else {
        detail.replace("mismatched input", "unexpected")
    };
    match column {
        Some(c) => format!("`{source}` is not a valid expression: {detail} (at character {c})"),
        None => format!("`{source}` is not a valid expression: {detail}"),
    }
}

/// Where expressions read their variables, one top-level name at a time: a value is only
/// built when an expression reads it, and most templates read little or nothing.
pub trait Variables {
    fn variable(&self, name: &str) -> Option<Cow<'_, Json>>;
}

/// Variables held as values (for tests, and anywhere they are already at hand).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    variables: BTreeMap<String, Json>,
}

impl Scope {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, name: impl Into<String>, value: Json) {
        self.variables.insert(name.into(), value);
    }
}

impl Variables for Scope {
    fn variable(&self, name: &str) -> Option<Cow<'_, Json>> {
        self.variables.get(name).map(Cow::Borrowed)
    }
}

/// JSON to CEL, keeping integers as CEL `int` so that `step1.amount + 1` type-checks
/// (the crate's generic conversion makes non-negative JSON integers `uint`).
fn json_to_cel(value: &Json) -> cel::Value {
    match value {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Json::Object(fields) => {
            let map: HashMap<cel::objects::Key, cel::Value> = fields
                .iter()
                .map(|(k, v)| (cel::objects::Key::from(k.clone()), json_to_cel(v)))
                .collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// A string with `${ expr }` parts, and in endpoints also `{field}` placeholders taken from the
/// execution input.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Expr(Expr),
    InputField(String),
}

impl Template {
    /// Parses `text`. With `input_placeholders`, `{name}` is read from `input.name`.
    pub fn parse(text: &str, input_placeholders: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("${") {
                let end = expression_end(after)
                    .ok_or_else(|| format!("`${{` without a closing `}}` in `{text}`"))?;
                let source = &after[..end];
                if source.trim().is_empty() {
                    return Err(format!("empty `${{}}` in `{text}`"));
                }
                push_text(&mut parts, &mut literal);
                parts.push(Part::Expr(Expr::compile(source)?));
                rest = &after[end + 1..];
            } else if input_placeholders && rest.starts_with('{') {
                let close = rest.find('}');
                let name = close.map(|c| &rest[1..c]);
                match name {
                    Some(name) if is_identifier(name) => {
                        push_text(&mut parts, &mut literal);
                        parts.push(Part::InputField(name.to_string()));
                        rest = &rest[name.len() + 2..];
                    }
                    _ => {
                        literal.push('{');
                        rest = &rest[1..];
                    }
                }
            } else {
                let c = rest.chars().next().unwrap_or_default();
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        push_text(&mut parts, &mut literal);
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every expression inside, for load-time checks of the names they use.
    pub fn expressions(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            _ => None,
        })
    }

    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Renders to a string; `encode` is applied to every computed piece (never to literal text).
    pub fn render(
        &self,
        scope: &dyn Variables,
        encode: fn(&str) -> String,
    ) -> Result<String, EvalError> {
        let mut out = String::new();
        self.render_onto(scope, encode, &mut out)?;
        Ok(out)
    }

    /// [`Template::render`], appended to `out`: a URL is its service's base followed by the
    /// rendered endpoint, made in one buffer.
    pub fn render_onto(
        &self,
        scope: &dyn Variables,
        encode: fn(&str) -> String,
        out: &mut String,
    ) -> Result<(), EvalError> {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => out.push_str(&encode(&display(&e.eval(scope)?))),
                Part::InputField(name) => {
                    let input = scope.variable("input");
                    let value = input
                        .as_deref()
                        .and_then(|input| input.get(name))
                        .ok_or_else(|| EvalError {
                            source_text: format!("{{{name}}}"),
                            message: format!("the execution input has no field `{name}`"),
                        })?;
                    out.push_str(&encode(&display(value)));
                }
            }
        }
        Ok(())
    }

    /// The length of the template's literal text: what it renders to, less its expressions.
    pub fn literal_len(&self) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.len(),
                Part::Expr(_) | Part::InputField(_) => 0,
            })
            .sum()
    }

    /// Renders to JSON: a template that is exactly one `${ expr }` keeps the value's type.
    pub fn render_json(&self, scope: &dyn Variables) -> Result<Json, EvalError> {
        if let [Part::Expr(e)] = self.parts.as_slice() {
            return e.eval(scope);
        }
        self.render(scope, str::to_string).map(Json::String)
    }
}

fn push_text(parts: &mut Vec<Part>, literal: &mut String) {
    if !literal.is_empty() {
        parts.push(Part::Text(std::mem::take(literal)));
    }
}

/// The index of the `}` that closes a `${`, skipping braces nested in the expression and
/// anything inside string literals.
fn expression_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` can be used as a bare CEL variable.
pub fn is_cel_identifier(name: &str) -> bool {
    is_identifier(name)
}

/// A JSON value as text in a string template: strings without quotes, the rest as JSON.
fn display(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON value with templates in its strings (request bodies, `pass` results).
#[derive(Debug, Clone)]
pub enum JsonTemplate {
    Literal(Json),
    Text(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    pub fn parse(value: &Json) -> Result<JsonTemplate, String> {
        Ok(match value {
            Json::String(s) => {
                let template = Template::parse(s, false)?;
                if template.is_literal() {
                    JsonTemplate::Literal(value.clone())
                } else {
                    JsonTemplate::Text(template)
                }
            }
            Json::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(JsonTemplate::parse)
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(fields) => JsonTemplate::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), JsonTemplate::parse(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Literal(other.clone()),
        })
    }

    pub fn expressions(&self) -> Vec<&Expr> {
        match self {
            JsonTemplate::Literal(_) => Vec::new(),
            JsonTemplate::Text(t) => t.expressions().collect(),
            JsonTemplate::Array(items) => items.iter().flat_map(|i| i.expressions()).collect(),
            JsonTemplate::Object(fields) => {
                fields.iter().flat_map(|(_, v)| v.expressions()).collect()
            }
        }
    }

    pub fn render(&self, scope: &dyn Variables) -> Result<Json, EvalError> {
        Ok(match self {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::Text(t) => t.render_json(scope)?,
            JsonTemplate::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|i| i.render(scope))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.render(scope)?)))
                    .collect::<Result<_, EvalError>>()?,
            ),
        })
    }
}

#[cfg(test)]
mod tests;
