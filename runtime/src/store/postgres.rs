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
mod schema;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::{ExecutionStore, Fence, ListFilter, PostgresConfig, StoreError, StoredExecution};

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
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, creates `config.schema` if it is set, and applies pending migrations.
    pub async fn open(config: &PostgresConfig) -> Result<Self, StoreError> {
        let pool = pool(config)?;
        let store = PostgresStore { pool };
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

    /// [`ExecutionStore::save`], returning the stored `created_at_ms` (which a save keeps),
    /// so the layered store can copy the record to Redis exactly as committed.
    pub(crate) async fn save_returning_created(
        &self,
        execution: &StoredExecution,
        fence: Fence,
    ) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE orca_executions
                 SET workflow_id = $3, status = $4, updated_at_ms = $5, body = $6
                 WHERE id = $1 AND fence = $2
                 RETURNING created_at_ms",
            )
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(
                &statement,
                &[
                    &execution.id,
                    &(fence as i64),
                    &execution.workflow_id,
                    &execution.status,
                    &execution.updated_at_ms,
                    &execution.body,
                ],
            )
            .await
            .map_err(pg_error)?;
        match row {
            Some(row) => row.try_get(0).map_err(pg_error),
            None if self.exists(&client, &execution.id).await? => Err(StoreError::Fenced {
                id: execution.id.clone(),
                fence,
            }),
            None => Err(StoreError::NotFound(execution.id.clone())),
        }
    }

    /// The record with its current fence, read together so they match.
    pub(crate) async fn load_fenced(
        &self,
        id: &str,
    ) -> Result<Option<(StoredExecution, Fence)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, fence FROM orca_executions WHERE id = $1"
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
        let fence: i64 = row.try_get(6).map_err(pg_error)?;
        Ok(Some((row_to_execution(&row)?, fence as Fence)))
    }
}

/// tokio-postgres' `Display` says only "db error"; the detail is in the source chain.
/// A connection pool for `config`: its schema on every connection's search path, bounded
/// connect and wait times. Everything Orca keeps in PostgreSQL shares these settings.
pub(crate) fn pool(config: &PostgresConfig) -> Result<Pool, StoreError> {
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
    let manager = Manager::from_config(
        pg,
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

fn row_to_execution(row: &tokio_postgres::Row) -> Result<StoredExecution, StoreError> {
    Ok(StoredExecution {
        id: row.try_get(0).map_err(pg_error)?,
        workflow_id: row.try_get(1).map_err(pg_error)?,
        status: row.try_get(2).map_err(pg_error)?,
        created_at_ms: row.try_get(3).map_err(pg_error)?,
        updated_at_ms: row.try_get(4).map_err(pg_error)?,
        body: row.try_get(5).map_err(pg_error)?,
    })
}

#[async_trait]
impl ExecutionStore for PostgresStore {
    async fn create(
        &self,
        execution: &StoredExecution,
        owner: &str,
        lease_until_ms: u64,
    ) -> Result<Fence, StoreError> {
        let client = self.client().await?;
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
                    &execution.id,
                    &execution.workflow_id,
                    &execution.status,
                    &execution.created_at_ms,
                    &execution.updated_at_ms,
                    &execution.body,
                    &owner,
                    &(lease_until_ms as i64),
                ],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Err(StoreError::Exists(execution.id.clone()));
        }
        Ok(1)
    }

    async fn save(&self, execution: &StoredExecution, fence: Fence) -> Result<(), StoreError> {
        self.save_returning_created(execution, fence).await?;
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        Ok(self.load_fenced(id).await?.map(|(record, _)| record))
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
mod tests {
    use super::*;
    use crate::store::testing::{self, SchemaGuard};

    pub(super) struct Fixture {
        store: PostgresStore,
        _schema: SchemaGuard,
    }

    impl Fixture {
        fn store(&self) -> &dyn ExecutionStore {
            &self.store
        }
    }

    async fn fresh() -> Fixture {
        let (config, guard) = testing::postgres();
        Fixture {
            store: PostgresStore::open(&config).await.unwrap(),
            _schema: guard,
        }
    }

    crate::store::conformance::suite!(fresh);

    #[tokio::test]
    async fn component_state() {
        let fixture = fresh().await;
        crate::store::conformance::component_state(&fixture.store).await;
    }

    #[tokio::test]
    async fn opening_twice_at_once_migrates_once() {
        let (config, _guard) = testing::postgres();
        let (a, b) = tokio::join!(PostgresStore::open(&config), PostgresStore::open(&config));
        let (_a, b) = (a.unwrap(), b.unwrap());
        let client = b.client().await.unwrap();
        let versions: i64 = client
            .query_one("SELECT count(*) FROM orca_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(versions as usize, schema::MIGRATIONS.len());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error() {
        let config = PostgresConfig {
            url: "postgresql://postgres:secret@127.0.0.1:1/test?connect_timeout=2".into(),
            schema: None,
        };
        let err = PostgresStore::open(&config).await.unwrap_err().to_string();
        assert!(
            err.contains("cannot connect to postgresql://postgres:***@127.0.0.1:1"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }
}
