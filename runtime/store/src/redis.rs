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
//! [`scripts`]), each atomic, and a batch of them goes out as one pipeline.

mod kv;
pub(crate) mod notices;
mod scripts;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Client, ScriptInvocation, ServerErrorKind, Value};
use async_trait::async_trait;

use super::{
    Changes, ExecutionStore, FIRST_FENCE, Fence, ListFilter, RedisConfig, StoreError,
    StoredExecution, Write, WriteOutcomes,
};

mod leases;

const BACKEND: &str = "redis";

/// How many ids one listing round trip fetches.
const PAGE: isize = 200;

/// How the layered store's copy of a record goes in: see [`scripts::PUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    /// Unless Redis holds a record with a higher fence.
    Newer,
    /// Only if Redis holds no record at all.
    IfAbsent,
}

/// One write of the layered store to its cache.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CacheWrite<'a> {
    Put(&'a StoredExecution, Fence, Put),
    /// No copy of this execution at all. Safe whatever Redis holds, late or not: a reader
    /// that finds no copy reads PostgreSQL.
    Remove(&'a str),
}

impl CacheWrite<'_> {
    pub(crate) fn id(&self) -> &str {
        match self {
            CacheWrite::Put(execution, ..) => &execution.id,
            CacheWrite::Remove(id) => id,
        }
    }
}

/// Executions kept in Redis under a key prefix.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    pub(super) prefix: String,
    ttl_ms: u64,
    changes: Arc<Changes>,
    /// Where the processes sharing the prefix hear of each other's writes.
    pub(super) channel: String,
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
        Self::with_connection(conn, config)
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
        Self::with_connection(conn, config)
    }

    fn with_connection(conn: ConnectionManager, config: &RedisConfig) -> Result<Self, StoreError> {
        let channel = notices::channel(config);
        Ok(RedisStore {
            conn,
            prefix: config.prefix.clone(),
            ttl_ms: u64::try_from(config.ttl.as_millis()).unwrap_or(u64::MAX),
            changes: notices::changes(config, channel.clone())?,
            channel,
        })
    }

    /// Tells the other processes sharing the prefix of `changes` (see [`crate::Changes`]).
    pub(crate) fn publish<'a>(&self, changed: impl IntoIterator<Item = (&'a str, bool)>) {
        notices::send(&self.conn, &self.channel, self.changes.messages(changed));
    }

    /// One pipeline of script calls: one round trip for the batch. Redis has no rollback,
    /// so a write whose script fails on the server (out of memory, say) fails alone, as a
    /// backend error, and a lost connection leaves unknown which writes were applied.
    async fn write_scripts(&self, batch: &[Write]) -> WriteOutcomes {
        let mut outcomes: Vec<Option<Result<Fence, StoreError>>> =
            std::iter::repeat_with(|| None).take(batch.len()).collect();
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut loaded = false;
        while !pending.is_empty() {
            let mut pipe = ::redis::pipe();
            // Per-command replies, so one write's error does not hide the others' outcomes.
            pipe.ignore_errors();
            for &index in &pending {
                pipe.invoke_script(&self.invocation(&batch[index]));
            }
            let replies: Vec<Value> = match pipe.query_async(&mut self.conn.clone()).await {
                Ok(replies) => replies,
                // Nothing of a first attempt is known to have been applied, but a retry
                // follows writes that were.
                Err(error) if !loaded => return Err(redis_error(error)),
                Err(error) => {
                    for index in pending.drain(..) {
                        outcomes[index] = Some(Err(redis_error(error.clone())));
                    }
                    break;
                }
            };
            let mut unknown_script = Vec::new();
            for (index, reply) in pending.drain(..).zip(replies) {
                match reply {
                    // The server lost its script cache (a restart, SCRIPT FLUSH): the write
                    // did not run, so it is safe to send again once the scripts are loaded.
                    Value::ServerError(error)
                        if !loaded && error.kind() == Some(ServerErrorKind::NoScript) =>
                    {
                        unknown_script.push(index);
                    }
                    reply => outcomes[index] = Some(outcome(&batch[index], reply)),
                }
            }
            if !unknown_script.is_empty() {
                let _: () = ::redis::pipe()
                    .load_script(&scripts::CREATE)
                    .ignore()
                    .load_script(&scripts::SAVE)
                    .ignore()
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(redis_error)?;
                loaded = true;
                pending = unknown_script;
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome
                    .unwrap_or_else(|| Err(StoreError::backend(BACKEND, "no reply for this write")))
            })
            .collect())
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
    #[cfg(test)]
    pub(crate) async fn put(
        &self,
        execution: &StoredExecution,
        fence: Fence,
        mode: Put,
    ) -> Result<bool, StoreError> {
        let written = self
            .write_cache(&[CacheWrite::Put(execution, fence, mode)])
            .await?;
        Ok(written[0])
    }

    /// Loads the copy script into the server, as the first copy after a restart of Redis
    /// (or a `SCRIPT FLUSH`) does. A test that counts the copies sent by counting `EVALSHA`
    /// calls needs this first: against a server without the script, the first copy is sent
    /// twice, once refused and once after loading it.
    #[cfg(test)]
    pub(crate) async fn load_copy_script(&self) -> Result<(), StoreError> {
        scripts::PUT
            .prepare_invoke()
            .load_async(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(redis_error)
    }

    /// Carries out `writes` in one pipeline; whether each was done (a put can be declined,
    /// see [`Put`]; a removal always is done).
    pub(crate) async fn write_cache(
        &self,
        writes: &[CacheWrite<'_>],
    ) -> Result<Vec<bool>, StoreError> {
        let mut pipe = ::redis::pipe();
        for write in writes {
            match write {
                CacheWrite::Put(execution, fence, mode) => {
                    pipe.invoke_script(&self.put_invocation(execution, *fence, *mode));
                }
                CacheWrite::Remove(id) => {
                    pipe.del(self.record_key(id));
                }
            }
        }
        let replies: Vec<i64> = match pipe.query_async(&mut self.conn.clone()).await {
            // Writing a copy again is harmless (the same fence), and so is removing it again,
            // so after loading the script the whole pipeline can simply be sent again.
            Err(error) if error.kind() == ::redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                scripts::PUT
                    .prepare_invoke()
                    .load_async(&mut self.conn.clone())
                    .await
                    .map_err(redis_error)?;
                pipe.query_async(&mut self.conn.clone())
                    .await
                    .map_err(redis_error)?
            }
            replies => replies.map_err(redis_error)?,
        };
        Ok(writes
            .iter()
            .zip(replies)
            .map(|(write, reply)| matches!(write, CacheWrite::Remove(_)) || reply == 1)
            .collect())
    }

    fn put_invocation(
        &self,
        execution: &StoredExecution,
        fence: Fence,
        mode: Put,
    ) -> ScriptInvocation<'static> {
        let mut call = scripts::PUT.prepare_invoke();
        call.key(self.record_key(&execution.id))
            .arg(&*execution.workflow_id)
            .arg(&*execution.status)
            .arg(execution.created_at_ms)
            .arg(execution.updated_at_ms)
            .arg(&*execution.body)
            .arg(fence)
            .arg(self.ttl_ms)
            .arg(match mode {
                Put::Newer => "newer",
                Put::IfAbsent => "absent",
            });
        call
    }

    async fn records(&self, ids: &[String]) -> Result<Vec<Option<StoredExecution>>, StoreError> {
        // Redis refuses an empty pipeline.
        if ids.is_empty() {
            return Ok(Vec::new());
        }
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
        id: id.into(),
        workflow_id: workflow_id.into(),
        status: status.into(),
        created_at_ms: created_at_ms
            .parse()
            .map_err(|_| corrupt("created_at_ms"))?,
        updated_at_ms: updated_at_ms
            .parse()
            .map_err(|_| corrupt("updated_at_ms"))?,
        body: fields.remove("body").ok_or_else(|| corrupt("body"))?.into(),
    }))
}

impl RedisStore {
    /// The script call that carries out `write`.
    fn invocation(&self, write: &Write) -> ScriptInvocation<'static> {
        match write {
            Write::Create {
                execution,
                owner,
                lease_until_ms,
            } => {
                let mut call = scripts::CREATE.prepare_invoke();
                call.key(self.record_key(&execution.id))
                    .key(self.index_key())
                    .key(self.leases_key())
                    .arg(&*execution.id)
                    .arg(&*execution.workflow_id)
                    .arg(&*execution.status)
                    .arg(execution.created_at_ms)
                    .arg(execution.updated_at_ms)
                    .arg(&*execution.body)
                    .arg(owner)
                    .arg(lease_until_ms)
                    .arg(self.ttl_ms)
                    .arg(self.record_key(""));
                call
            }
            Write::Save {
                execution,
                fence,
                release,
            } => {
                let mut call = scripts::SAVE.prepare_invoke();
                call.key(self.record_key(&execution.id))
                    .key(self.leases_key())
                    .arg(fence)
                    .arg(&*execution.workflow_id)
                    .arg(&*execution.status)
                    .arg(execution.updated_at_ms)
                    .arg(&*execution.body)
                    .arg(self.ttl_ms)
                    .arg(&*execution.id)
                    .arg(if *release { "1" } else { "" });
                call
            }
        }
    }
}

/// What the script call for `write` answered.
fn outcome(write: &Write, reply: Value) -> Result<Fence, StoreError> {
    if let Value::ServerError(error) = reply {
        return Err(StoreError::backend(BACKEND, error));
    }
    match write {
        Write::Create { execution, .. } => {
            match ::redis::from_redis_value::<i64>(reply).map_err(|e| redis_error(e.into()))? {
                0 => Err(StoreError::Exists(execution.id.to_string())),
                _ => Ok(FIRST_FENCE),
            }
        }
        Write::Save {
            execution, fence, ..
        } => {
            let reply: String =
                ::redis::from_redis_value(reply).map_err(|e| redis_error(e.into()))?;
            fenced_outcome(&reply, &execution.id, *fence).map(|()| *fence)
        }
    }
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
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes {
        let outcomes = self.write_scripts(&batch).await;
        let changed = super::changes_of(&batch);
        let committed = super::announce_committed(&self.changes, &changed, &outcomes);
        notices::send(&self.conn, &self.channel, self.changes.messages(committed));
        outcomes
    }

    fn changes(&self) -> &Arc<Changes> {
        &self.changes
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
                    .is_none_or(|w| *record.workflow_id == *w)
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
