//! Components: upload raw Wasm bytes (checked to be a component exporting Orca's step or
//! condition), list, get and delete. Bytes are content-addressed and shared between tenants on
//! disk; which tenant may use which digest is recorded per tenant.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value as Json_, json};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::{App, names, now_ms};
use orca_store::tenants::ComponentMeta;
use orca_wasm::WasmError;

pub(super) async fn upload(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<ComponentMeta>)> {
    let bytes = body?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(
            "the body is empty: send the component's .wasm bytes".into(),
        ));
    }
    let wasm = app.wasm.clone();
    // Compiling a component takes from milliseconds to seconds: off the async threads.
    let checked = tokio::task::spawn_blocking(move || {
        let (step, condition) = wasm.check("upload", &bytes)?;
        let digest = wasm.blobs().put(&bytes)?;
        Ok::<_, WasmError>((digest, bytes.len() as u64, step, condition))
    })
    .await
    .map_err(ApiError::internal)?;
    let (digest, size, exports_step, exports_condition) = match checked {
        Ok(found) => found,
        Err(WasmError::Invalid { message, .. }) => {
            return Err(ApiError::BadRequest(format!(
                "not a usable component: {message}"
            )));
        }
        Err(other) => return Err(ApiError::internal(other)),
    };
    let meta = ComponentMeta {
        digest,
        size,
        exports_step,
        exports_condition,
        created_at_ms: now_ms(),
    };
    app.tenants.put_component(&tenant, &meta).await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

pub(super) async fn list(Tenant(tenant): Tenant, State(app): State<App>) -> ApiResult<Json<Json_>> {
    let items = app.tenants.components(&tenant).await?;
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn get(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    Path(digest): Path<String>,
) -> ApiResult<Json<ComponentMeta>> {
    let digest = names::digest_in_path(&digest)?;
    app.tenants
        .component(&tenant, digest)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(digest))
}

/// Forgets the tenant's use of the digest. Executions that already run it keep running.
pub(super) async fn delete(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    Path(digest): Path<String>,
) -> ApiResult<StatusCode> {
    let digest = names::digest_in_path(&digest)?;
    if app.tenants.delete_component(&tenant, digest).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(digest))
    }
}

fn not_found(digest: &str) -> ApiError {
    ApiError::NotFound(format!("no component `{digest}`"))
}
