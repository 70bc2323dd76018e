//! Component calls as data: what to invoke, with which grants and limits.
//!
//! These are the engine's side of Wasm steps: plain, serializable values stored on the
//! execution like an HTTP request. `crate::wasm` carries them out; nothing here knows wasmtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

mod inspect;

pub use inspect::{CONDITION_EXPORT, Exports, STEP_EXPORT, inspect};

use crate::cached_json::CachedJson;
use crate::payload::Payload;

/// Which export to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Export {
    /// `step.run`, for steps and compensations.
    Step,
    /// `condition.evaluate`.
    Condition,
}

/// Why the component is called (the WIT `phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Run,
    Compensate,
}

/// A rendered component call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentRequest {
    /// The component's name in the workflow's definitions.
    pub component: String,
    /// `sha256:<hex>` of the component's bytes: what actually runs, even if the name is
    /// later bound to other bytes.
    pub digest: String,
    pub export: Export,
    pub phase: Phase,
    pub tenant: String,
    pub execution_id: String,
    pub workflow: String,
    pub step: String,
    /// The execution's input, shared with it.
    pub input: CachedJson<Json>,
    /// Completed steps' results by name, shared with the steps.
    pub results: BTreeMap<Arc<str>, Arc<Payload>>,
    pub config: Json,
    pub grants: Grants,
    pub limits: Limits,
}

/// The largest linear memory any component may be given; the Wasm host's pool reserves
/// address space for this much per instance.
pub const MAX_MEMORY_BYTES: u64 = 512 << 20;

/// Resource limits of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Linear memory cap, across all of the instance's memories.
    pub memory_bytes: u64,
    /// Wall-clock deadline of one call, host calls included.
    pub deadline_ms: u64,
    /// Instruction budget; `None` for no budget beyond the deadline.
    pub fuel: Option<u64>,
    /// Largest result (JSON text) accepted from the guest.
    pub max_result_bytes: u64,
}

impl Default for Limits {
    /// What a component gets unless its definition says otherwise: enough for ordinary
    /// business logic in any of the supported languages (Python needs ~13 MiB to start).
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline_ms: 5_000,
            fuel: None,
            max_result_bytes: 1 << 20,
        }
    }
}

/// A component's grants, from its `Component` definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Hosts the component may call through the host `http` interface: `api.example.com`,
    /// `api.example.com:8443`, `*.example.com`, `127.0.0.1:*`. Empty: no network at all.
    #[serde(default)]
    pub http: Vec<String>,
    /// May use the execution-scoped state.
    #[serde(default)]
    pub state_execution: bool,
    /// May use the tenant-scoped state (shared by all the tenant's executions).
    #[serde(default)]
    pub state_tenant: bool,
}

impl Grants {
    /// Whether `host` (lower-case) on `port` matches a grant.
    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        self.http
            .iter()
            .any(|grant| host_matches(grant, host, port))
    }

    /// Checks the patterns when the definition loads.
    pub fn check_pattern(pattern: &str) -> Result<(), String> {
        let (host, port) = split_port(pattern);
        let host_ok = !host.is_empty()
            && host
                .trim_start_matches("*.")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        let port_ok = match port {
            None | Some("*") => true,
            Some(p) => p.parse::<u16>().is_ok(),
        };
        if host_ok && port_ok && !pattern.contains("://") {
            Ok(())
        } else {
            Err(format!(
                "`{pattern}` is not a host pattern: write `api.example.com`, `*.example.com`, `host:8080` or `127.0.0.1:*` (no scheme, no path)"
            ))
        }
    }
}

fn split_port(pattern: &str) -> (&str, Option<&str>) {
    // `[::1]:80` keeps its brackets; a bare IPv6 address has no port.
    if let Some(end) = pattern.rfind(']') {
        return match pattern[end + 1..].strip_prefix(':') {
            Some(port) => (&pattern[..=end], Some(port)),
            None => (pattern, None),
        };
    }
    match pattern.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (pattern, None),
    }
}

fn host_matches(grant: &str, host: &str, port: u16) -> bool {
    let (pattern, grant_port) = split_port(grant);
    let port_ok = match grant_port {
        None => port == 80 || port == 443,
        Some("*") => true,
        Some(p) => p.parse::<u16>() == Ok(port),
    };
    let pattern = pattern.to_ascii_lowercase();
    let host_ok = match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_allowed_by_default_and_patterns_match_host_and_port() {
        assert!(!Grants::default().allows_host("example.com", 443));
        let g = Grants {
            http: vec![
                "api.example.com".into(),
                "*.svc.local:8080".into(),
                "127.0.0.1:*".into(),
            ],
            ..Grants::default()
        };
        assert!(g.allows_host("api.example.com", 443));
        assert!(
            !g.allows_host("api.example.com", 8443),
            "default ports only"
        );
        assert!(!g.allows_host("evil-api.example.com", 443));
        assert!(g.allows_host("a.svc.local", 8080));
        assert!(!g.allows_host("svc.local", 8080));
        assert!(g.allows_host("127.0.0.1", 39211));
        assert!(!g.allows_host("127.0.0.2", 39211));
        assert!(Grants::check_pattern("http://x").is_err());
        assert!(Grants::check_pattern("x/y").is_err());
        assert!(Grants::check_pattern("127.0.0.1:*").is_ok());
    }
}
