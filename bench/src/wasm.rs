//! Section 3: A Wasm step: instantiate + call + drop of `high-value` (a pure condition) through
//! `WasmHost::invoke`, versus raw wasmtime: pooling allocator + `InstancePre` calling the same
//! export in a loop, one fresh `Store` per call.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, ensure};
use orca_runtime::component::{ComponentRequest, Export, Grants, Limits, Phase};
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::invoke::{Invoker, Request};
use orca_runtime::store::kv::MemoryKv;
use orca_runtime::wasm::{ComponentBlobs, HostServices, WasmHost};
use serde_json::json;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::Report;
use crate::common::Settings;
use crate::stats::{Row, Samples, fmt_rate, fmt_us};

mod raw {
    #![allow(unreachable_pub, dead_code)]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        exports: { default: async },
    });
}

use raw::exports::orca::plugin::condition;
use raw::orca::plugin::types;

const COMPONENT: &str = "high-value";

fn guest_path() -> std::path::PathBuf {
    let dir = std::env::var("ORCA_GUEST_DIR").unwrap_or_else(|_| {
        let target =
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/tmp/orca-target".into());
        format!("{target}/guests")
    });
    std::path::Path::new(&dir).join(format!("{COMPONENT}.wasm"))
}

pub(crate) async fn wasm_step(settings: &Settings, report: &mut Report) -> Result<()> {
    let path = guest_path();
    let bytes = std::fs::read(&path)
        .with_context(|| format!("{} (build it with `make guests`)", path.display()))?;

    // Orca: the request the engine would hand the host for a condition.
    let blobs_dir = tempfile::tempdir()?;
    let blobs = ComponentBlobs::new(blobs_dir.path());
    let digest = blobs.put(&bytes)?;
    let services = HostServices {
        http: Arc::new(HttpInvoker::new(HttpConfig::default())?),
        kv: Arc::new(MemoryKv::new()),
    };
    let host = WasmHost::new(blobs, services, None)?;
    let request = Request::Component(ComponentRequest {
        component: COMPONENT.into(),
        digest,
        export: Export::Condition,
        phase: Phase::Run,
        tenant: "default".into(),
        execution_id: "0190aaaa-bench".into(),
        workflow: "bench".into(),
        step: "check".into(),
        input: json!({"amount": 1500}),
        results: json!({}),
        config: json!({}),
        grants: Grants::default(),
        limits: Limits::default(),
    });

    // The floor: plain wasmtime, same component, same export.
    let floor = RawFloor::new(&bytes)?;

    let (mut orca, mut raw) = (Samples::default(), Samples::default());
    for _ in 0..200 {
        let r = host.invoke(&request, 1).await.map_err(|e| anyhow!("{e}"))?;
        ensure!(r.body == json!(true), "high-value said {}", r.body);
        ensure!(floor.call().await?, "the raw call said false");
    }
    // Alternate blocks of calls so that drift (other load, CPU frequency) hits both alike.
    let deadline = Instant::now() + settings.window * 2;
    let (mut orca_total, mut raw_total, mut calls) = (0.0, 0.0, 0u64);
    while Instant::now() < deadline {
        for _ in 0..200 {
            let t = Instant::now();
            host.invoke(&request, 1).await.map_err(|e| anyhow!("{e}"))?;
            let d = t.elapsed();
            orca_total += d.as_secs_f64();
            orca.push(d);
        }
        for _ in 0..200 {
            let t = Instant::now();
            floor.call().await?;
            let d = t.elapsed();
            raw_total += d.as_secs_f64();
            raw.push(d);
        }
        calls += 200;
    }
    let ratio = orca.p50() / raw.p50();
    let (orca_mean, raw_mean) = (orca_total / calls as f64, raw_total / calls as f64);
    report.rows.push(
        Row::new(
            "3",
            "Wasm condition (high-value) instantiate+call+drop: p50",
        )
        .orca(fmt_us(orca.p50()))
        .floor(fmt_us(raw.p50()))
        .ratio(ratio)
        .target("<= 1.5x", ratio <= 1.5),
    );
    report.rows.push(
        Row::new("3", "  p99")
            .orca(fmt_us(orca.p99()))
            .floor(fmt_us(raw.p99()))
            .ratio(orca.p99() / raw.p99()),
    );
    report.rows.push(
        Row::new("3", "  invocations/s/core (1 / mean)")
            .orca(fmt_rate(1.0 / orca_mean))
            .floor(fmt_rate(1.0 / raw_mean))
            .ratio(orca_mean / raw_mean),
    );
    report.notes.push(format!(
        "3. `{COMPONENT}.wasm` (a pure condition: `input.amount > threshold`), chosen over \
         fraud-score because fraud-score makes an outbound HTTP call whose cost would swamp the \
         host's. {calls} calls each, sequential on one task (so one core), in alternating blocks \
         of 200. Orca: `WasmHost::invoke` with default limits (epoch deadline, fuel accounting \
         on, memory limiter, WASI context with captured stdout/stderr). Floor: wasmtime with \
         the pooling allocator, `InstancePre`, a fresh `Store` per call, no WASI context (the \
         component's imports are defined as traps; this guest calls none of them), no fuel, \
         no epoch, the export called through `bindgen!`-generated typed bindings."
    ));
    if ratio > 1.5 {
        report.missed.push(format!(
            "Wasm step: p50 {} vs {} raw = {ratio:.2}x (target <= 1.5x).",
            fmt_us(orca.p50()),
            fmt_us(raw.p50())
        ));
    }
    Ok(())
}

struct RawFloor {
    engine: Engine,
    pre: wasmtime::component::InstancePre<()>,
    indices: condition::GuestIndices,
}

impl RawFloor {
    fn new(bytes: &[u8]) -> Result<Self> {
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
        let mut linker: Linker<()> = Linker::new(&engine);
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| anyhow!("{e:#}"))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{e:#}"))?;
        let indices = condition::GuestIndices::new(&pre).map_err(|e| anyhow!("{e:#}"))?;
        Ok(RawFloor {
            engine,
            pre,
            indices,
        })
    }

    async fn call(&self) -> Result<bool> {
        let mut store = Store::new(&self.engine, ());
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow!("{e:#}"))?;
        let guest = self
            .indices
            .load(&mut store, &instance)
            .map_err(|e| anyhow!("{e:#}"))?;
        let context = types::Context {
            execution_id: "0190aaaa-bench".into(),
            workflow: "bench".into(),
            step: "check".into(),
            phase: types::Phase::Run,
            attempt: 1,
            input: r#"{"amount":1500}"#.into(),
            results: "{}".into(),
            config: "{}".into(),
        };
        let result = guest
            .call_evaluate(&mut store, &context)
            .await
            .map_err(|e| anyhow!("{e:#}"))?;
        result.map_err(|e| anyhow!("guest error: {}", e.message))
    }
}
