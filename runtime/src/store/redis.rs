//! [`ExecutionStore`] on Redis: fast, shared, and *not* durable on its own.
//!
//! Redis alone keeps an execution only for the configured `ttl` after its last write (the
//! runner renews the lease, and so the record, while it drives the execution; a finished or
//! abandoned one disappears `ttl` later), and only as durably as the server's own persistence
//! settings allow. That fits the specification's "executions live in the store while they
//! run". For state that must outlive the TTL or a Redis restart, persist it to PostgreSQL
//! (`persistence` in the StateStore document), which makes this store the cache of
//! [`super::LayeredStore`].
//!
//! One multiplexed connection (redis' `ConnectionManager`, which reconnects by itself)
//! carries every request of the process; conditional writes are Lua scripts (see
//! [`scripts`]), so each is one atomic round trip.

mod kv;
mod scripts;

use std::collections::HashMap;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Client};
use async_trait::async_trait;

use super::{ExecutionStore, Fence, ListFilter, RedisConfig, StoreError, StoredExecution};

mod leases;

const BACKEND: &str = "redis";

/// How many ids one listing round trip fetches.
const PAGE: isize = 200;

/// The layered store's write to its cache: see [`scripts::PUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    /// Unless Redis holds a record with a higher fence.
    Newer,
    /// Only if Redis holds no record at all.
    IfAbsent,
}

/// Executions kept in Redis under a key prefix.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    pub(super) prefix: String,
    ttl_ms: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects now, so a wrong address fails at start-up rather than at the first save.
    pub async fn open(config: &RedisConfig) -> Result<Self, StoreError> {
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let client = client(config)?;
        let conn = ConnectionManager::new_with_config(client, settings)
            .await
            .map_err(|e| {
                StoreError::backend(
                    BACKEND,
                    format!("cannot connect to {}: {e}", config.redacted()),
                )
            })?;
        Ok(Self::with_connection(conn, config))
    }

    /// Connects on first use and fails fast while the server is down: for the layered
    /// store, which carries on with PostgreSQL alone when Redis is unavailable.
    pub(crate) fn open_lazy(config: &RedisConfig) -> Result<Self, StoreError> {
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client(config)?, settings)
            .map_err(|e| StoreError::backend(BACKEND, e))?;
        Ok(Self::with_connection(conn, config))
    }

    fn with_connection(conn: ConnectionManager, config: &RedisConfig) -> Self {
        RedisStore {
            conn,
            prefix: config.prefix.clone(),
            ttl_ms: u64::try_from(config.ttl.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn record_key(&self, id: &str) -> String {
        format!("{}exec:{id}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}index", self.prefix)
    }

    fn leases_key(&self) -> String {
        format!("{}leases", self.prefix)
    }

    /// Writes a record committed elsewhere (PostgreSQL) into Redis; true if it was written.
    pub(crate) async fn put(
        &self,
        execution: &StoredExecution,
        fence: Fence,
        mode: Put,
    ) -> Result<bool, StoreError> {
        let written: i64 = scripts::PUT
            .key(self.record_key(&execution.id))
            .arg(&execution.workflow_id)
            .arg(&execution.status)
            .arg(execution.created_at_ms)
            .arg(execution.updated_at_ms)
            .arg(&execution.body)
            .arg(fence)
            .arg(self.ttl_ms)
            .arg(match mode {
                Put::Newer => "newer",
                Put::IfAbsent => "absent",
            })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(written == 1)
    }

    async fn records(&self, ids: &[String]) -> Result<Vec<Option<StoredExecution>>, StoreError> {
        let mut pipe = ::redis::pipe();
        for id in ids {
            pipe.hgetall(self.record_key(id));
        }
        let hashes: Vec<HashMap<String, Vec<u8>>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        ids.iter()
            .zip(hashes)
            .map(|(id, fields)| parse_record(id, fields))
            .collect()
    }
}

fn client(config: &RedisConfig) -> Result<Client, StoreError> {
    Client::open(config.url.as_str())
        .map_err(|e| StoreError::Config(format!("store {}: {e}", config.redacted())))
}

fn redis_error(error: ::redis::RedisError) -> StoreError {
    StoreError::backend(BACKEND, error)
}

/// A record hash as stored by the scripts; an empty hash is a missing (or expired) key.
fn parse_record(
    id: &str,
    mut fields: HashMap<String, Vec<u8>>,
) -> Result<Option<StoredExecution>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let corrupt = |field: &str| {
        StoreError::backend(
            BACKEND,
            format!("execution `{id}`: field `{field}` is missing or malformed"),
        )
    };
    let mut text = |field: &str| {
        fields
            .remove(field)
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| corrupt(field))
    };
    let workflow_id = text("workflow_id")?;
    let status = text("status")?;
    let created_at_ms = text("created_at_ms")?;
    let updated_at_ms = text("updated_at_ms")?;
    Ok(Some(StoredExecution {
        id: id.to_string(),
        workflow_id,
        status,
        created_at_ms: created_at_ms
            .parse()
            .map_err(|_| corrupt("created_at_ms"))?,
        updated_at_ms: updated_at_ms
            .parse()
            .map_err(|_| corrupt("updated_at_ms"))?,
        body: fields.remove("body").ok_or_else(|| corrupt("body"))?,
    }))
}

/// Maps a script's `ok` / `missing` / `fenced` reply.
fn fenced_outcome(reply: &str, id: &str, fence: Fence) -> Result<(), StoreError> {
    match reply {
        "ok" => Ok(()),
        "missing" => Err(StoreError::NotFound(id.to_string())),
        "fenced" => Err(StoreError::Fenced {
            id: id.to_string(),
            fence,
        }),
        other => Err(StoreError::backend(
            BACKEND,
            format!("unexpected script reply `{other}`"),
        )),
    }
}

#[async_trait]
impl ExecutionStore for RedisStore {
    async fn create(
        &self,
        execution: &StoredExecution,
        owner: &str,
        lease_until_ms: u64,
    ) -> Result<Fence, StoreError> {
        let created: i64 = scripts::CREATE
            .key(self.record_key(&execution.id))
            .key(self.index_key())
            .key(self.leases_key())
            .arg(&execution.id)
            .arg(&execution.workflow_id)
            .arg(&execution.status)
            .arg(execution.created_at_ms)
            .arg(execution.updated_at_ms)
            .arg(&execution.body)
            .arg(owner)
            .arg(lease_until_ms)
            .arg(self.ttl_ms)
            .arg(self.record_key(""))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        if created == 0 {
            return Err(StoreError::Exists(execution.id.clone()));
        }
        Ok(1)
    }

    async fn save(&self, execution: &StoredExecution, fence: Fence) -> Result<(), StoreError> {
        let reply: String = scripts::SAVE
            .key(self.record_key(&execution.id))
            .arg(fence)
            .arg(&execution.workflow_id)
            .arg(&execution.status)
            .arg(execution.updated_at_ms)
            .arg(&execution.body)
            .arg(self.ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        fenced_outcome(&reply, &execution.id, fence)
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        let fields: HashMap<String, Vec<u8>> = self
            .conn
            .clone()
            .hgetall(self.record_key(id))
            .await
            .map_err(redis_error)?;
        parse_record(id, fields)
    }

    /// Walks the creation index newest first, a page at a time, filtering as it goes; ids
    /// whose record has expired are dropped from the index on the way.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut found = Vec::new();
        let mut start: isize = 0;
        while found.len() < limit {
            let ids: Vec<String> = self
                .conn
                .clone()
                .zrevrange(self.index_key(), start, start + PAGE - 1)
                .await
                .map_err(redis_error)?;
            if ids.is_empty() {
                break;
            }
            let mut expired = Vec::new();
            for (id, record) in ids.iter().zip(self.records(&ids).await?) {
                let Some(record) = record else {
                    expired.push(id.clone());
                    continue;
                };
                let matches = filter
                    .workflow_id
                    .as_deref()
                    .is_none_or(|w| record.workflow_id == w)
                    && filter.status.as_deref().is_none_or(|s| record.status == s);
                if matches && found.len() < limit {
                    found.push(record);
                }
            }
            start += PAGE - expired.len() as isize;
            if !expired.is_empty() {
                let _: () = self
                    .conn
                    .clone()
                    .zrem(self.index_key(), &expired)
                    .await
                    .map_err(redis_error)?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
