//! Load errors that point at the user's file, line and field.

use std::fmt;

use serde_saphyr::Spanned;

/// A problem in a definition file. Its `Display` is what the user reads:
/// `file:line:column: field: message`, then a hint on how to fix it when there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct LoadError {
    pub file: String,
    /// 1-based; 0 when the problem has no single place (for example an unreadable file).
    pub line: u64,
    pub column: u64,
    /// The YAML path of the offending field, such as `spec.steps[1].dependsOn`.
    pub field: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  help: {hint}")?;
        }
        Ok(())
    }
}

impl LoadError {
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Where a document sits in its file, so positions inside it can be reported file-relative.
#[derive(Debug, Clone)]
pub struct DocPosition {
    pub file: String,
    /// Lines of the file before the document's first line.
    pub line_offset: u64,
}

impl DocPosition {
    /// An error at the place `value` was written.
    pub fn error_at<T>(
        &self,
        value: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> LoadError {
        let location = value.referenced;
        self.error_at_line(location.line(), location.column(), field, message)
    }

    /// An error at a 1-based line and column of the document (0 for "the document as a whole").
    pub fn error_at_line(
        &self,
        line: u64,
        column: u64,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> LoadError {
        LoadError {
            file: self.file.clone(),
            line: if line == 0 {
                self.line_offset + 1
            } else {
                line + self.line_offset
            },
            column: column.max(1),
            field: Some(field.into()).filter(|f: &String| !f.is_empty()),
            message: message.into(),
            hint: None,
        }
    }
}

/// The closest candidate to `given` by edit distance, for "did you mean" hints.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(&given.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_near_names_only() {
        let kinds = ["SequentialOrchestration", "RetryPolicy", "StateStore"];
        assert_eq!(closest("RetryPolcy", kinds), Some("RetryPolicy"));
        assert_eq!(closest("statestore", kinds), Some("StateStore"));
        assert_eq!(closest("Banana", kinds), None);
    }
}
