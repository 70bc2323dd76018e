//! Section 6: Recovery: N executions stuck mid-step with expired leases (what a SIGKILL leaves
//! behind once the lease runs out), then the time from opening the store afresh to every one
//! resumed (its in-flight call sent again) and to every one completed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use async_trait::async_trait;
use orca_runtime::engine::Status;
use orca_runtime::invoke::{Failure, Invoker, Request, Response};
use orca_runtime::runner::Runner;
use orca_runtime::store::{self, ListFilter, StoreConfig};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::Report;
use crate::common::{self, Settings, input, now_ms};
use crate::memory::humanize;
use crate::stats::{Row, fmt_us, thousands};

/// Executions taken over per claim, as `orca serve` does.
const CLAIM_BATCH: usize = 1_000;

/// Hangs on every call, after saying it was called: the process "dies" mid-step.
struct Hang(Notify);

#[async_trait]
impl Invoker for Hang {
    async fn invoke(&self, _: &Request, _: u32) -> Result<Response, Failure> {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// Answers at once; counts first steps (an in-flight call sent again = resumed).
#[derive(Default)]
struct Answer(AtomicUsize);

#[async_trait]
impl Invoker for Answer {
    async fn invoke(&self, request: &Request, _: u32) -> Result<Response, Failure> {
        if let Request::Http(http) = request
            && http.url.ends_with("/s0")
        {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Response {
            status: 200,
            headers: Default::default(),
            body: json!({"ok": true}).into(),
        })
    }
}

pub(crate) async fn recovery(
    settings: &Settings,
    name: &str,
    config: StoreConfig,
    report: &mut Report,
) -> Result<()> {
    let n = settings.recovery;
    let (source, plan) = common::workflow(
        "bench-recover",
        common::http_steps("bench-recover", 2, false),
    )?;
    let bindings = common::bindings("http://svc.invalid");

    // A template: one execution driven until its first call is in flight, then abandoned.
    let store = store::open(&config).await?;
    let hang = Arc::new(Hang(Notify::new()));
    let runner = Runner::new(store.clone(), hang.clone());
    let called = hang.0.notified();
    let task = {
        let (source, plan, bindings) = (source.clone(), plan.clone(), bindings.clone());
        tokio::spawn(async move { runner.run(source, &plan, input(0), bindings).await })
    };
    tokio::time::timeout(Duration::from_secs(10), called)
        .await
        .map_err(|_| anyhow!("the template execution never called its first step"))?;
    task.abort();
    let _ = task.await;
    let template = store
        .list(&ListFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the template execution was not stored"))?;
    let body = String::from_utf8(template.body.to_vec())?;

    // N copies with fresh ids, leased to a dead process whose lease ran out a second ago.
    let setup = Instant::now();
    let expired = now_ms() - 1_000;
    let mut ids = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let permits = Arc::new(Semaphore::new(32));
    for _ in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        let mut copy = template.clone();
        copy.body = body.replace(&*template.id, &id).into_bytes().into();
        copy.id = id.as_str().into();
        ids.push(id);
        let (store, permit) = (store.clone(), permits.clone().acquire_owned().await?);
        set.spawn(async move {
            let _permit = permit;
            store
                .create(&copy, "crashed-host/1/000000000000", expired)
                .await
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let setup = setup.elapsed();
    drop(store);

    // "Restart": open the store, take the expired executions over a batch per claim, and
    // drive them all.
    let answer = Arc::new(Answer::default());
    let t0 = Instant::now();
    let store = store::open(&config).await?;
    let runner = Runner::new(store.clone(), answer.clone());
    let mut handles = Vec::with_capacity(n);
    loop {
        let batch = runner.take_over_expired(CLAIM_BATCH).await?;
        let claimed = batch.len();
        handles.extend(batch);
        if claimed < CLAIM_BATCH {
            break;
        }
    }
    let listed = t0.elapsed();
    let resumed_at = {
        let answer = answer.clone();
        tokio::spawn(async move {
            while answer.0.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            t0.elapsed()
        })
    };
    let mut completed = 0usize;
    let mut errors = Vec::new();
    for handle in handles {
        match handle.join().await {
            Ok(execution) if execution.status == Status::Completed => completed += 1,
            Ok(execution) => errors.push(format!("{} ended {:?}", execution.id, execution.status)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let all_done = t0.elapsed();
    let resumed = answer.0.load(Ordering::Relaxed);
    if completed < n {
        bail!(
            "{name}: {completed} of {n} recovered executions completed; first problems: {:?}",
            &errors[..errors.len().min(3)]
        );
    }
    let resumed_at = resumed_at.await?;
    // The target is for 10,000; a smaller run is scaled linearly.
    let met = resumed_at.as_secs_f64() * 10_000.0 / (n as f64) < 2.0;
    report.rows.push(
        Row::new(
            "6",
            &format!(
                "{name}: recover {} in-flight executions",
                thousands(n as u64)
            ),
        )
        .orca(format!(
            "{} resumed, {} completed",
            humanize(resumed_at),
            humanize(all_done)
        ))
        .target(
            if n >= 10_000 {
                "< 2 s"
            } else {
                "< 2 s per 10k (scaled)"
            },
            met,
        ),
    );
    report.notes.push(format!(
        "6. {name}: {n} copies of an execution stuck in its first HTTP step (the call in flight), \
         leased to a dead owner with an expired lease ({} to create them). Timed from opening \
         the store in the same process (not an exec of a new process): open + \
         `Runner::take_over_expired` ({CLAIM_BATCH} per claim) took {}; each claimed execution \
         is driven on its own task, with an invoker that answers at once; `resumed` = every in-flight call sent again ({resumed} seen), `completed` = all \
         {n} finished (2 steps). {} per execution to resume.",
        humanize(setup),
        humanize(listed),
        fmt_us(resumed_at.as_secs_f64() * 1e6 / n as f64)
    ));
    if !met {
        report.missed.push(format!(
            "Recovery on {name}: {} to resume {n} executions (target < 2 s for 10,000).",
            humanize(resumed_at)
        ));
    }
    Ok(())
}
