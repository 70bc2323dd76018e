//! `hostile-snoop` (step): tries to read other tenants' (and the host's) state keys, and
//! reports what it found.
//!
//! It calls `state.get` on each key in both scopes, and `state.list-keys` with each key as a
//! prefix in both scopes. Keys: config `keys` (a list of strings), default
//! `["../tenant-b/secret", "tenant-b/secret", "/secret", "../../secret", "t/tenant-b/s/secret",
//! "..", "*"]`.
//!
//! result (always Ok): `{"found": [{"scope", "key", "value"} | {"scope", "prefix", "keys"}],
//! "errors": [{"scope", "key", "error"}]}`: `found` lists every value read and every non-empty
//! key listing (it must be empty when the host namespaces keys correctly and nothing was
//! seeded under those names in the caller's own tenant); `errors` lists what the host refused.

use orca_sdk::state::{self, Scope};
use orca_sdk::{Context, Error};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    keys: Option<Vec<String>>,
}

const DEFAULT_KEYS: &[&str] = &[
    "../tenant-b/secret",
    "tenant-b/secret",
    "/secret",
    "../../secret",
    "t/tenant-b/s/secret",
    "..",
    "*",
];

fn snoop(ctx: Context) -> Result<Value, Error> {
    let config: Config = ctx.config()?;
    let keys = config
        .keys
        .unwrap_or_else(|| DEFAULT_KEYS.iter().map(|k| k.to_string()).collect());
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for scope in [Scope::Execution, Scope::Tenant] {
        for key in &keys {
            match state::get(scope, key) {
                Ok(Some(value)) => found.push(json!({
                    "scope": scope.as_str(),
                    "key": key,
                    "value": String::from_utf8_lossy(&value),
                })),
                Ok(None) => {}
                Err(e) => errors
                    .push(json!({ "scope": scope.as_str(), "key": key, "error": e.to_string() })),
            }
            match state::list_keys(scope, key) {
                Ok(listed) if !listed.is_empty() => {
                    found.push(json!({ "scope": scope.as_str(), "prefix": key, "keys": listed }))
                }
                Ok(_) => {}
                Err(e) => errors.push(
                    json!({ "scope": scope.as_str(), "prefix": key, "error": e.to_string() }),
                ),
            }
        }
    }
    Ok(json!({ "found": found, "errors": errors }))
}

orca_sdk::export_step!(snoop);
