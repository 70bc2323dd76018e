//! Bearer tokens: the admin token (from the server's config) and tenant tokens, which are
//! stored only as their sha256.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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
        if let Some(tenant) = app.tokens.get(&hash) {
            return Ok(Tenant(tenant));
        }
        match app.tenants.tenant_of_token(&hash).await? {
            Some(tenant) => {
                app.tokens.put(hash, &tenant);
                Ok(Tenant(tenant))
            }
            None => Err(wrong_token()),
        }
    }
}

/// Tokens known good, so that a request does not cost a read of the store. An entry is
/// trusted for [`Self::FOR`] only: a token removed from the store (there is no API for it,
/// but an operator can) stops working on every server within that time.
#[derive(Default)]
pub(crate) struct KnownTokens(Mutex<HashMap<String, (String, Instant)>>);

impl KnownTokens {
    const FOR: Duration = Duration::from_secs(5);
    /// More entries than this and the cache starts over, so random tokens cannot grow it
    /// (only good ones are kept, but a tenant may have many).
    const MOST: usize = 10_000;

    fn get(&self, hash: &str) -> Option<String> {
        let known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .get(hash)
            .filter(|(_, since)| since.elapsed() < Self::FOR)
            .map(|(tenant, _)| tenant.clone())
    }

    fn put(&self, hash: String, tenant: &str) {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= Self::MOST {
            known.clear();
        }
        known.insert(hash, (tenant.to_string(), Instant::now()));
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
