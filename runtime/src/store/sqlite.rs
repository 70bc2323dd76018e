//! The durable [`ExecutionStore`]: one SQLite file, so that executions survive restarts and
//! crashes without running a database server.
//!
//! Several `orca` processes may point at the same file, so the connection runs in WAL mode
//! (readers do not block the writer) with a busy timeout (writers queue instead of failing),
//! and `synchronous=FULL` so that a `save` has reached the disk before the engine acts on it.
//! rusqlite is blocking, so every operation runs on tokio's blocking pool rather than stalling
//! the async workers.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::{ExecutionStore, ListFilter, StoreError, StoredExecution};

const BACKEND: &str = "sqlite";

/// How long a write waits for another connection (possibly another process) to release the
/// database before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, in order. Migration `i` (0-based) brings the schema from
/// `user_version == i` to `i + 1`; existing entries must never change once released, because
/// databases in the field have already applied them.
const MIGRATIONS: &[&str] = &[
    // 1: executions, indexed for listing by workflow (newest first) and for finding executions
    // to resume by status.
    "CREATE TABLE executions (
        id            TEXT PRIMARY KEY,
        workflow_id   TEXT NOT NULL,
        status        TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        body          BLOB NOT NULL
    );
    CREATE INDEX executions_workflow_created ON executions (workflow_id, created_at_ms);
    CREATE INDEX executions_status ON executions (status);",
];

const COLUMNS: &str = "id, workflow_id, status, created_at_ms, updated_at_ms, body";

/// Executions kept in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    // std's Mutex, not tokio's: it is only ever locked inside `spawn_blocking`, never across an
    // await.
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// This blocks on file I/O and possibly on other processes holding the database; call it
    /// at startup or from a blocking context.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::backend(
                    BACKEND,
                    format!("creating directory {}: {e}", parent.display()),
                )
            })?;
        }
        let conn = Connection::open(path).map_err(|e| {
            StoreError::backend(BACKEND, format!("opening {}: {e}", path.display()))
        })?;
        Self::from_connection(conn)
    }

    /// A private, empty database that disappears when the store is dropped; for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(sqlite_error)?;
        Self::from_connection(conn)
    }

    fn from_connection(mut conn: Connection) -> Result<Self, StoreError> {
        configure(&conn).map_err(sqlite_error)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `op` against the connection on the blocking pool.
    async fn with_conn<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while the lock was held cannot leave the database inconsistent (an
            // unfinished transaction rolls back when dropped), so a poisoned lock is still
            // safe to use.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            op(&mut conn)
        })
        .await
        .map_err(sqlite_error)?
        .map_err(sqlite_error)
    }
}

fn sqlite_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::backend(BACKEND, error)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Set first, so that the pragmas below also wait for other processes instead of failing.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    // In-memory databases report `memory`; some file systems (e.g. network mounts) cannot do
    // WAL. Both still work correctly, just with less concurrency.
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(journal_mode = %mode, "SQLite state store is not in WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front, so two processes opening a fresh file at the
    // same time cannot both decide to apply the same migration.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite_error)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::backend(
            BACKEND,
            format!("database schema version {version} is newer than this orca supports ({known})"),
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(|e| {
            StoreError::backend(BACKEND, format!("applying migration {}: {e}", index + 1))
        })?;
    }
    if version < known {
        tx.pragma_update(None, "user_version", known)
            .map_err(sqlite_error)?;
    }
    tx.commit().map_err(sqlite_error)
}

fn row_to_execution(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredExecution> {
    Ok(StoredExecution {
        id: row.get(0)?,
        workflow_id: row.get(1)?,
        status: row.get(2)?,
        created_at_ms: row.get(3)?,
        updated_at_ms: row.get(4)?,
        body: row.get(5)?,
    })
}

#[async_trait]
impl ExecutionStore for SqliteStore {
    async fn save(&self, execution: &StoredExecution) -> Result<(), StoreError> {
        let execution = execution.clone();
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "INSERT INTO executions
                     (id, workflow_id, status, created_at_ms, updated_at_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET
                     workflow_id = excluded.workflow_id,
                     status = excluded.status,
                     updated_at_ms = excluded.updated_at_ms,
                     body = excluded.body",
            )?
            .execute(params![
                execution.id,
                execution.workflow_id,
                execution.status,
                execution.created_at_ms,
                execution.updated_at_ms,
                execution.body,
            ])?;
            Ok(())
        })
        .await
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM executions WHERE id = ?1"))?
                .query_row([id], row_to_execution)
                .optional()
        })
        .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError> {
        // Only the filters actually given go into the WHERE clause, so SQLite can use the
        // matching index.
        let mut sql = format!("SELECT {COLUMNS} FROM executions");
        let mut args: Vec<Value> = Vec::new();
        let mut conditions: Vec<&str> = Vec::new();
        if let Some(workflow_id) = &filter.workflow_id {
            args.push(Value::Text(workflow_id.clone()));
            conditions.push("workflow_id = ?");
        }
        if let Some(status) = &filter.status {
            args.push(Value::Text(status.clone()));
            conditions.push("status = ?");
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY created_at_ms DESC, id DESC");
        if let Some(limit) = filter.limit {
            args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
            sql.push_str(" LIMIT ?");
        }
        self.with_conn(move |conn| {
            conn.prepare_cached(&sql)?
                .query_map(params_from_iter(args), row_to_execution)?
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(id: &str, workflow_id: &str, status: &str, created_at_ms: i64) -> StoredExecution {
        StoredExecution {
            id: id.to_owned(),
            workflow_id: workflow_id.to_owned(),
            status: status.to_owned(),
            created_at_ms,
            updated_at_ms: created_at_ms,
            body: format!(r#"{{"id":"{id}"}}"#).into_bytes(),
        }
    }

    fn ids(executions: &[StoredExecution]) -> Vec<&str> {
        executions.iter().map(|e| e.id.as_str()).collect()
    }

    fn pragma_i64(store: &SqliteStore, name: &str) -> i64 {
        store
            .conn
            .lock()
            .unwrap()
            .pragma_query_value(None, name, |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn save_then_load_round_trips() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut original = execution("e1", "wf", "running", 1_000);
        // Bytes that are not valid UTF-8 must survive: the body is a BLOB, not TEXT.
        original.body = vec![0, 159, 146, 150, b'{', b'}'];
        store.save(&original).await.unwrap();
        assert_eq!(store.load("e1").await.unwrap(), Some(original));
    }

    #[tokio::test]
    async fn load_of_unknown_id_is_none() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .save(&execution("e1", "wf", "running", 1_000))
            .await
            .unwrap();
        assert_eq!(store.load("nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn upsert_keeps_created_at_and_updates_the_rest() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .save(&execution("e1", "wf", "running", 1_000))
            .await
            .unwrap();

        let mut update = execution("e1", "wf", "completed", 5_000);
        update.updated_at_ms = 6_000;
        update.body = b"{\"done\":true}".to_vec();
        store.save(&update).await.unwrap();

        let loaded = store.load("e1").await.unwrap().unwrap();
        assert_eq!(loaded.created_at_ms, 1_000);
        assert_eq!(loaded.updated_at_ms, 6_000);
        assert_eq!(loaded.status, "completed");
        assert_eq!(loaded.body, b"{\"done\":true}".to_vec());
        assert_eq!(store.list(&ListFilter::default()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn list_filters_orders_newest_first_and_limits() {
        let store = SqliteStore::open_in_memory().unwrap();
        for e in [
            execution("a", "wf1", "completed", 1_000),
            execution("b", "wf1", "running", 3_000),
            execution("c", "wf2", "running", 2_000),
            execution("d", "wf1", "running", 3_000),
            execution("e", "wf1", "failed", 4_000),
        ] {
            store.save(&e).await.unwrap();
        }

        let all = store.list(&ListFilter::default()).await.unwrap();
        assert_eq!(ids(&all), ["e", "d", "b", "c", "a"]);
        assert_eq!(all[4], execution("a", "wf1", "completed", 1_000));

        let wf1 = ListFilter {
            workflow_id: Some("wf1".into()),
            ..ListFilter::default()
        };
        assert_eq!(ids(&store.list(&wf1).await.unwrap()), ["e", "d", "b", "a"]);

        let running = ListFilter {
            status: Some("running".into()),
            ..ListFilter::default()
        };
        assert_eq!(ids(&store.list(&running).await.unwrap()), ["d", "b", "c"]);

        let wf1_running_limited = ListFilter {
            workflow_id: Some("wf1".into()),
            status: Some("running".into()),
            limit: Some(1),
        };
        assert_eq!(ids(&store.list(&wf1_running_limited).await.unwrap()), ["d"]);

        let limited = ListFilter {
            limit: Some(2),
            ..ListFilter::default()
        };
        assert_eq!(ids(&store.list(&limited).await.unwrap()), ["e", "d"]);

        let zero = ListFilter {
            limit: Some(0),
            ..ListFilter::default()
        };
        assert!(store.list(&zero).await.unwrap().is_empty());

        let none = ListFilter {
            workflow_id: Some("missing".into()),
            ..ListFilter::default()
        };
        assert!(store.list(&none).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn open_creates_parent_directories_and_configures_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/orca.db");
        let store = SqliteStore::open(&path).unwrap();
        assert!(path.exists());

        let mode: String = store
            .conn
            .lock()
            .unwrap()
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        // FULL is 2.
        assert_eq!(pragma_i64(&store, "synchronous"), 2);
        assert_eq!(pragma_i64(&store, "busy_timeout"), 5_000);
        assert_eq!(pragma_i64(&store, "user_version"), MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn data_survives_closing_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orca.db");
        let original = execution("e1", "wf", "completed", 1_000);
        {
            let store = SqliteStore::open(&path).unwrap();
            store.save(&original).await.unwrap();
        }

        // Reopening must not re-run migration 1 (it would fail on the existing table).
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(pragma_i64(&store, "user_version"), 1);
        assert_eq!(store.load("e1").await.unwrap(), Some(original));
    }

    #[tokio::test]
    async fn refuses_a_schema_newer_than_it_knows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orca.db");
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();

        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }

    #[tokio::test]
    async fn two_stores_on_one_file_see_each_others_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let first = SqliteStore::open(&path).unwrap();
        let second = SqliteStore::open(&path).unwrap();

        let from_first = execution("a", "wf", "running", 1_000);
        first.save(&from_first).await.unwrap();
        assert_eq!(second.load("a").await.unwrap(), Some(from_first));

        let mut update = execution("a", "wf", "completed", 9_000);
        update.updated_at_ms = 2_000;
        second.save(&update).await.unwrap();
        second
            .save(&execution("b", "wf", "running", 3_000))
            .await
            .unwrap();

        let seen = first.load("a").await.unwrap().unwrap();
        assert_eq!(seen.status, "completed");
        assert_eq!(seen.created_at_ms, 1_000);
        assert_eq!(seen.updated_at_ms, 2_000);
        assert_eq!(
            ids(&first.list(&ListFilter::default()).await.unwrap()),
            ["b", "a"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_on_one_file_do_not_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.db");
        let stores = [
            SqliteStore::open(&path).unwrap(),
            SqliteStore::open(&path).unwrap(),
        ];

        let mut tasks = Vec::new();
        for (n, store) in stores.iter().enumerate() {
            for i in 0..25 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let id = format!("s{n}-{i:02}");
                    store.save(&execution(&id, "wf", "running", i)).await
                }));
            }
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }

        assert_eq!(
            stores[0].list(&ListFilter::default()).await.unwrap().len(),
            50
        );
    }
}
