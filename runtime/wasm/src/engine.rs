//! The one place that configures wasmtime.
//!
//! Every setting that affects isolation or cost is made here, once, with the reason next to
//! it; nothing else in the crate builds a `Config` or a `Store`'s limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    StoreLimits, StoreLimitsBuilder,
};

use crate::host::HostState;

/// How often the epoch advances. A guest's deadline is counted in ticks, so a runaway guest
/// is stopped at most one tick after its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Concurrent instances the pooling allocator can hold. Callers wait on a semaphore of this
/// size before instantiating, so a burst never asks the pool for more than it has.
pub const MAX_INSTANCES: u32 = 256;

/// Per-component caps (their `limits`) are enforced below this by `StoreLimits`.
pub const MAX_MEMORY_BYTES: usize = orca_core::component::MAX_MEMORY_BYTES as usize;

/// Wasm stack per call: deep recursion traps with a stack overflow instead of taking the host
/// thread with it.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// Builds the shared engine; with `cache_dir`, compiled code is cached there across runs.
pub fn build_engine(cache_dir: Option<&std::path::Path>) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    if let Some(dir) = cache_dir {
        let mut cache = wasmtime::CacheConfig::new();
        cache.with_directory(dir);
        config.cache(Some(wasmtime::Cache::new(cache)?));
    }
    // Components, not core modules: guests reach the host only through WIT interfaces.
    config.wasm_component_model(true);
    // Deadlines by epoch: cheap (a counter check at loop back-edges and calls) and
    // independent of what the guest executes.
    config.epoch_interruption(true);
    // Fuel gives components that ask for it (`limits.fuel`) a deterministic instruction
    // budget. It must be on engine-wide for any store to use it; stores without a budget get
    // an unlimited tank.
    config.consume_fuel(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    // A fresh instance per call must be cheap: the pool pre-reserves slots and copy-on-write
    // memory images make instantiation a mapping, not a copy.
    config.memory_init_cow(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_INSTANCES);
    pool.total_core_instances(MAX_INSTANCES * 4);
    pool.total_memories(MAX_INSTANCES * 2);
    pool.total_tables(MAX_INSTANCES * 4);
    pool.max_memory_size(MAX_MEMORY_BYTES);
    // Components made by language toolchains carry several core modules (Python: dozens).
    pool.max_core_instances_per_component(64);
    pool.max_memories_per_component(8);
    pool.max_tables_per_component(16);
    pool.max_component_instance_size(1 << 20);
    pool.max_core_instance_size(2 << 20);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("orca-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Ticks that cover `deadline`, rounded up.
pub fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos())).max(1) as u64
}

/// A call's store limits: its component's memory cap, and a few instances and tables. It
/// remembers whether it refused memory, so that the failure that follows is classified by
/// what happened rather than by the text of wasmtime's error (a refused growth is not a
/// `wasmtime::Trap`).
pub(crate) struct CallLimits {
    inner: StoreLimits,
    pub(crate) memory_refused: bool,
}

impl CallLimits {
    pub(crate) fn new(memory_bytes: usize) -> Self {
        CallLimits {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .instances(64)
                .tables(64)
                .trap_on_grow_failure(true)
                .build(),
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for CallLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_refused = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Puts a call's limits on its store: the memory cap ([`CallLimits`]), the deadline in epoch
/// ticks, and the fuel (all the fuel there is when the component asks for none).
pub(crate) fn limit_store(
    store: &mut Store<HostState>,
    deadline_after: Duration,
    fuel: Option<u64>,
) -> wasmtime::Result<()> {
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(deadline_ticks(deadline_after));
    store.epoch_deadline_trap();
    store.set_fuel(fuel.unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn compiled_code_is_cached_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let engine = super::build_engine(Some(dir.path())).unwrap();
        let component = wasmtime::component::Component::new(&engine, "(component)").unwrap();
        drop(component);
        let entries = walk(dir.path());
        assert!(entries > 0, "nothing cached in {}", dir.path().display());
    }

    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| {
                    let p = e.unwrap().path();
                    if p.is_dir() { walk(&p) } else { 1 }
                })
                .sum()
            })
            .unwrap_or(0)
    }
}
