//! The `config` capability: the component's configuration for this use, as JSON.

use super::HostState;
use super::orca::plugin::config;

impl config::Host for HostState {
    async fn get(&mut self) -> wasmtime::Result<String> {
        Ok(self.config.clone())
    }
}
