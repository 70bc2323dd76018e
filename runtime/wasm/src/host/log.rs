//! The `log` capability: a guest's log lines, tagged with the execution, step and component.

use super::HostState;
use super::orca::plugin::log;

impl log::Host for HostState {
    async fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let c = &self.call;
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(execution = %c.execution_id, step = %c.step, component = %c.component, %fields, "{message}")
            };
        }
        match level {
            log::Level::Trace => emit!(trace),
            log::Level::Debug => emit!(debug),
            log::Level::Info => emit!(info),
            log::Level::Warn => emit!(warn),
            log::Level::Error => emit!(error),
        }
        Ok(())
    }
}
