//! The `state` capability: keys namespaced by tenant and execution (or tenant), in the
//! store's component state, within the scopes the component is granted.

use std::sync::Arc;
use std::time::Duration;

use orca_store::kv::KvStore;

use super::HostState;
use super::orca::plugin::state;

/// Largest value a guest may store under one key.
const MAX_STATE_VALUE_BYTES: usize = 1 << 20;
/// Longest key, before the host's namespace is put in front of it.
const MAX_STATE_KEY_BYTES: usize = 512;

fn unavailable(error: orca_store::StoreError) -> state::Error {
    state::Error::Unavailable(error.to_string())
}

impl state::Host for HostState {
    async fn get(
        &mut self,
        scope: state::Scope,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, state::Error>> {
        Ok(match self.scoped(scope, &key) {
            Ok((kv, key)) => kv.get(&key).await.map_err(unavailable),
            Err(e) => Err(e),
        })
    }

    async fn set(
        &mut self,
        scope: state::Scope,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), state::Error>> {
        if value.len() > MAX_STATE_VALUE_BYTES {
            return Ok(Err(state::Error::Invalid(format!(
                "values are at most {MAX_STATE_VALUE_BYTES} bytes"
            ))));
        }
        let ttl = ttl_seconds.map(|s| Duration::from_secs(u64::from(s)));
        Ok(match self.scoped(scope, &key) {
            Ok((kv, key)) => kv.set(&key, &value, ttl).await.map_err(unavailable),
            Err(e) => Err(e),
        })
    }

    async fn delete(
        &mut self,
        scope: state::Scope,
        key: String,
    ) -> wasmtime::Result<Result<(), state::Error>> {
        Ok(match self.scoped(scope, &key) {
            Ok((kv, key)) => kv.delete(&key).await.map_err(unavailable),
            Err(e) => Err(e),
        })
    }

    async fn list_keys(
        &mut self,
        scope: state::Scope,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, state::Error>> {
        let namespace = match self.namespace(scope) {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        let keys = self
            .services
            .kv
            .list_keys(&(namespace.clone() + &prefix))
            .await;
        Ok(keys
            .map(|keys| {
                keys.into_iter()
                    .map(|k| k[namespace.len()..].to_string())
                    .collect()
            })
            .map_err(unavailable))
    }
}

impl HostState {
    /// The key prefix of `scope` for this call, once the grant for it is checked. The
    /// namespace is the host's: whatever the guest writes only ever follows it.
    fn namespace(&self, scope: state::Scope) -> Result<String, state::Error> {
        let (granted, name) = match scope {
            state::Scope::Execution => (self.grants.state_execution, "execution"),
            state::Scope::Tenant => (self.grants.state_tenant, "tenant"),
        };
        if !granted {
            tracing::warn!(component = %self.call.component, "state access denied: add `{name}` to grants.state");
            return Err(state::Error::Denied(format!(
                "component `{}` has no grant for {name} state (grants.state: [{name}])",
                self.call.component
            )));
        }
        Ok(match scope {
            state::Scope::Execution => {
                format!("t/{}/x/{}/", self.call.tenant, self.call.execution_id)
            }
            state::Scope::Tenant => format!("t/{}/s/", self.call.tenant),
        })
    }

    fn state_key(&self, scope: state::Scope, key: &str) -> Result<String, state::Error> {
        if key.is_empty() || key.len() > MAX_STATE_KEY_BYTES {
            return Err(state::Error::Invalid(format!(
                "keys are 1 to {MAX_STATE_KEY_BYTES} bytes"
            )));
        }
        Ok(self.namespace(scope)? + key)
    }

    /// The store and the guest's key in its namespace. Not async: `HostState` is not `Sync`,
    /// so host functions must not hold `&self` across an await.
    fn scoped(
        &self,
        scope: state::Scope,
        key: &str,
    ) -> Result<(Arc<dyn KvStore>, String), state::Error> {
        Ok((self.services.kv.clone(), self.state_key(scope, key)?))
    }
}
