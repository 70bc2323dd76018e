//! The host side of the WIT interfaces: one state struct per invocation, and the small
//! capability pieces (`http`, `state`, `log`, `config`) that guests call.
//!
//! Every capability is deny-by-default: a call outside the component's grants returns the
//! WIT `denied` error (the guest decides what to do) and logs which grant would allow it.
//! Host functions return `wasmtime::Result<Result<T, E>>`: the outer error traps the guest
//! and is reserved for host bugs; the inner one is what the guest sees.

use std::sync::Arc;
use std::time::Instant;

use super::engine::CallLimits;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use orca_core::invoke::Invoker;
use orca_store::kv::KvStore;

use orca_core::component::Grants;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// Guest stdout/stderr are captured up to this size and then logged; the rest is dropped so a
/// chatty guest cannot fill the host's memory.
const CAPTURED_OUTPUT_BYTES: usize = 64 * 1024;

/// Who is calling, for namespacing state and tagging logs.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub tenant: String,
    pub execution_id: String,
    pub workflow: String,
    pub step: String,
    pub component: String,
}

/// The services a guest's host calls use, shared by every invocation.
#[derive(Clone)]
pub struct HostServices {
    pub http: Arc<dyn Invoker>,
    pub kv: Arc<dyn KvStore>,
}

/// Per-invocation state of one instance.
pub(super) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: CallLimits,
    call: CallInfo,
    grants: Arc<Grants>,
    config: String,
    services: HostServices,
    deadline: Instant,
    http_calls: u32,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    pub(super) fn new(
        call: CallInfo,
        grants: Arc<Grants>,
        config: String,
        services: HostServices,
        memory_bytes: usize,
        deadline: Instant,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES);
        let stderr = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES);
        // WASI is linked because language toolchains import it, but it grants nothing: no
        // preopened directories, no environment, no arguments, no sockets, no inherited stdio.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = CallLimits::new(memory_bytes);
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits,
            call,
            grants,
            config,
            services,
            deadline,
            http_calls: 0,
            stdout,
            stderr,
        }
    }

    /// Logs what the guest printed, tagged with the execution.
    pub(super) fn flush_output(&self) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                tracing::info!(
                    execution = %self.call.execution_id,
                    step = %self.call.step,
                    component = %self.call.component,
                    stream,
                    "{line}"
                );
            }
        }
    }
}

/// Links the Orca interfaces and WASI into `linker`, once per engine.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}

impl orca::plugin::types::Host for HostState {}

mod config;
mod http;
mod log;
mod state;
