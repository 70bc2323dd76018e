//! The shared [`ExecutionStore`]: PostgreSQL, so that many `orca` processes on many hosts see
//! one set of executions and can take each other's over.
//!
//! Connections come from a small async pool (deadpool), so a save never waits for a TCP and
//! auth handshake. The schema is created and migrated when the store opens, inside a
//! transaction holding a PostgreSQL advisory lock: processes (or parallel tests) starting at
//! once queue on the lock instead of racing to create the same tables. Every write is a single
//! statement whose `WHERE` clause carries the fence, so the lease rules hold without explicit
//! transactions or row locks held across round trips.
//!
//! Connections are plain TCP (no TLS in this build); use a local socket proxy or a private
//! network for remote databases.

mod kv;
mod leases;
pub(crate) mod notices;
mod schema;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::{
    Changes, ExecutionStore, Fence, ListFilter, PostgresConfig, StoreError, StoredExecution, Write,
    WriteOutcomes,
};

const BACKEND: &str = "postgresql";

/// Connections per process. The runner writes one record at a time per execution, so a few
/// connections carry many executions; a dozen processes stay well under PostgreSQL's default
/// `max_connections` of 100.
const POOL_SIZE: usize = 8;

/// How long to wait for a connection (to connect, or for a free one in the pool) before the
/// operation fails, so a dead database surfaces as an error rather than a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const COLUMNS: &str = "id, workflow_id, status, created_at_ms, updated_at_ms, body";

/// Executions kept in a PostgreSQL database (tables `orca_executions`, `orca_migrations`).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    changes: Arc<Changes>,
    /// Where other processes hear of this one's writes; `None` when they hear of them
    /// another way (the layered store's Redis).
    channel: Option<String>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, creates `config.schema` if it is set, and applies pending migrations.
    pub async fn open(config: &PostgresConfig) -> Result<Self, StoreError> {
        let channel = notices::channel(config, "executions");
        let changes = notices::changes(config, channel.clone())?;
        Self::open_with(config, changes, Some(channel)).await
    }

    /// The store without announcements to other processes: the layered store makes them
    /// through Redis, once its copy there has landed.
    pub(crate) async fn open_unannounced(config: &PostgresConfig) -> Result<Self, StoreError> {
        Self::open_with(config, Changes::local(), None).await
    }

    async fn open_with(
        config: &PostgresConfig,
        changes: Arc<Changes>,
        channel: Option<String>,
    ) -> Result<Self, StoreError> {
        let pool = pool(config)?;
        let store = PostgresStore {
            pool,
            changes,
            channel,
        };
        let mut client = store.client().await.map_err(|e| match e {
            StoreError::Backend { message, .. } => StoreError::backend(
                BACKEND,
                format!("cannot connect to {}: {message}", config.redacted()),
            ),
            other => other,
        })?;
        schema::migrate(&mut client, config.schema.as_deref()).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(pg_error)
    }

    /// Runs a statement guarded by `WHERE id = $1 AND fence = $2`; no row changed is an error.
    async fn fenced(
        &self,
        id: &str,
        fence: Fence,
        sql: &str,
        extra: &[&(dyn ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        let fence_arg = fence as i64;
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&id, &fence_arg];
        args.extend_from_slice(extra);
        if client.execute(&statement, &args).await.map_err(pg_error)? > 0 {
            return Ok(());
        }
        Err(if self.exists(&client, id).await? {
            StoreError::Fenced {
                id: id.to_string(),
                fence,
            }
        } else {
            StoreError::NotFound(id.to_string())
        })
    }

    async fn exists(
        &self,
        client: &deadpool_postgres::Client,
        id: &str,
    ) -> Result<bool, StoreError> {
        let statement = client
            .prepare_cached("SELECT 1 FROM orca_executions WHERE id = $1")
            .await
            .map_err(pg_error)?;
        Ok(client
            .query_opt(&statement, &[&id])
            .await
            .map_err(pg_error)?
            .is_some())
    }

    /// [`ExecutionStore::write`], also returning each committed record's `created_at_ms`
    /// (which a save keeps), so the layered store can copy records to Redis exactly as
    /// committed.
    ///
    /// A run of writes to distinct executions is one statement: an `INSERT` of the creates
    /// and an `UPDATE` of the saves (each over `unnest`ed arrays) as data-modifying CTEs, so
    /// a typical batch costs one round trip and one commit. Runs that name an execution
    /// again go in order inside one transaction. A lone write takes a shortcut
    /// ([`Self::write_one`]).
    pub(crate) async fn write_committed(&self, batch: &[Write]) -> Result<Committed, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        if let [write] = batch {
            return Ok(vec![self.write_one(&client, write).await?]);
        }
        let runs = super::distinct_runs(batch);
        let statement = client.prepare_cached(WRITE).await.map_err(pg_error)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        if let [run] = runs.as_slice() {
            outcomes.extend(write_run(&**client, &statement, &batch[run.clone()]).await?);
            return Ok(outcomes);
        }
        let tx = client.transaction().await.map_err(pg_error)?;
        for run in runs {
            outcomes.extend(write_run(&*tx, &statement, &batch[run]).await?);
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(outcomes)
    }

    /// A batch of one, as plain single-row statements: a lone write is what every write is
    /// when nothing else runs, and its latency is the workflow's, so it does without the
    /// arrays and the function call of [`WRITE`].
    async fn write_one(
        &self,
        client: &deadpool_postgres::Client,
        write: &Write,
    ) -> Result<Result<(Fence, i64), StoreError>, StoreError> {
        match write {
            Write::Create {
                execution,
                owner,
                lease_until_ms,
            } => {
                let statement = client
                    .prepare_cached(
                        "INSERT INTO orca_executions (id, workflow_id, status, created_at_ms,
                             updated_at_ms, body, owner, fence, lease_until_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .await
                    .map_err(pg_error)?;
                let inserted = client
                    .execute(
                        &statement,
                        &[
                            &&*execution.id,
                            &&*execution.workflow_id,
                            &&*execution.status,
                            &execution.created_at_ms,
                            &execution.updated_at_ms,
                            &execution.body.as_ref(),
                            owner,
                            &(*lease_until_ms as i64),
                        ],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(if inserted == 0 {
                    Err(StoreError::Exists(execution.id.to_string()))
                } else {
                    Ok((1, execution.created_at_ms))
                })
            }
            Write::Save {
                execution,
                fence,
                release,
            } => {
                let statement = client
                    .prepare_cached(
                        "UPDATE orca_executions
                         SET workflow_id = $3, status = $4, updated_at_ms = $5, body = $6,
                             owner = CASE WHEN $7 THEN NULL ELSE owner END,
                             lease_until_ms = CASE WHEN $7 THEN 0 ELSE lease_until_ms END
                         WHERE id = $1 AND fence = $2
                         RETURNING created_at_ms",
                    )
                    .await
                    .map_err(pg_error)?;
                let row = client
                    .query_opt(
                        &statement,
                        &[
                            &&*execution.id,
                            &(*fence as i64),
                            &&*execution.workflow_id,
                            &&*execution.status,
                            &execution.updated_at_ms,
                            &execution.body.as_ref(),
                            release,
                        ],
                    )
                    .await
                    .map_err(pg_error)?;
                // Nothing changed, so nothing was committed: the check that tells a stale
                // fence from an unknown id can safely come after.
                Ok(match row {
                    Some(row) => Ok((*fence, row.try_get(0).map_err(pg_error)?)),
                    None if self.exists(client, &execution.id).await? => Err(StoreError::Fenced {
                        id: execution.id.to_string(),
                        fence: *fence,
                    }),
                    None => Err(StoreError::NotFound(execution.id.to_string())),
                })
            }
        }
    }

    /// The record with its current fence and whether its lease is held, read together so
    /// they match.
    pub(crate) async fn load_leased(&self, id: &str) -> Result<Option<Leased>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, fence, owner IS NOT NULL FROM orca_executions WHERE id = $1"
            ))
            .await
            .map_err(pg_error)?;
        let Some(row) = client
            .query_opt(&statement, &[&id])
            .await
            .map_err(pg_error)?
        else {
            return Ok(None);
        };
        let (execution, fence) = row_to_fenced(&row)?;
        Ok(Some(Leased {
            execution,
            fence,
            held: row.try_get(7).map_err(pg_error)?,
        }))
    }
}

/// A record as [`PostgresStore::load_leased`] reads it.
pub(crate) struct Leased {
    pub(crate) execution: StoredExecution,
    pub(crate) fence: Fence,
    /// Someone holds the lease: the execution is being driven, or was until its owner died.
    pub(crate) held: bool,
}

/// Per write, its fence and the record's stored `created_at_ms`; see
/// [`PostgresStore::write_committed`].
pub(crate) type Committed = Vec<Result<(Fence, i64), StoreError>>;

/// One run of [`PostgresStore::write_committed`]: writes to distinct executions, creates
/// and saves column by column. The statement is a function of the schema (migration 5), so
/// that its plan is made once per connection rather than on every call.
const WRITE: &str = "SELECT outcome, id, created_at_ms
    FROM orca_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// Runs [`WRITE`] for `run` (writes to distinct executions) and sorts out each write's
/// outcome.
async fn write_run(
    client: &impl tokio_postgres::GenericClient,
    statement: &tokio_postgres::Statement,
    run: &[Write],
) -> Result<Committed, StoreError> {
    let mut creates = CreateColumns::default();
    let mut saves = SaveColumns::default();
    for write in run {
        match write {
            Write::Create {
                execution,
                owner,
                lease_until_ms,
            } => {
                creates.id.push(&execution.id);
                creates.workflow_id.push(&execution.workflow_id);
                creates.status.push(&execution.status);
                creates.created_at_ms.push(execution.created_at_ms);
                creates.updated_at_ms.push(execution.updated_at_ms);
                creates.body.push(&execution.body);
                creates.owner.push(owner);
                creates.lease_until_ms.push(*lease_until_ms as i64);
            }
            Write::Save {
                execution,
                fence,
                release,
            } => {
                saves.id.push(&execution.id);
                saves.fence.push(*fence as i64);
                saves.workflow_id.push(&execution.workflow_id);
                saves.status.push(&execution.status);
                saves.updated_at_ms.push(execution.updated_at_ms);
                saves.body.push(&execution.body);
                saves.release.push(*release);
            }
        }
    }
    let rows = client
        .query(
            statement,
            &[
                &creates.id,
                &creates.workflow_id,
                &creates.status,
                &creates.created_at_ms,
                &creates.updated_at_ms,
                &creates.body,
                &creates.owner,
                &creates.lease_until_ms,
                &saves.id,
                &saves.fence,
                &saves.workflow_id,
                &saves.status,
                &saves.updated_at_ms,
                &saves.body,
                &saves.release,
            ],
        )
        .await
        .map_err(pg_error)?;
    let mut found: HashMap<String, (String, i64)> = HashMap::with_capacity(rows.len());
    for row in rows {
        let outcome: String = row.try_get(0).map_err(pg_error)?;
        let id: String = row.try_get(1).map_err(pg_error)?;
        let created_at_ms: i64 = row.try_get(2).map_err(pg_error)?;
        found.insert(id, (outcome, created_at_ms));
    }
    Ok(run
        .iter()
        .map(|write| {
            let outcome = found.get(write.id()).map(|(o, c)| (o.as_str(), *c));
            match (write, outcome) {
                (Write::Create { execution, .. }, Some(("created", _))) => {
                    Ok((1, execution.created_at_ms))
                }
                (Write::Create { execution, .. }, _) => {
                    Err(StoreError::Exists(execution.id.to_string()))
                }
                (Write::Save { fence, .. }, Some(("saved", created_at_ms))) => {
                    Ok((*fence, created_at_ms))
                }
                (
                    Write::Save {
                        execution, fence, ..
                    },
                    Some(("fenced", _)),
                ) => Err(StoreError::Fenced {
                    id: execution.id.to_string(),
                    fence: *fence,
                }),
                (Write::Save { execution, .. }, _) => {
                    Err(StoreError::NotFound(execution.id.to_string()))
                }
            }
        })
        .collect())
}

/// The creates of a run, column by column, for `unnest`.
#[derive(Default)]
struct CreateColumns<'a> {
    id: Vec<&'a str>,
    workflow_id: Vec<&'a str>,
    status: Vec<&'a str>,
    created_at_ms: Vec<i64>,
    updated_at_ms: Vec<i64>,
    body: Vec<&'a [u8]>,
    owner: Vec<&'a str>,
    lease_until_ms: Vec<i64>,
}

/// The saves of a run, column by column, for `unnest`.
#[derive(Default)]
struct SaveColumns<'a> {
    id: Vec<&'a str>,
    fence: Vec<i64>,
    workflow_id: Vec<&'a str>,
    status: Vec<&'a str>,
    updated_at_ms: Vec<i64>,
    body: Vec<&'a [u8]>,
    release: Vec<bool>,
}

/// tokio-postgres' `Display` says only "db error"; the detail is in the source chain.
/// A connection pool for `config`: its schema on every connection's search path, bounded
/// connect and wait times. Everything Orca keeps in PostgreSQL shares these settings.
pub(crate) fn pool(config: &PostgresConfig) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        connect_config(config)?,
        NoTls,
        ManagerConfig {
            // Fast: a broken connection shows up as an error on its next use, which the
            // caller sees like any other database error.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(pg_error)?;
    Ok(pool)
}

/// How every connection to `config`'s database is made.
fn connect_config(config: &PostgresConfig) -> Result<tokio_postgres::Config, StoreError> {
    let mut pg: tokio_postgres::Config = config
        .url
        .parse()
        .map_err(|e| StoreError::Config(format!("{}: {e}", config.redacted())))?;
    if let Some(schema) = &config.schema {
        // Every pooled connection starts with the schema on its search path, so queries
        // need not qualify table names.
        let options = format!(
            "{} -c search_path={schema}",
            pg.get_options().unwrap_or_default()
        );
        pg.options(options.trim());
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("orca");
    }
    Ok(pg)
}

fn pg_error(error: impl std::error::Error) -> StoreError {
    StoreError::backend(BACKEND, error_chain(&error))
}

/// An error's message followed by those of its sources.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// A row of `SELECT {COLUMNS}, fence`: the record and the fence it was read under.
fn row_to_fenced(row: &tokio_postgres::Row) -> Result<(StoredExecution, Fence), StoreError> {
    let fence: i64 = row.try_get(6).map_err(pg_error)?;
    Ok((row_to_execution(row)?, fence as Fence))
}

fn row_to_execution(row: &tokio_postgres::Row) -> Result<StoredExecution, StoreError> {
    Ok(StoredExecution {
        id: row.try_get::<_, String>(0).map_err(pg_error)?.into(),
        workflow_id: row.try_get::<_, String>(1).map_err(pg_error)?.into(),
        status: Cow::Owned(row.try_get(2).map_err(pg_error)?),
        created_at_ms: row.try_get(3).map_err(pg_error)?,
        updated_at_ms: row.try_get(4).map_err(pg_error)?,
        body: row.try_get::<_, Vec<u8>>(5).map_err(pg_error)?.into(),
    })
}

#[async_trait]
impl ExecutionStore for PostgresStore {
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes {
        let outcomes = Ok(self
            .write_committed(&batch)
            .await?
            .into_iter()
            .map(|outcome| outcome.map(|(fence, _)| fence))
            .collect());
        let changed = super::changes_of(&batch);
        let committed = super::announce_committed(&self.changes, &changed, &outcomes);
        if let Some(channel) = &self.channel {
            notices::send(&self.pool, channel, self.changes.messages(committed));
        }
        outcomes
    }

    fn changes(&self) -> &Arc<Changes> {
        &self.changes
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        Ok(self.load_leased(id).await?.map(|found| found.execution))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError> {
        // Only the filters actually given go into the WHERE clause, so the planner can use
        // the matching index.
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let mut conditions = Vec::new();
        if let Some(workflow_id) = &filter.workflow_id {
            args.push(workflow_id);
            conditions.push(format!("workflow_id = ${}", args.len()));
        }
        if let Some(status) = &filter.status {
            args.push(status);
            conditions.push(format!("status = ${}", args.len()));
        }
        let mut sql = format!("SELECT {COLUMNS} FROM orca_executions");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY created_at_ms DESC, id DESC");
        if let Some(limit) = &limit {
            args.push(limit);
            sql.push_str(&format!(" LIMIT ${}", args.len()));
        }
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
        let rows = client.query(&statement, &args).await.map_err(pg_error)?;
        rows.iter().map(row_to_execution).collect()
    }
}

#[cfg(test)]
mod tests;
