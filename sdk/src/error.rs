//! The error a component reports to the host.

use std::fmt;

/// A failure reported by a component.
///
/// `retryable` tells the host whether the step's retry policy may try again (for example after
/// a timeout or a 503); a fatal error fails the step at once (and starts compensation if the
/// workflow has any). `code` is an optional machine-readable tag such as
/// `insufficient_funds`, visible in the execution's record.
///
/// Most errors reach a step through `?`: [`serde_json::Error`] (bad JSON, fatal),
/// [`crate::http::HttpError`] (timeouts, connection failures, 5xx, 408 and 429 are retryable)
/// and [`crate::state::StateError`] (an unreachable store is retryable) all convert into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// A human-readable message.
    pub message: String,
    /// Whether the step's retry policy may try again.
    pub retryable: bool,
    /// An optional machine-readable code.
    pub code: Option<String>,
}

impl Error {
    /// An error with the given retryability.
    pub fn new(message: impl Into<String>, retryable: bool) -> Self {
        Error {
            message: message.into(),
            retryable,
            code: None,
        }
    }

    /// A transient failure: the step's retry policy may try again.
    pub fn retryable(message: impl Into<String>) -> Self {
        Error::new(message, true)
    }

    /// A permanent failure: retrying would not help.
    pub fn fatal(message: impl Into<String>) -> Self {
        Error::new(message, false)
    }

    /// Sets the machine-readable code.
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Whether the step's retry policy may try again.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        if self.retryable {
            f.write_str(" (retryable)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::fatal(format!("invalid JSON: {e}")).with_code("invalid_json")
    }
}

/// A plain message is a fatal error.
impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::fatal(message)
    }
}

/// A plain message is a fatal error.
impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::fatal(message)
    }
}

impl From<Error> for crate::__bindings::orca::plugin::types::Error {
    fn from(e: Error) -> Self {
        crate::__bindings::orca::plugin::types::Error {
            message: e.message,
            retryable: e.retryable,
            code: e.code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_display() {
        let e = Error::retryable("busy").with_code("rate_limited");
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "busy [rate_limited] (retryable)");
        let e = Error::fatal("no");
        assert!(!e.retryable);
        assert_eq!(e.code, None);
        assert_eq!(e.to_string(), "no");
    }

    #[test]
    fn serde_errors_are_fatal() {
        let e: Error = serde_json::from_str::<u32>("x").unwrap_err().into();
        assert!(!e.retryable);
        assert_eq!(e.code.as_deref(), Some("invalid_json"));
    }
}
