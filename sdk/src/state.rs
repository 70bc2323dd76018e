//! Key-value state kept by the host.
//!
//! Keys live in a [`Scope`]: [`Scope::Execution`] is private to the current execution and
//! removed with it; [`Scope::Tenant`] is shared by every execution of the tenant. The host
//! prefixes every key with the tenant (and the execution), so a component can never name
//! another tenant's keys, and it refuses scopes the component has no grant for
//! ([`StateError::Denied`]).
//!
//! ```no_run
//! # fn demo() -> Result<(), orca_sdk::Error> {
//! use orca_sdk::state::{self, Scope};
//! use std::time::Duration;
//!
//! let seen: u32 = state::get_json(Scope::Tenant, "orders-seen")?.unwrap_or(0);
//! state::set_json(Scope::Tenant, "orders-seen", &(seen + 1), Some(Duration::from_secs(3600)))?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::orca::plugin::state as wit;

/// Where a key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Visible to this execution only; removed with it.
    Execution,
    /// Shared by every execution of the tenant.
    Tenant,
}

impl Scope {
    /// `"execution"` or `"tenant"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Execution => "execution",
            Scope::Tenant => "tenant",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a state call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The component has no grant for this scope.
    Denied(String),
    /// The key or value is not acceptable (empty key, too large).
    Invalid(String),
    /// The store could not be reached (retryable).
    Unavailable(String),
    /// A stored value is not the expected JSON ([`get_json`]), or a value could not be
    /// serialized ([`set_json`]).
    Decode(String),
}

impl StateError {
    /// Whether trying again may help (only [`StateError::Unavailable`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StateError::Unavailable(_))
    }

    /// A short machine-readable code (`state_denied`, `state_invalid`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Denied(_) => "state_denied",
            StateError::Invalid(_) => "state_invalid",
            StateError::Unavailable(_) => "state_unavailable",
            StateError::Decode(_) => "state_bad_value",
        }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Denied(m) => write!(f, "state access denied: {m}"),
            StateError::Invalid(m) => write!(f, "invalid state request: {m}"),
            StateError::Unavailable(m) => write!(f, "state store unavailable: {m}"),
            StateError::Decode(m) => write!(f, "bad state value: {m}"),
        }
    }
}

impl std::error::Error for StateError {}

impl From<StateError> for crate::Error {
    fn from(e: StateError) -> Self {
        crate::Error::new(e.to_string(), e.is_retryable()).with_code(e.code())
    }
}

impl From<wit::Error> for StateError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::Denied(m) => StateError::Denied(m),
            wit::Error::Invalid(m) => StateError::Invalid(m),
            wit::Error::Unavailable(m) => StateError::Unavailable(m),
        }
    }
}

fn to_wit(scope: Scope) -> wit::Scope {
    match scope {
        Scope::Execution => wit::Scope::Execution,
        Scope::Tenant => wit::Scope::Tenant,
    }
}

/// TTLs are whole seconds: round up (so a TTL is never shorter than asked, and a non-zero one
/// never becomes 0), saturating at `u32::MAX`.
fn ttl_seconds(ttl: Duration) -> u32 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Calls the host; outside a component (unit tests on the host) there is none.
fn host<T>(what: &str, call: impl FnOnce() -> T) -> T {
    if cfg!(not(target_arch = "wasm32")) {
        panic!(
            "orca_sdk::state::{what} needs the Orca host; it is only available inside a component"
        )
    }
    call()
}

/// The raw value of `key`, or `None`.
pub fn get(scope: Scope, key: &str) -> Result<Option<Vec<u8>>, StateError> {
    host("get", || wit::get(to_wit(scope), key)).map_err(StateError::from)
}

/// The value of `key` decoded from JSON, or `None`.
pub fn get_json<T: DeserializeOwned>(scope: Scope, key: &str) -> Result<Option<T>, StateError> {
    match get(scope, key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Decode(format!("{scope} key `{key}`: {e}"))),
    }
}

/// The value of `key` as text (invalid UTF-8 replaced), or `None`.
pub fn get_string(scope: Scope, key: &str) -> Result<Option<String>, StateError> {
    Ok(get(scope, key)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Stores a raw value; with `ttl` the key expires after that long (whole seconds, rounded up).
pub fn set(scope: Scope, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
    let ttl = ttl.map(ttl_seconds);
    host("set", || wit::set(to_wit(scope), key, value, ttl)).map_err(StateError::from)
}

/// Stores `value` as JSON; with `ttl` the key expires after that long.
pub fn set_json<T: Serialize + ?Sized>(
    scope: Scope,
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<(), StateError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| StateError::Decode(format!("cannot serialize `{key}`: {e}")))?;
    set(scope, key, &bytes, ttl)
}

/// Removes `key` (no error if it does not exist).
pub fn delete(scope: Scope, key: &str) -> Result<(), StateError> {
    host("delete", || wit::delete(to_wit(scope), key)).map_err(StateError::from)
}

/// The scope's keys that start with `prefix`, in lexical order.
pub fn list_keys(scope: Scope, prefix: &str) -> Result<Vec<String>, StateError> {
    host("list_keys", || wit::list_keys(to_wit(scope), prefix)).map_err(StateError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_and_saturates() {
        assert_eq!(ttl_seconds(Duration::from_secs(5)), 5);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_seconds(Duration::ZERO), 0);
        assert_eq!(ttl_seconds(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn error_mapping() {
        let e: crate::Error = StateError::Unavailable("redis down".into()).into();
        assert!(e.retryable);
        assert_eq!(e.code.as_deref(), Some("state_unavailable"));
        let e: crate::Error = StateError::Denied("no grant for tenant".into()).into();
        assert!(!e.retryable);
        assert_eq!(e.message, "state access denied: no grant for tenant");
    }
}
