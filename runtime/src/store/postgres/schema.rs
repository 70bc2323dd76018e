//! The PostgreSQL schema, embedded in the binary and brought up to date when a store opens.
//!
//! Migrations run in one transaction under an advisory lock: two processes (or two parallel
//! tests) opening the same database at once would otherwise both see "version 0" and both try
//! to create the tables. The lock is per database, so opening different schemas of one
//! database also queues briefly; that only happens at start-up.

use super::{BACKEND, error_chain, pg_error};
use crate::store::StoreError;

/// `pg_advisory_xact_lock` key for migrations: "orcamigr" in ASCII, unlikely to collide with
/// another application's lock on a shared database.
const MIGRATION_LOCK: i64 = 0x6f72_6361_6d69_6772;

/// Migration `i` (0-based) brings the schema from version `i` to `i + 1`. Released entries
/// must never change: databases in the field have already applied them.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: executions with their lease; indexed for listing newest first (overall, by workflow,
    // by status) and for finding expired leases to resume.
    "CREATE TABLE orca_executions (
        id             TEXT PRIMARY KEY,
        workflow_id    TEXT NOT NULL,
        status         TEXT NOT NULL,
        created_at_ms  BIGINT NOT NULL,
        updated_at_ms  BIGINT NOT NULL,
        body           BYTEA NOT NULL,
        owner          TEXT,
        fence          BIGINT NOT NULL DEFAULT 0,
        lease_until_ms BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX orca_executions_created ON orca_executions (created_at_ms DESC, id DESC);
    CREATE INDEX orca_executions_workflow
        ON orca_executions (workflow_id, created_at_ms DESC, id DESC);
    CREATE INDEX orca_executions_status ON orca_executions (status, created_at_ms DESC);
    CREATE INDEX orca_executions_lease ON orca_executions (lease_until_ms)
        WHERE owner IS NOT NULL;",
    // 2: component state (the WIT `state` interface), keyed by host-namespaced keys. COLLATE
    // "C" makes the primary key's order bytewise, so prefix listing is an index range scan.
    "CREATE TABLE orca_kv (
        key           TEXT COLLATE \"C\" PRIMARY KEY,
        value         BYTEA NOT NULL,
        expires_at_ms BIGINT
    );",
    // 3: every step rewrites an execution's row. With half of each page left free, most of
    // those rewrites fit beside the old version (a HOT update), which touches none of the
    // five indexes and writes less WAL; measured in bench/FINDINGS.md.
    "ALTER TABLE orca_executions SET (fillfactor = 50);",
    // 4: a record past about 2 KB is compressed on every write, and pglz, the default, was
    // the largest single cost inside PostgreSQL under load (bench/FINDINGS.md). lz4 does the
    // same job several times faster; servers built without it keep pglz.
    "DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM pg_settings
                   WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
            ALTER TABLE orca_executions ALTER COLUMN body SET COMPRESSION lz4;
        END IF;
    END $$;",
];

/// Creates `schema` if given (it is on the connection's search path already) and applies the
/// migrations this database lacks.
pub(super) async fn migrate(
    client: &mut deadpool_postgres::Client,
    schema: Option<&str>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    if let Some(schema) = schema {
        // `schema` was checked to be a plain lower-case identifier, so it needs no quoting.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(pg_error)?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS orca_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(pg_error)?;
    let version: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM orca_migrations", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Err(StoreError::backend(
            BACKEND,
            format!("database schema version {version} is newer than this orca supports ({known})"),
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let number = index as i32 + 1;
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::backend(
                BACKEND,
                format!("applying migration {number}: {}", error_chain(&e)),
            )
        })?;
        tx.execute(
            "INSERT INTO orca_migrations (version) VALUES ($1)",
            &[&number],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}
