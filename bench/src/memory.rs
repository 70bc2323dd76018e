//! Section 5: Resident memory with N executions parked in a `wait` state.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use orca_runtime::engine::Execution;
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::plan::Plan;
use orca_runtime::progress::Progress;
use orca_runtime::runner::Runner;
use orca_runtime::store::{ExecutionStore, ListFilter, MemoryStore};

use crate::Report;
use crate::common::{self, Settings, input, rss_bytes};
use crate::stats::{Row, thousands};

const PARKED: &str = "apiVersion: orca.dev/v1
kind: WorkflowDefinition
metadata: {name: bench-parked}
spec:
  startAt: park
  states:
    - {name: park, type: wait, seconds: 86400, next: done}
    - {name: done, type: pass, end: true}
";

/// Counts executions that have started.
#[derive(Default)]
struct Started(AtomicUsize);

impl Progress for Started {
    fn started(&self, _: &Execution) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn resumed(&self, _: &Execution) {}
    fn changed(&self, _: &Plan, _: &Execution, _: &Execution) {}
    fn finished(&self, _: &Execution) {}
}

pub(crate) async fn parked(settings: &Settings, report: &mut Report) -> Result<()> {
    let n = settings.parked;
    let (source, plan) = common::workflow("bench-parked", PARKED.to_string())?;
    let started = Arc::new(Started::default());
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::new(
        store.clone(),
        Arc::new(HttpInvoker::new(HttpConfig::default())?),
    )
    .with_progress(started.clone());
    let bindings = common::bindings("http://127.0.0.1:9");
    // Let the allocator settle before the baseline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    let t = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (runner, source, plan, bindings) = (
            runner.clone(),
            source.clone(),
            plan.clone(),
            bindings.clone(),
        );
        handles.push(tokio::spawn(async move {
            runner.run(source, &plan, input(i as u64), bindings).await
        }));
        if i % 1_000 == 999 {
            tokio::task::yield_now().await;
        }
    }
    while started.0.load(Ordering::Relaxed) < n {
        if t.elapsed() > Duration::from_secs(120) {
            bail!(
                "only {} of {n} executions started in 120 s",
                started.0.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Started means created; wait until the last saves are done and RSS stops moving.
    let mut last = rss_bytes();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_bytes();
        if now.abs_diff(last) < last / 200 {
            break;
        }
        last = now;
    }
    let parked_in = t.elapsed();
    let after = rss_bytes();
    let finished = handles.iter().filter(|h| h.is_finished()).count();
    let per = after.saturating_sub(before) as f64 / n as f64;
    let total_gib = per * 100_000.0 / (1u64 << 30) as f64;
    let sample = store
        .load(&list_one(&store).await?)
        .await?
        .map(|s| s.body.len())
        .unwrap_or(0);
    // Freed here, not in the background of the next section: an aborted task is dropped
    // only when the runtime gets to it, and the store goes with the runner's last clone.
    for h in &handles {
        h.abort();
    }
    for h in handles {
        let _ = h.await;
    }
    drop(runner);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Arc::strong_count(&store) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(store);
    let met = total_gib < 1.0;
    report.rows.push(
        Row::new(
            "5",
            &format!(
                "RSS with {} parked executions (memory store)",
                thousands(n as u64)
            ),
        )
        .orca(format!(
            "{:.1} MiB ({:.0} B/execution)",
            after.saturating_sub(before) as f64 / (1u64 << 20) as f64,
            per
        ))
        .target("100k < 1 GiB", met),
    );
    report.notes.push(format!(
        "5. {n} executions of a one-`wait` (24 h) WorkflowDefinition started with `Runner::run`, \
         one tokio task each (the runner renews all its leases from one task), on the memory \
         store; RSS (VmRSS) read before and after all had parked ({} to park them all; {finished} \
         ended early). The memory store keeps a snapshot of every record in this process (it \
         shares the parts that did not change with the live record; {sample} bytes as JSON), \
         so the figure includes it on top of the runner's tasks. \
         Extrapolated to 100,000: {total_gib:.2} GiB.",
        humanize(parked_in)
    ));
    if !met {
        report.missed.push(format!(
            "Memory: {per:.0} B per parked execution, {total_gib:.2} GiB for 100,000 (target < 1 GiB)."
        ));
    }
    Ok(())
}

async fn list_one(store: &MemoryStore) -> Result<String> {
    let listed = store
        .list(&ListFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    match listed.into_iter().next() {
        Some(s) => Ok(s.id.to_string()),
        None => bail!("no execution was stored"),
    }
}

pub(crate) fn humanize(d: Duration) -> String {
    crate::stats::fmt_us(d.as_secs_f64() * 1e6)
}
