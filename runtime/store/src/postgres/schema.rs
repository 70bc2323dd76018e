//! The PostgreSQL schema, embedded in the binary and brought up to date when a store opens.
//!
//! Migrations run in one transaction under an advisory lock: two processes (or two parallel
//! tests) opening the same database at once would otherwise both see "version 0" and both try
//! to create the tables. The lock is per database, so opening different schemas of one
//! database also queues briefly; that only happens at start-up.

use super::{BACKEND, error_chain, pg_error};
use crate::StoreError;

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
    // 5: a batch of writes, as one statement over arrays. Sent as a prepared statement, it
    // was planned afresh on every execution: its generic plan, made for arrays of unknown
    // length, never looks cheaper than a custom one, so PostgreSQL never switches to it. A
    // function body may set the plan cache mode for itself, so the plan is made once per
    // connection (and again when the table's statistics change). The generic plan looks the
    // rows up by primary key like the custom ones; under load this raised the PostgreSQL
    // store's throughput by 5 to 40 % (bench/FINDINGS.md). The writes are those of one run of
    // distinct executions, so the INSERT and the UPDATE never touch the same row; the last
    // part reads the table as it was before the statement: which saves that matched nothing
    // name an execution that exists (a stale fence) rather than none.
    "CREATE FUNCTION orca_write(
            c_id text[], c_workflow_id text[], c_status text[], c_created_at_ms bigint[],
            c_updated_at_ms bigint[], c_body bytea[], c_owner text[], c_lease_until_ms bigint[],
            s_id text[], s_fence bigint[], s_workflow_id text[], s_status text[],
            s_updated_at_ms bigint[], s_body bytea[], s_release bool[])
        RETURNS TABLE (outcome text, id text, created_at_ms bigint)
        LANGUAGE plpgsql
        SET plan_cache_mode = force_generic_plan
    AS $$
    #variable_conflict use_column
    BEGIN
        RETURN QUERY WITH created AS (
            INSERT INTO orca_executions (id, workflow_id, status, created_at_ms,
                updated_at_ms, body, owner, fence, lease_until_ms)
            SELECT c.id, c.workflow_id, c.status, c.created_at_ms, c.updated_at_ms, c.body,
                c.owner, 1, c.lease_until_ms
            FROM unnest(c_id, c_workflow_id, c_status, c_created_at_ms, c_updated_at_ms,
                        c_body, c_owner, c_lease_until_ms)
                AS c(id, workflow_id, status, created_at_ms, updated_at_ms, body, owner,
                     lease_until_ms)
            ON CONFLICT (id) DO NOTHING
            RETURNING orca_executions.id
        ), saved AS (
            -- The join key again as `e.id = ANY(...)`, so that the plan looks rows up by
            -- primary key: joined to `unnest` alone, the planner picks a hash join over a
            -- sequential scan whenever the table looks small.
            UPDATE orca_executions e
            SET workflow_id = s.workflow_id, status = s.status,
                updated_at_ms = s.updated_at_ms, body = s.body,
                owner = CASE WHEN s.release THEN NULL ELSE e.owner END,
                lease_until_ms = CASE WHEN s.release THEN 0 ELSE e.lease_until_ms END
            FROM unnest(s_id, s_fence, s_workflow_id, s_status, s_updated_at_ms, s_body,
                        s_release)
                AS s(id, fence, workflow_id, status, updated_at_ms, body, release)
            WHERE e.id = ANY(s_id) AND e.id = s.id AND e.fence = s.fence
            RETURNING e.id, e.created_at_ms
        )
        SELECT 'created'::text, created.id, 0::bigint FROM created
        UNION ALL SELECT 'saved', saved.id, saved.created_at_ms FROM saved
        UNION ALL SELECT 'fenced', x.id, 0 FROM orca_executions x
            WHERE x.id = ANY(s_id) AND x.id NOT IN (SELECT saved.id FROM saved);
    END $$;",
    // 6: `orca_write` again, its last part changed: which saves matched nothing is asked of
    // the table only for those saves. Before, it looked every save's row up once more by
    // primary key, only to drop the ones that were saved; with 8 saves a call and only CPU
    // counting (`synchronous_commit = off`), the function ran 3 to 18 % more calls a second
    // (bench/FINDINGS.md, section 4).
    "CREATE OR REPLACE FUNCTION orca_write(
            c_id text[], c_workflow_id text[], c_status text[], c_created_at_ms bigint[],
            c_updated_at_ms bigint[], c_body bytea[], c_owner text[], c_lease_until_ms bigint[],
            s_id text[], s_fence bigint[], s_workflow_id text[], s_status text[],
            s_updated_at_ms bigint[], s_body bytea[], s_release bool[])
        RETURNS TABLE (outcome text, id text, created_at_ms bigint)
        LANGUAGE plpgsql
        SET plan_cache_mode = force_generic_plan
    AS $$
    #variable_conflict use_column
    BEGIN
        RETURN QUERY WITH created AS (
            INSERT INTO orca_executions (id, workflow_id, status, created_at_ms,
                updated_at_ms, body, owner, fence, lease_until_ms)
            SELECT c.id, c.workflow_id, c.status, c.created_at_ms, c.updated_at_ms, c.body,
                c.owner, 1, c.lease_until_ms
            FROM unnest(c_id, c_workflow_id, c_status, c_created_at_ms, c_updated_at_ms,
                        c_body, c_owner, c_lease_until_ms)
                AS c(id, workflow_id, status, created_at_ms, updated_at_ms, body, owner,
                     lease_until_ms)
            ON CONFLICT (id) DO NOTHING
            RETURNING orca_executions.id
        ), saved AS (
            -- The join key again as `e.id = ANY(...)`, so that the plan looks rows up by
            -- primary key: joined to `unnest` alone, the planner picks a hash join over a
            -- sequential scan whenever the table looks small.
            UPDATE orca_executions e
            SET workflow_id = s.workflow_id, status = s.status,
                updated_at_ms = s.updated_at_ms, body = s.body,
                owner = CASE WHEN s.release THEN NULL ELSE e.owner END,
                lease_until_ms = CASE WHEN s.release THEN 0 ELSE e.lease_until_ms END
            FROM unnest(s_id, s_fence, s_workflow_id, s_status, s_updated_at_ms, s_body,
                        s_release)
                AS s(id, fence, workflow_id, status, updated_at_ms, body, release)
            WHERE e.id = ANY(s_id) AND e.id = s.id AND e.fence = s.fence
            RETURNING e.id, e.created_at_ms
        )
        SELECT 'created'::text, created.id, 0::bigint FROM created
        UNION ALL SELECT 'saved', saved.id, saved.created_at_ms FROM saved
        UNION ALL SELECT 'fenced', s.id, 0 FROM unnest(s_id) AS s(id)
            WHERE NOT EXISTS (SELECT 1 FROM saved WHERE saved.id = s.id)
              AND EXISTS (SELECT 1 FROM orca_executions x WHERE x.id = s.id);
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
