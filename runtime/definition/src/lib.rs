//! Definitions: multi-document YAML files parsed into typed, position-carrying documents.
//!
//! Loading is pure (the caller reads the files) and stops at the first problem with a
//! [`LoadError`] that names the file, line and field. Resolving names across documents
//! (retry policies, `dependsOn`, `next`) and compiling expressions happens in `crate::plan`.

mod document;
mod error;
mod name;
mod strict;

pub use document::*;
pub use error::{DocPosition, LoadError, closest};
pub use name::{MAX_NAME_LEN, NAME_RULE, check_name, is_valid_name};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The `apiVersion`s accepted for Orca's kinds: the specification's example group, written as
/// it is in the seed files, and Orca's own.
pub const API_VERSIONS: &[&str] = &["orca.dev/v1", "api.example.com/v1"];
/// The Prometheus operator's group, for `PrometheusRule`.
pub const PROMETHEUS_API_VERSION: &str = "monitoring.coreos.com/v1";

/// A file as the user gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// The path as given on the command line (used in messages).
    pub name: String,
    pub text: String,
}

/// The kinds of document Orca understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SequentialOrchestration,
    ParallelOrchestration,
    ConditionalOrchestration,
    WorkflowDefinition,
    RetryPolicy,
    StateStore,
    Services,
    PrometheusRule,
    Component,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::SequentialOrchestration,
        Kind::ParallelOrchestration,
        Kind::ConditionalOrchestration,
        Kind::WorkflowDefinition,
        Kind::RetryPolicy,
        Kind::StateStore,
        Kind::Services,
        Kind::PrometheusRule,
        Kind::Component,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SequentialOrchestration => "SequentialOrchestration",
            Kind::ParallelOrchestration => "ParallelOrchestration",
            Kind::ConditionalOrchestration => "ConditionalOrchestration",
            Kind::WorkflowDefinition => "WorkflowDefinition",
            Kind::RetryPolicy => "RetryPolicy",
            Kind::StateStore => "StateStore",
            Kind::Services => "Services",
            Kind::PrometheusRule => "PrometheusRule",
            Kind::Component => "Component",
        }
    }

    /// The kind `name` spells (as in `kind:` and [`Self::as_str`]), if any.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether documents of this kind are workflows that `orca run` can execute.
    pub fn is_workflow(self) -> bool {
        matches!(
            self,
            Kind::SequentialOrchestration
                | Kind::ParallelOrchestration
                | Kind::ConditionalOrchestration
                | Kind::WorkflowDefinition
        )
    }
}

/// A parsed document of one kind.
#[derive(Debug, Clone)]
pub enum Document {
    Orchestration(Manifest<OrchestrationSpec>),
    StateMachine(Manifest<StateMachineSpec>),
    RetryPolicy(Manifest<RetrySpec>),
    StateStore(Manifest<StateStoreSpec>),
    Services(Manifest<ServicesSpec>),
    PrometheusRule(Manifest<PrometheusRuleSpec>),
    Component(Manifest<ComponentSpec>),
}

/// A document with its kind and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedDocument {
    pub kind: Kind,
    pub name: String,
    pub position: DocPosition,
    pub document: Document,
}

/// Every document of a set of files, in the order written.
#[derive(Debug, Clone, Default)]
pub struct DefinitionSet {
    pub sources: Vec<Source>,
    pub documents: Vec<LoadedDocument>,
}

impl DefinitionSet {
    /// Parses every document of every source. Names must be unique per kind across the set.
    pub fn load(sources: Vec<Source>) -> Result<Self, LoadError> {
        let mut documents: Vec<LoadedDocument> = Vec::new();
        for source in &sources {
            check_characters(source)?;
            for (line_offset, text) in split_documents(&source.text) {
                let position = DocPosition {
                    file: source.name.clone(),
                    line_offset,
                };
                let loaded = parse_document(&position, text)?;
                let duplicate = documents.iter().find(|d| {
                    d.name == loaded.name && (d.kind == loaded.kind || both_workflows(d, &loaded))
                });
                if let Some(first) = duplicate {
                    return Err(position
                        .error_at_line(
                            loaded.metadata_line(),
                            1,
                            "metadata.name",
                            format!(
                                "a {} named `{}` is already defined at {}:{}",
                                first.kind.as_str(),
                                loaded.name,
                                first.position.file,
                                first.metadata_line() + first.position.line_offset,
                            ),
                        )
                        .with_hint("give each definition of a kind its own name"));
                }
                documents.push(loaded);
            }
        }
        Ok(DefinitionSet { sources, documents })
    }

    pub fn workflows(&self) -> impl Iterator<Item = &LoadedDocument> {
        self.documents.iter().filter(|d| d.kind.is_workflow())
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &LoadedDocument> {
        self.documents.iter().filter(move |d| d.kind == kind)
    }
}

/// YAML allows no control characters but tab and line breaks; a NUL in particular could
/// not be stored in a PostgreSQL text column. Found here, the error names its line.
fn check_characters(source: &Source) -> Result<(), LoadError> {
    let control = |c: char| c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r');
    let Some(at) = source.text.find(control) else {
        return Ok(());
    };
    let before = &source.text[..at];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    let found = source.text[at..].chars().next().unwrap_or_default();
    let position = DocPosition {
        file: source.name.clone(),
        line_offset: 0,
    };
    Err(position
        .error_at_line(line, column, "", format!("the control character {found:?} is not allowed in YAML"))
        .with_hint("remove it; write it as an escape (\\u0000) inside a double-quoted string if it is data"))
}

fn both_workflows(a: &LoadedDocument, b: &LoadedDocument) -> bool {
    a.kind.is_workflow() && b.kind.is_workflow()
}

impl LoadedDocument {
    fn metadata_line(&self) -> u64 {
        self.document.metadata_name().referenced.line()
    }
}

impl Document {
    /// `metadata.name`, where it was written.
    fn metadata_name(&self) -> &Text {
        match self {
            Document::Orchestration(m) => &m.metadata.name,
            Document::StateMachine(m) => &m.metadata.name,
            Document::RetryPolicy(m) => &m.metadata.name,
            Document::StateStore(m) => &m.metadata.name,
            Document::Services(m) => &m.metadata.name,
            Document::PrometheusRule(m) => &m.metadata.name,
            Document::Component(m) => &m.metadata.name,
        }
    }
}

/// Splits a YAML stream at its `---` / `...` markers. Returns each non-empty document with the
/// number of file lines before it. A marker can only start a line at column 0, and block
/// scalars are always indented, so a line-based split cannot cut a value in two.
pub fn split_documents(text: &str) -> Vec<(u64, &str)> {
    let mut documents = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 0u64;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = ["---", "..."].iter().any(|m| {
            bare.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        });
        if is_marker {
            documents.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = index as u64 + 1;
        }
        offset += line.len();
    }
    documents.push((start_line, &text[start_byte..]));
    documents.retain(|(_, doc)| {
        doc.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#') && !l.starts_with('%')
        })
    });
    documents
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: Option<Text>,
    #[serde(default)]
    kind: Option<Text>,
}

fn parse_document(position: &DocPosition, text: &str) -> Result<LoadedDocument, LoadError> {
    let header: Header = from_yaml(position, text)?;
    let Some(kind_text) = header.kind else {
        return Err(position
            .error_at_line(0, 1, "kind", "missing field `kind`")
            .with_hint(format!("add `kind:` with one of: {}", kind_list())));
    };
    let Some(kind) = Kind::parse(&kind_text.value) else {
        let mut error = position.error_at(
            &kind_text,
            "kind",
            format!("unknown kind `{}`", kind_text.value),
        );
        error.hint = Some(
            match closest(&kind_text.value, Kind::ALL.iter().map(|k| k.as_str())) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("known kinds: {}", kind_list()),
            },
        );
        return Err(error);
    };
    let allowed: &[&str] = if kind == Kind::PrometheusRule {
        &[PROMETHEUS_API_VERSION]
    } else {
        API_VERSIONS
    };
    match &header.api_version {
        None => {
            return Err(position
                .error_at_line(0, 1, "apiVersion", "missing field `apiVersion`")
                .with_hint(format!("add `apiVersion: {}`", allowed[0])));
        }
        Some(version) if !allowed.contains(&version.value.as_str()) => {
            return Err(position
                .error_at(
                    version,
                    "apiVersion",
                    format!(
                        "`{}` is not an apiVersion of kind {}",
                        version.value,
                        kind.as_str()
                    ),
                )
                .with_hint(format!("use one of: {}", allowed.join(", "))));
        }
        Some(_) => {}
    }
    let document = match kind {
        Kind::SequentialOrchestration
        | Kind::ParallelOrchestration
        | Kind::ConditionalOrchestration => Document::Orchestration(from_yaml(position, text)?),
        Kind::WorkflowDefinition => Document::StateMachine(from_yaml(position, text)?),
        Kind::RetryPolicy => Document::RetryPolicy(from_yaml(position, text)?),
        Kind::StateStore => Document::StateStore(from_yaml(position, text)?),
        Kind::Services => Document::Services(from_yaml(position, text)?),
        Kind::PrometheusRule => Document::PrometheusRule(from_yaml(position, text)?),
        Kind::Component => Document::Component(from_yaml(position, text)?),
    };
    let name = document.metadata_name();
    check_name(&name.value).map_err(|message| {
        position
            .error_at(name, "metadata.name", message)
            .with_hint(NAME_RULE)
    })?;
    Ok(LoadedDocument {
        kind,
        name: name.value.clone(),
        position: position.clone(),
        document,
    })
}

fn kind_list() -> String {
    Kind::ALL.map(|k| k.as_str()).join(", ")
}

/// Deserializes one document, turning the parser's error into a positioned [`LoadError`].
fn from_yaml<T: DeserializeOwned>(position: &DocPosition, text: &str) -> Result<T, LoadError> {
    serde_saphyr::from_str(text).map_err(|error| {
        let (line, column) = error
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let message = error.without_snippet().to_string();
        parser_error(position, text, line, column, &message)
    })
}

/// The parser reports a missing field where the mapping ends; people look for it where the
/// mapping starts. Walks up from (`line`, `column`) over the keys of the same block mapping to
/// its first key (a `- ` item start or the first key under its parent).
fn mapping_start(text: &str, line: u64, column: u64) -> u64 {
    let lines: Vec<&str> = text.lines().collect();
    let key_col = column.saturating_sub(1) as usize;
    let mut index = (line.saturating_sub(1) as usize).min(lines.len().saturating_sub(1));
    let indent = |l: &str| l.len() - l.trim_start().len();
    let starts_item = |l: &str| key_col >= 2 && l.get(key_col - 2..key_col) == Some("- ");
    while index > 0 && !starts_item(lines[index]) {
        let previous = lines[index - 1];
        let blank = previous.trim().is_empty() || previous.trim_start().starts_with('#');
        if blank
            || indent(previous) >= key_col
            || starts_item(previous) && indent(previous) + 2 == key_col
        {
            index -= 1;
            if starts_item(lines[index]) {
                break;
            }
        } else {
            break;
        }
    }
    // Skip blank or comment lines the walk may have stopped on.
    while index + 1 < lines.len()
        && (lines[index].trim().is_empty() || lines[index].trim_start().starts_with('#'))
    {
        index += 1;
    }
    index as u64 + 1
}

/// Rewords the parser's message for people: names the key written on that line, suggests the
/// field a misspelt key was meant to be, and drops the parser's own (document-relative) position.
fn parser_error(
    position: &DocPosition,
    text: &str,
    line: u64,
    column: u64,
    raw: &str,
) -> LoadError {
    let first_line = raw.lines().next().unwrap_or(raw);
    let message = match first_line.rfind(" at line ") {
        Some(cut) => &first_line[..cut],
        None => first_line,
    };
    let key = text
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .and_then(|l| l.trim_start().trim_start_matches("- ").split_once(':'))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.contains([' ', '{', '[', '"', '\'']));
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let expected: Vec<&str> = expected
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .split(", ")
            .map(|e| e.trim_matches('`'))
            .filter(|e| !e.is_empty())
            .collect();
        let hint = match closest(field, expected.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("fields here: {}", expected.join(", ")),
        };
        return position
            .error_at_line(line, column, field, format!("unknown field `{field}`"))
            .with_hint(hint);
    }
    let friendly = match message {
        "expected sequence start" => "expected a list".to_string(),
        "expected mapping start" => "expected a mapping (key: value pairs)".to_string(),
        m if m.starts_with("invalid u") || m.starts_with("invalid i") => {
            format!("expected a whole number ({})", &m["invalid ".len()..])
        }
        m => m.to_string(),
    };
    if message.starts_with("missing field") {
        let start = mapping_start(text, line, column);
        return position.error_at_line(start, column, "", friendly);
    }
    position.error_at_line(line, column, key.unwrap_or_default(), friendly)
}
