//! Executions: start (in the background; `?wait=` for the result), get, list, cancel, resume.
//! Another tenant's execution answers exactly as an unknown id does.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::{App, names};
use orca_core::engine::Status;
use orca_core::view;
use orca_runner::{ExecutionRecord, RunError, tenant_of};
use orca_store::{ListFilter, owner_is_dead_locally};

/// Largest page of `GET /v1/executions`.
const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 50;

type Reply = (StatusCode, Json<Json_>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartRequest {
    workflow: String,
    #[serde(default)]
    input: Option<Json_>,
    /// The workflow's version (default: the latest).
    #[serde(default)]
    version: Option<u32>,
    /// Service name -> base URL, over the tenant's `Services` documents.
    #[serde(default)]
    services: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    /// How long to wait for the execution to end, like `5s` (capped by the server).
    wait: Option<String>,
}

pub(super) async fn start(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> ApiResult<Reply> {
    let Query(query) = query?;
    let wait = parse_wait(&app, query.wait.as_deref())?;
    let Json(request) = body?;
    names::in_request("workflow", &request.workflow)?;
    for name in request.services.keys() {
        names::in_request("services", name)?;
    }
    // Admitted before anything is created; the slot is held until the execution is tracked.
    let quota = app.config.max_running_per_tenant;
    let Some(slot) = app.admit(&tenant, quota) else {
        return Err(ApiError::TooManyRequests(format!(
            "this tenant already has {quota} executions running (the server's limit); retry \
             when some have finished"
        )));
    };
    let ready = app
        .plans
        .ready(&app, &tenant, &request.workflow, request.version)
        .await?;
    let bindings = ready.bindings(&tenant, &request.services);
    let input = request.input.unwrap_or_else(|| json!({}));
    let owner = bindings.tenant.clone();
    let handle = app
        .runner
        .start(ready.source.clone(), ready.plan.clone(), input, bindings)
        .await?;
    let id = handle.id.clone();
    let finished = handle.finished();
    app.track(&owner, handle);
    drop(slot);
    if let Some(wait) = wait {
        let deadline = tokio::time::Instant::now() + wait;
        // Driven here: its end is handed over in memory, nothing is read back.
        tokio::select! {
            done = finished => if let Some(done) = done {
                return Ok((StatusCode::OK, Json(view::execution(&done))));
            },
            () = tokio::time::sleep_until(deadline) => {}
            () = app.closed() => {}
        }
        // Still running: the time is up, the server is closing, or the execution went on
        // elsewhere (this process lost it), where the store tells of its end.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !left.is_zero()
            && let Some(done) = wait_final(&app, &id, left).await?
        {
            return Ok((StatusCode::OK, Json(view::execution(&done.execution))));
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": "running" })),
    ))
}

fn parse_wait(app: &App, wait: Option<&str>) -> ApiResult<Option<Duration>> {
    wait.map(|w| {
        humantime::parse_duration(w)
            .map(|d| d.min(app.config.max_wait))
            .map_err(|e| ApiError::BadRequest(format!("wait=`{w}`: {e} (try `5s`)")))
    })
    .transpose()
}

/// The execution once it is final, or `None` when `wait` has passed or the server begins to
/// shut down first (a wait never holds a shutdown up: the answer is then the 202 of a
/// start). Woken by the store's announcement that the execution finished, from this process
/// or another one sharing the store: registered before the read, so a finish in between
/// is not missed, and nothing is read again until then.
async fn wait_final(app: &App, id: &str, wait: Duration) -> ApiResult<Option<ExecutionRecord>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut finished = app.executions.changes().watch(id);
    let closed = app.closed();
    tokio::pin!(closed);
    loop {
        let record = app.runner.load(id).await?;
        if record.execution.status.is_final() {
            return Ok(Some(record));
        }
        tokio::select! {
            () = finished.finished() => {}
            () = tokio::time::sleep_until(deadline) => return Ok(None),
            () = &mut closed => return Ok(None),
        }
    }
}

/// The record of `id` if it belongs to `tenant`; 404 otherwise.
pub(super) async fn owned(app: &App, tenant: &str, id: &str) -> ApiResult<ExecutionRecord> {
    names::execution_in_path(id)?;
    match app.runner.load(id).await {
        Ok(record) if &*record.execution.tenant == tenant => Ok(record),
        Ok(_) | Err(RunError::NotFound(_)) => {
            Err(ApiError::NotFound(format!("no execution with id `{id}`")))
        }
        Err(other) => Err(other.into()),
    }
}

/// The execution; with `?wait=`, once it is final (or as it stands when the wait is over),
/// wherever it runs: the finish reaches every process sharing the store.
pub(super) async fn get(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Json<Json_>> {
    let Query(query) = query?;
    let wait = parse_wait(&app, query.wait.as_deref())?;
    let record = owned(&app, &tenant, &id).await?;
    if let Some(wait) = wait
        && !record.execution.status.is_final()
        && let Some(done) = wait_final(&app, &id, wait).await?
    {
        return Ok(Json(view::execution(&done.execution)));
    }
    let record = match wait {
        // Waited and it did not finish: as it stands now.
        Some(_) if !record.execution.status.is_final() => owned(&app, &tenant, &id).await?,
        _ => record,
    };
    Ok(Json(view::execution(&record.execution)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    /// The last id of the previous page.
    cursor: Option<String>,
}

pub(super) async fn list(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Json_>> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    if let Some(workflow) = &query.workflow {
        names::in_request("workflow", workflow)?;
    }
    if let Some(status) = &query.status
        && !Status::ALL.iter().any(|s| s.as_str() == status)
    {
        return Err(ApiError::BadRequest(format!(
            "status: `{}` is not a status (one of {})",
            status.escape_debug(),
            Status::ALL.map(Status::as_str).join(", ")
        )));
    }
    if let Some(cursor) = &query.cursor
        && !names::is_execution_id(cursor)
    {
        return Err(ApiError::BadRequest(
            "cursor: not a cursor this API gave (the `next_cursor` of a page)".into(),
        ));
    }
    let rows = app
        .executions
        .list(&ListFilter {
            workflow_id: query.workflow,
            status: query.status,
            limit: None,
        })
        .await?;
    let mut mine = rows
        .into_iter()
        .filter(|row| tenant_of(&row.body) == tenant);
    if let Some(cursor) = &query.cursor {
        // Newest first: the page after the cursor starts with the row after it.
        for row in mine.by_ref() {
            if *row.id == **cursor {
                break;
            }
        }
    }
    let page: Vec<_> = mine.by_ref().take(limit).collect();
    let more = mine.next().is_some();
    let items: Vec<Json_> = page
        .iter()
        .map(|row| {
            json!({
                "id": row.id,
                "workflow": row.workflow_id,
                "status": row.status,
                "created_at_ms": row.created_at_ms,
                "updated_at_ms": row.updated_at_ms,
            })
        })
        .collect();
    let next = more
        .then(|| page.last().map(|row| row.id.clone()))
        .flatten();
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

/// Stops the execution and compensates what it completed. Delivered into the drive loop when
/// this process drives it; otherwise the execution is taken over (from whichever process
/// drives it: the fence stops that one), cancelled and driven here, so a cancel works on any
/// server sharing the store.
pub(super) async fn cancel(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    Path(id): Path<String>,
) -> ApiResult<Reply> {
    const REASON: &str = "requested through the API";
    let record = owned(&app, &tenant, &id).await?;
    if record.execution.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "execution `{id}` is already {}",
            record.execution.status.as_str()
        )));
    }
    if !app.cancel_driven(&id, REASON) {
        let handle = app.runner.take_in_background(&id);
        handle.cancel(REASON);
        app.track(&tenant, handle);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": "cancelling" })),
    ))
}

/// Continues a running execution nobody drives (its process died) from its last checkpoint.
pub(super) async fn resume(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    Path(id): Path<String>,
) -> ApiResult<Reply> {
    let record = owned(&app, &tenant, &id).await?;
    if record.execution.status.is_final() {
        return Err(RunError::NotRunning {
            id,
            status: record.execution.status.as_str(),
        }
        .into());
    }
    if app.is_driving(&id) {
        return Err(ApiError::Conflict(format!(
            "execution `{id}` is already being driven by this server"
        )));
    }
    ensure_claimable(&app, &id).await?;
    app.track(
        &tenant,
        app.runner.resume_in_background(&id, BTreeMap::new()),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": "resuming" })),
    ))
}

/// 409 when another live process holds the execution's lease.
async fn ensure_claimable(app: &App, id: &str) -> ApiResult<()> {
    let now = super::now_ms();
    match app.executions.lease(id).await? {
        Some(lease)
            if !lease.expired_at(now)
                && lease.owner != app.runner.owner()
                && !owner_is_dead_locally(&lease.owner) =>
        {
            Err(RunError::Leased {
                id: id.to_string(),
                owner: lease.owner,
                until_ms: lease.until_ms,
            }
            .into())
        }
        _ => Ok(()),
    }
}
