//! Admin endpoints: tenants and their tokens.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use super::auth::{Admin, new_token, sha256_hex};
use super::error::{ApiError, ApiResult};
use super::{App, names, now_ms};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTenant {
    name: String,
}

pub(super) async fn create_tenant(
    _: Admin,
    State(app): State<App>,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Json_>)> {
    let Json(body) = body?;
    // Tenant names appear in keys and URLs, and follow the one naming rule.
    names::in_request("name", &body.name)?;
    if !app.tenants.create_tenant(&body.name, now_ms()).await? {
        return Err(ApiError::Conflict(format!(
            "tenant `{}` already exists",
            body.name
        )));
    }
    Ok((StatusCode::CREATED, Json(json!({ "name": body.name }))))
}

/// Issues a token; it is shown once, in this response, and only its sha256 is kept.
pub(super) async fn create_token(
    _: Admin,
    State(app): State<App>,
    Path(tenant): Path<String>,
) -> ApiResult<(StatusCode, Json<Json_>)> {
    let tenant = names::in_path("tenant", &tenant)?;
    if !app.tenants.tenant_exists(tenant).await? {
        return Err(ApiError::NotFound(format!("no tenant `{tenant}`")));
    }
    let token = new_token();
    app.tenants.add_token(tenant, &sha256_hex(&token)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "tenant": tenant, "token": token })),
    ))
}
