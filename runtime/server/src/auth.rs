//! Bearer tokens: the admin token (from the server's config) and tenant tokens, which are
//! stored only as their sha256.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::App;
use super::error::ApiError;

/// A request authenticated as a tenant.
#[derive(Debug, Clone)]
pub(super) struct Tenant(pub(super) String);

/// A request authenticated with the admin token.
#[derive(Debug, Clone, Copy)]
pub(super) struct Admin;

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh tenant token: `orca_` and 244 random bits.
pub(super) fn new_token() -> String {
    format!(
        "orca_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing `Authorization: Bearer <token>`".into()))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("expected `Authorization: Bearer <token>`".into()))
}

fn wrong_token() -> ApiError {
    ApiError::Unauthorized("unknown or revoked token".into())
}

impl FromRequestParts<App> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let hash = sha256_hex(bearer(parts)?);
        match app.tenants.tenant_of_token(&hash).await? {
            Some(tenant) => Ok(Tenant(tenant)),
            None => Err(wrong_token()),
        }
    }
}

/// A request for `/metrics` on the API's listener: with the metrics token or the admin token.
/// Metrics name every tenant's workflows, so they are not public.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scraper;

impl FromRequestParts<App> for Scraper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let config = &app.config;
        if config.metrics_elsewhere {
            return Err(ApiError::NotFound(
                "metrics are served on the --metrics-listen address".into(),
            ));
        }
        if config.metrics_token_sha256.is_none() && config.admin_token_sha256.is_none() {
            return Err(ApiError::Unauthorized(
                "metrics need a token: start the server with --metrics-token (or \
                 ORCA_METRICS_TOKEN), or serve them on a private address with --metrics-listen"
                    .into(),
            ));
        }
        let given = sha256_hex(bearer(parts)?);
        let accepted = [&config.metrics_token_sha256, &config.admin_token_sha256];
        if accepted.into_iter().flatten().any(|t| *t == given) {
            Ok(Scraper)
        } else {
            Err(wrong_token())
        }
    }
}

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let given = sha256_hex(bearer(parts)?);
        // Comparing digests, not the tokens, keeps the comparison's timing independent of
        // how much of the secret a guess got right.
        match &app.config.admin_token_sha256 {
            Some(expected) if *expected == given => Ok(Admin),
            Some(_) => Err(wrong_token()),
            None => Err(ApiError::Unauthorized(
                "this server has no admin token (set --admin-token or ORCA_ADMIN_TOKEN)".into(),
            )),
        }
    }
}
