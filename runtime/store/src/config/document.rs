//! A `StateStore` document turned into a [`StoreConfig`].
//!
//! Each store type reads only some fields; a field that does not apply is an error that
//! points at it, because a silently ignored `ttl` or `persistence` would give the user a
//! store that behaves differently from what they wrote.

use std::path::PathBuf;

use super::{ENV_POSTGRES_URL, ENV_REDIS_URL, Env, PostgresConfig, RedisConfig, StoreConfig};
use crate::StoreError;
use orca_definition::{DocPosition, StateStoreSpec, Text};

pub(super) fn config(
    pos: &DocPosition,
    spec: &StateStoreSpec,
    env: Env<'_>,
) -> Result<StoreConfig, StoreError> {
    let fail = |at: &Text, field: &str, message: String, hint: &str| {
        let error = pos.error_at(at, field, message);
        let error = if hint.is_empty() {
            error
        } else {
            error.with_hint(hint)
        };
        StoreError::Config(error.to_string())
    };
    let kind = &spec.store_type;
    let unused = |field: Option<&Text>, name: &str| match field {
        Some(value) => Err(fail(
            value,
            &format!("spec.{name}"),
            format!("`{name}` does not apply to a {} store", kind.value),
            "remove it",
        )),
        None => Ok(()),
    };
    let persistence_backend = spec
        .persistence
        .as_ref()
        .map(|p| p.backend.as_ref().unwrap_or(kind));
    match kind.value.as_str() {
        "memory" | "sqlite" | "postgresql" => {
            unused(spec.ttl.as_ref(), "ttl")?;
            unused(persistence_backend, "persistence")?;
        }
        _ => {}
    }
    match kind.value.as_str() {
        "memory" => {
            unused(spec.endpoint.as_ref(), "endpoint")?;
            unused(spec.path.as_ref(), "path")?;
            Ok(StoreConfig::Memory)
        }
        "sqlite" => {
            unused(spec.endpoint.as_ref(), "endpoint")?;
            Ok(match &spec.path {
                Some(path) => StoreConfig::Sqlite(PathBuf::from(&path.value)),
                None => StoreConfig::default_sqlite(env),
            })
        }
        "postgresql" => {
            unused(spec.path.as_ref(), "path")?;
            let url = endpoint(env, ENV_POSTGRES_URL, spec.endpoint.as_ref(), "postgresql")
                .ok_or_else(|| {
                    fail(
                        kind,
                        "spec.endpoint",
                        "a postgresql store needs an endpoint".into(),
                        "set spec.endpoint or ORCA_POSTGRES_URL to a postgresql:// URL",
                    )
                })?;
            Ok(StoreConfig::Postgres(PostgresConfig::parse(&url)?))
        }
        "redis" => {
            unused(spec.path.as_ref(), "path")?;
            let ttl = match &spec.ttl {
                Some(ttl) => Some(humantime::parse_duration(&ttl.value).map_err(|e| {
                    fail(
                        ttl,
                        "spec.ttl",
                        format!("`{}`: {e}", ttl.value),
                        "write it like 24h",
                    )
                })?),
                None => None,
            };
            let url =
                endpoint(env, ENV_REDIS_URL, spec.endpoint.as_ref(), "redis").ok_or_else(|| {
                    fail(
                        kind,
                        "spec.endpoint",
                        "a redis store needs an endpoint".into(),
                        "set spec.endpoint (host:port) or ORCA_REDIS_URL",
                    )
                })?;
            let (redis, from_url) = RedisConfig::parse(&url, ttl)?;
            if from_url.is_some() {
                return Err(StoreError::Config(format!(
                    "{}: the redis endpoint {} sets `persistence`; in a StateStore document \
                     write it as spec.persistence",
                    pos.file,
                    redis.redacted()
                )));
            }
            let persistence = match &spec.persistence {
                Some(p) if p.enabled => {
                    if let Some(backend) = p.backend.as_ref().filter(|b| b.value != "postgresql") {
                        return Err(fail(
                            backend,
                            "spec.persistence.backend",
                            format!("unknown persistence backend `{}`", backend.value),
                            "use postgresql",
                        ));
                    }
                    let url = endpoint(env, ENV_POSTGRES_URL, p.endpoint.as_ref(), "postgresql")
                        .ok_or_else(|| {
                            fail(
                                p.backend.as_ref().unwrap_or(kind),
                                "spec.persistence",
                                "persistence to postgresql needs the database's address".into(),
                                "set spec.persistence.endpoint or ORCA_POSTGRES_URL to a \
                                 postgresql:// URL",
                            )
                        })?;
                    Some(PostgresConfig::parse(&url)?)
                }
                _ => None,
            };
            Ok(StoreConfig::Redis { redis, persistence })
        }
        other => Err(fail(
            kind,
            "spec.type",
            format!("unknown state store type `{other}`"),
            "use one of sqlite, memory, redis, postgresql",
        )),
    }
}

/// The environment's override, else the document's endpoint; `host:port` gains the scheme.
fn endpoint(env: Env<'_>, var: &str, written: Option<&Text>, scheme: &str) -> Option<String> {
    let url = env(var)
        .filter(|v| !v.is_empty())
        .or_else(|| written.map(|t| t.value.clone()))?;
    Some(if url.contains("://") {
        url
    } else {
        format!("{scheme}://{url}")
    })
}
