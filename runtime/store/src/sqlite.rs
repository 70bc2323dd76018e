//! The durable [`ExecutionStore`]: one SQLite file, so that executions survive restarts and
//! crashes without running a database server.
//!
//! Several `orca` processes may point at the same file, so the connection runs in WAL mode
//! (readers do not block the writer) with a busy timeout (writers queue instead of failing),
//! and `synchronous=FULL` so that a `save` has reached the disk before the engine acts on it.
//!
//! rusqlite is blocking, so the connection lives on a thread of its own that runs operations
//! in the order they were asked for. That thread is also the group commit: writes that queue
//! while it syncs one transaction go into the next one together, so a thousand executions
//! saving at once cost a handful of syncs, and a lone write costs only the hand-off to the
//! thread and back.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use tokio::sync::oneshot;

use super::{
    Changes, ExecutionStore, FIRST_FENCE, Fence, ListFilter, StoreError, StoredExecution, Write,
    WriteOutcomes,
};

mod kv;
mod leases;

use leases::unchanged;

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
    // 2: leases. Executions written before leases existed have no owner, so they count as
    // free and any process may resume them.
    "ALTER TABLE executions ADD COLUMN owner TEXT;
    ALTER TABLE executions ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX executions_lease ON executions (lease_until_ms) WHERE owner IS NOT NULL;",
    // 3: component state (the WIT `state` interface), keyed by host-namespaced keys.
    "CREATE TABLE kv (
        key           TEXT PRIMARY KEY,
        value         BLOB NOT NULL,
        expires_at_ms INTEGER
    );",
];

const COLUMNS: &str = "id, workflow_id, status, created_at_ms, updated_at_ms, body";

/// The most writes one transaction carries: bounds how long the first of them waits for the
/// others, and gains little past the point where the sync is amortized.
const MAX_BATCH: usize = 512;

/// Executions kept in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// To the thread that owns the connection; it stops once every clone is dropped.
    jobs: mpsc::Sender<Job>,
    changes: Arc<Changes>,
}

/// Work for the connection's thread.
enum Job {
    Write {
        batch: Vec<Write>,
        reply: oneshot::Sender<WriteOutcomes>,
    },
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// This blocks on file I/O and possibly on other processes holding the database; call it
    /// at startup or from a blocking context.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::from_connection(open_file(path.as_ref(), BACKEND)?)
    }

    /// A private, empty database that disappears when the store is dropped; for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(sqlite_error)?;
        Self::from_connection(conn)
    }

    fn from_connection(mut conn: Connection) -> Result<Self, StoreError> {
        configure(&conn).map_err(sqlite_error)?;
        migrate(&mut conn)?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("orca-sqlite".into())
            .spawn(move || serve(conn, queue))
            .map_err(|e| StoreError::backend(BACKEND, format!("starting its thread: {e}")))?;
        Ok(Self {
            jobs,
            changes: Changes::local(),
        })
    }

    /// Runs `op` against the connection, on its thread, after everything asked for before.
    async fn with_conn<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Run(Box::new(move |conn| {
            let _ = reply.send(op(conn));
        })))?;
        answer
            .await
            .map_err(|_| unanswered())?
            .map_err(sqlite_error)
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .send(job)
            .map_err(|_| StoreError::backend(BACKEND, "the connection's thread has stopped"))
    }
}

fn unanswered() -> StoreError {
    StoreError::backend(BACKEND, "the operation panicked; nothing was committed")
}

/// The connection's thread: runs jobs in order, merging writes that queued up into one
/// transaction, until every [`SqliteStore`] clone is gone.
fn serve(mut conn: Connection, queue: mpsc::Receiver<Job>) {
    let mut next = queue.recv().ok();
    while let Some(job) = next.take() {
        // A panicking job drops its reply channel, which tells its caller; an unfinished
        // transaction rolls back when dropped, so the connection stays usable.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| match job {
            Job::Run(op) => op(&mut conn),
            Job::Write { batch, reply } => {
                let mut writes = batch;
                let mut callers = vec![(writes.len(), reply)];
                while writes.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(Job::Write { batch, reply }) => {
                            callers.push((batch.len(), reply));
                            writes.extend(batch);
                        }
                        // Not a write: it runs after this transaction, keeping the order.
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                answer(callers, commit(&mut conn, &writes));
            }
        }));
        if next.is_none() {
            next = queue.recv().ok();
        }
    }
}

/// Gives each caller the outcomes of its own writes, or the batch's error.
fn answer(
    callers: Vec<(usize, oneshot::Sender<WriteOutcomes>)>,
    committed: rusqlite::Result<Vec<Result<Fence, StoreError>>>,
) {
    match committed {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (count, reply) in callers {
                let _ = reply.send(Ok(outcomes.by_ref().take(count).collect()));
            }
        }
        Err(error) => {
            let message = error.to_string();
            for (_, reply) in callers {
                let _ = reply.send(Err(sqlite_error(&message)));
            }
        }
    }
}

/// One IMMEDIATE transaction, so the batch costs one commit and one sync however many
/// executions it carries. A statement that fails outright (disk full, I/O error) rolls the
/// whole batch back.
fn commit(
    conn: &mut Connection,
    writes: &[Write],
) -> rusqlite::Result<Vec<Result<Fence, StoreError>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = writes
        .iter()
        .map(|write| apply(&tx, write))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(outcomes)
}

/// Opens (creating it and its directory if needed) the database file at `path`, waiting up
/// to [`BUSY_TIMEOUT`] for other connections to the same file; errors are `backend`'s and name
/// the path. The execution store and the server's tenant tables share one file.
pub(crate) fn open_file(path: &Path, backend: &'static str) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::backend(
                backend,
                format!("creating directory {}: {e}", parent.display()),
            )
        })?;
    }
    let conn = Connection::open(path)
        .map_err(|e| StoreError::backend(backend, format!("opening {}: {e}", path.display())))?;
    // Set first, so that whatever comes next also waits for other connections instead of
    // failing.
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| StoreError::backend(backend, e))?;
    Ok(conn)
}

fn sqlite_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::backend(BACKEND, error)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Set first (again, for in-memory databases), so that the pragmas below also wait for
    // other processes instead of failing.
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
        body: row.get::<_, Vec<u8>>(5)?.into(),
    })
}

/// One write of a batch, inside the batch's transaction.
fn apply(
    tx: &rusqlite::Transaction<'_>,
    write: &Write,
) -> rusqlite::Result<Result<Fence, StoreError>> {
    match write {
        Write::Create {
            execution,
            owner,
            lease_until_ms,
        } => {
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO executions (id, workflow_id, status, created_at_ms,
                         updated_at_ms, body, owner, fence, lease_until_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8)
                     ON CONFLICT(id) DO NOTHING",
                )?
                .execute(params![
                    execution.id,
                    execution.workflow_id,
                    execution.status,
                    execution.created_at_ms,
                    execution.updated_at_ms,
                    &*execution.body,
                    owner,
                    *lease_until_ms as i64,
                ])?;
            Ok(if inserted == 0 {
                Err(StoreError::Exists(execution.id.to_string()))
            } else {
                Ok(FIRST_FENCE)
            })
        }
        Write::Save {
            execution,
            fence,
            release,
        } => {
            // SQLite rewrites an index entry whenever an UPDATE sets an indexed column, even
            // to the value it had: setting the status on every save doubled the pages each
            // commit wrote (2.5 times the time of a save that left it alone). The indexed
            // columns are set only when they change, which for most saves is never.
            tx.prepare_cached(
                "UPDATE executions SET workflow_id = ?3, status = ?4
                 WHERE id = ?1 AND fence = ?2 AND (workflow_id IS NOT ?3 OR status IS NOT ?4)",
            )?
            .execute(params![
                execution.id,
                *fence as i64,
                execution.workflow_id,
                execution.status,
            ])?;
            let sql = if *release {
                "UPDATE executions SET updated_at_ms = ?3, body = ?4, owner = NULL,
                     lease_until_ms = 0
                 WHERE id = ?1 AND fence = ?2"
            } else {
                "UPDATE executions SET updated_at_ms = ?3, body = ?4 WHERE id = ?1 AND fence = ?2"
            };
            let changed = tx.prepare_cached(sql)?.execute(params![
                execution.id,
                *fence as i64,
                execution.updated_at_ms,
                &*execution.body,
            ])?;
            Ok(if changed == 0 {
                Err(unchanged(tx, &execution.id, *fence)?)
            } else {
                Ok(*fence)
            })
        }
    }
}

#[async_trait]
impl ExecutionStore for SqliteStore {
    /// Committed together with whatever other writes are queued (see the module docs).
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let changed = super::changes_of(&batch);
        let (reply, answer) = oneshot::channel();
        self.send(Job::Write { batch, reply })?;
        let outcomes = answer.await.map_err(|_| unanswered())?;
        super::announce_committed(&self.changes, &changed, &outcomes);
        outcomes
    }

    fn changes(&self) -> &Arc<Changes> {
        &self.changes
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
mod tests;
