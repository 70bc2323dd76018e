//! Section 3's floor: plain wasmtime running a component the way the wasmtime docs teach it,
//! with nothing of Orca's in between: the pooling allocator, one `InstancePre`, a fresh
//! `Store` per call, the export called through `bindgen!`'s typed bindings.
//!
//! It links only the host functions the measured guests call: `orca:plugin/http.send`,
//! answered by one shared `reqwest::Client` with no grant check, no deadline and no metering,
//! and `orca:plugin/log.log`, which drops the line. Every other import (WASI, state, config)
//! is a trap: the guests measured call none of them.

use anyhow::{Result, anyhow};
use wasmtime::component::{Component, HasSelf, Instance, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

mod raw {
    #![allow(unreachable_pub, dead_code)]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

use raw::exports::orca::plugin::{condition, step};
use raw::orca::plugin::{http, log, types};

pub(super) use types::Context;

/// What every call's `Store` holds: the client that answers the guest's HTTP calls.
pub(super) struct FloorState {
    client: reqwest::Client,
}

impl types::Host for FloorState {}

impl log::Host for FloorState {
    async fn log(&mut self, _: log::Level, _: String, _: Vec<(String, String)>) {}
}

impl http::Host for FloorState {
    async fn send(&mut self, request: http::Request) -> Result<http::Response, http::Error> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|e| http::Error::Invalid(e.to_string()))?;
        let mut builder = self.client.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| http::Error::Connection(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let body = response
            .bytes()
            .await
            .map_err(|e| http::Error::Connection(e.to_string()))?;
        Ok(http::Response {
            status,
            headers,
            body: body.into(),
        })
    }
}

/// One component ready to be instantiated again and again.
pub(super) struct RawFloor {
    engine: Engine,
    pre: InstancePre<FloorState>,
    /// Where the exports are, looked up once (the SDK's guests export both).
    condition: condition::GuestIndices,
    step: step::GuestIndices,
    client: reqwest::Client,
}

impl RawFloor {
    pub(super) fn new(bytes: &[u8]) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(64);
        pool.total_core_instances(256);
        pool.total_memories(128);
        pool.total_tables(256);
        pool.max_memory_size(64 << 20);
        pool.max_core_instances_per_component(64);
        pool.max_memories_per_component(8);
        pool.max_tables_per_component(16);
        pool.max_component_instance_size(1 << 20);
        pool.max_core_instance_size(2 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| anyhow!("{e:#}"))?;
        let component = Component::new(&engine, bytes).map_err(|e| anyhow!("{e:#}"))?;
        let mut linker: Linker<FloorState> = Linker::new(&engine);
        http::add_to_linker::<FloorState, HasSelf<FloorState>>(&mut linker, |state| state)
            .map_err(|e| anyhow!("{e:#}"))?;
        log::add_to_linker::<FloorState, HasSelf<FloorState>>(&mut linker, |state| state)
            .map_err(|e| anyhow!("{e:#}"))?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| anyhow!("{e:#}"))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{e:#}"))?;
        let condition = condition::GuestIndices::new(&pre).map_err(|e| anyhow!("{e:#}"))?;
        let step = step::GuestIndices::new(&pre).map_err(|e| anyhow!("{e:#}"))?;
        Ok(RawFloor {
            engine,
            pre,
            condition,
            step,
            client: reqwest::Client::new(),
        })
    }

    /// A fresh instance in a fresh `Store`; dropping the store drops the instance.
    async fn instantiate(&self) -> Result<(Store<FloorState>, Instance)> {
        let mut store = Store::new(
            &self.engine,
            FloorState {
                client: self.client.clone(),
            },
        );
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow!("{e:#}"))?;
        Ok((store, instance))
    }

    /// Instantiates the component, calls its `condition.evaluate`, drops the instance.
    pub(super) async fn evaluate(&self, context: &types::Context) -> Result<bool> {
        let (mut store, instance) = self.instantiate().await?;
        let guest = self.condition.load(&mut store, &instance);
        let result = guest
            .map_err(|e| anyhow!("{e:#}"))?
            .call_evaluate(&mut store, context)
            .await
            .map_err(|e| anyhow!("{e:#}"))?;
        result.map_err(|e| anyhow!("guest error: {}", e.message))
    }

    /// Instantiates the component, calls its `step.run`, drops the instance; the step's
    /// result as JSON text.
    pub(super) async fn run(&self, context: &types::Context) -> Result<String> {
        let (mut store, instance) = self.instantiate().await?;
        let guest = self.step.load(&mut store, &instance);
        let result = guest
            .map_err(|e| anyhow!("{e:#}"))?
            .call_run(&mut store, context)
            .await
            .map_err(|e| anyhow!("{e:#}"))?;
        result.map_err(|e| anyhow!("guest error: {}", e.message))
    }
}

/// The context Orca would hand the guest for a first attempt.
pub(super) fn context(step: &str, input: &str, config: &str) -> types::Context {
    types::Context {
        execution_id: "0190aaaa-bench".into(),
        workflow: "bench".into(),
        step: step.into(),
        phase: types::Phase::Run,
        attempt: 1,
        input: input.into(),
        results: "{}".into(),
        config: config.into(),
    }
}
