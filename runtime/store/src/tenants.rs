//! What the server keeps per tenant besides executions: tenants, hashed tokens, applied
//! definitions (versioned) and the components each tenant uploaded.
//!
//! One narrow trait, [`TenantStore`], with a SQLite implementation that serves both the
//! `sqlite:` store (tables beside the executions, in the same file) and the `memory` store
//! (a private in-memory database).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::{Changes, StoreError, sqlite};
use orca_definition::Kind;

const BACKEND: &str = "sqlite (tenants)";

/// A document as applied: one version of one named definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredDefinition {
    pub name: String,
    pub kind: String,
    pub version: u32,
    /// The YAML of this one document.
    pub yaml: String,
    pub created_at_ms: u64,
}

/// A document to store as the next version of its name.
#[derive(Debug, Clone)]
pub struct NewDefinition {
    pub name: String,
    pub kind: String,
    pub yaml: String,
}

/// A component a tenant uploaded; the bytes live in the content-addressed blob store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentMeta {
    pub digest: String,
    pub size: u64,
    pub exports_step: bool,
    pub exports_condition: bool,
    pub created_at_ms: u64,
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    /// False if the tenant already existed.
    async fn create_tenant(&self, tenant: &str, now_ms: u64) -> Result<bool, StoreError>;
    async fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError>;
    /// Stores the sha256 (hex) of a new token of `tenant`.
    async fn add_token(&self, tenant: &str, token_sha256: &str) -> Result<(), StoreError>;
    async fn tenant_of_token(&self, token_sha256: &str) -> Result<Option<String>, StoreError>;

    /// Stores every document as the next version of its name, all or nothing.
    async fn apply(
        &self,
        tenant: &str,
        documents: Vec<NewDefinition>,
        now_ms: u64,
    ) -> Result<Vec<StoredDefinition>, StoreError>;
    /// The latest version of each name.
    async fn definitions(&self, tenant: &str) -> Result<Vec<StoredDefinition>, StoreError>;
    /// One version of `name` (the latest when `version` is `None`).
    async fn definition(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError>;
    /// Deletes every version of `name`; false if there was none.
    async fn delete_definition(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    async fn put_component(&self, tenant: &str, meta: &ComponentMeta) -> Result<(), StoreError>;
    async fn components(&self, tenant: &str) -> Result<Vec<ComponentMeta>, StoreError>;
    async fn component(
        &self,
        tenant: &str,
        digest: &str,
    ) -> Result<Option<ComponentMeta>, StoreError>;
    async fn delete_component(&self, tenant: &str, digest: &str) -> Result<bool, StoreError>;

    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Where this process hears that a tenant's definitions or components changed, here or
    /// in another process sharing the store: under [`workflow_key`] for one workflow's
    /// versions, under [`shared_key`] for what any workflow of the tenant may use
    /// (services, components, configuration) and for a deleted name.
    fn changes(&self) -> &Arc<Changes>;
}

/// The key a change of workflow `workflow` of `tenant` is announced under.
pub fn workflow_key(tenant: &str, workflow: &str) -> String {
    // Names never hold a `/` (DNS-1123), so no two keys collide.
    format!("{tenant}/{workflow}")
}

/// The key a change that may touch every workflow of `tenant` is announced under.
pub fn shared_key(tenant: &str) -> String {
    tenant.to_string()
}

/// The keys applying `documents` to `tenant` changes.
pub(crate) fn applied_keys(tenant: &str, documents: &[StoredDefinition]) -> Vec<String> {
    let mut keys: Vec<String> = documents
        .iter()
        .map(|doc| {
            if Kind::parse(&doc.kind).is_some_and(Kind::is_workflow) {
                workflow_key(tenant, &doc.name)
            } else {
                shared_key(tenant)
            }
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The keys deleting `name` of `tenant` changes: its own, and the shared one, since the
/// store no longer knows what kind it was.
pub(crate) fn deleted_keys(tenant: &str, name: &str) -> Vec<String> {
    vec![workflow_key(tenant, name), shared_key(tenant)]
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS tenants (
        name          TEXT PRIMARY KEY,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS tenant_tokens (
        sha256 TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants(name)
    );
    CREATE TABLE IF NOT EXISTS tenant_definitions (
        tenant        TEXT NOT NULL,
        name          TEXT NOT NULL,
        version       INTEGER NOT NULL,
        kind          TEXT NOT NULL,
        yaml          TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, name, version)
    );
    CREATE TABLE IF NOT EXISTS tenant_components (
        tenant            TEXT NOT NULL,
        digest            TEXT NOT NULL,
        size              INTEGER NOT NULL,
        exports_step      INTEGER NOT NULL,
        exports_condition INTEGER NOT NULL,
        created_at_ms     INTEGER NOT NULL,
        PRIMARY KEY (tenant, digest)
    );";

/// Announces `keys` in this process (a SQLite file has one).
fn announce(changes: &Changes, keys: Vec<String>) {
    for key in keys {
        changes.announce(&key, false);
    }
}

/// [`TenantStore`] on SQLite.
#[derive(Clone)]
pub struct SqliteTenants {
    // Only locked inside `spawn_blocking`, never across an await.
    conn: Arc<Mutex<Connection>>,
    changes: Arc<Changes>,
}

fn sqlite_error(e: rusqlite::Error) -> StoreError {
    StoreError::backend(BACKEND, e)
}

impl SqliteTenants {
    /// Opens the database file (the executions' file: these tables live beside theirs).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::with(sqlite::open_file(path, BACKEND)?)
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with(Connection::open_in_memory().map_err(sqlite_error)?)
    }

    fn with(conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(SCHEMA).map_err(sqlite_error)?;
        Ok(SqliteTenants {
            conn: Arc::new(Mutex::new(conn)),
            changes: Changes::local(),
        })
    }

    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            op(&mut conn)
        })
        .await
        .map_err(|e| StoreError::backend(BACKEND, e))?
        .map_err(sqlite_error)
    }
}

fn definition_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDefinition> {
    Ok(StoredDefinition {
        name: row.get(0)?,
        kind: row.get(1)?,
        version: row.get(2)?,
        yaml: row.get(3)?,
        created_at_ms: row.get::<_, i64>(4)? as u64,
    })
}

fn component_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ComponentMeta> {
    Ok(ComponentMeta {
        digest: row.get(0)?,
        size: row.get::<_, i64>(1)? as u64,
        exports_step: row.get(2)?,
        exports_condition: row.get(3)?,
        created_at_ms: row.get::<_, i64>(4)? as u64,
    })
}

const DEFINITION_COLUMNS: &str = "name, kind, version, yaml, created_at_ms";
const COMPONENT_COLUMNS: &str = "digest, size, exports_step, exports_condition, created_at_ms";

#[async_trait]
impl TenantStore for SqliteTenants {
    async fn create_tenant(&self, tenant: &str, now_ms: u64) -> Result<bool, StoreError> {
        let tenant = tenant.to_string();
        self.run(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO tenants (name, created_at_ms) VALUES (?1, ?2)",
                params![tenant, now_ms as i64],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError> {
        let tenant = tenant.to_string();
        self.run(move |c| {
            c.query_row(
                "SELECT 1 FROM tenants WHERE name = ?1",
                [tenant],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
        })
        .await
    }

    async fn add_token(&self, tenant: &str, token_sha256: &str) -> Result<(), StoreError> {
        let (tenant, hash) = (tenant.to_string(), token_sha256.to_string());
        self.run(move |c| {
            c.execute(
                "INSERT INTO tenant_tokens (sha256, tenant) VALUES (?1, ?2)",
                params![hash, tenant],
            )
            .map(|_| ())
        })
        .await
    }

    async fn tenant_of_token(&self, token_sha256: &str) -> Result<Option<String>, StoreError> {
        let hash = token_sha256.to_string();
        self.run(move |c| {
            c.query_row(
                "SELECT tenant FROM tenant_tokens WHERE sha256 = ?1",
                [hash],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn apply(
        &self,
        tenant: &str,
        documents: Vec<NewDefinition>,
        now_ms: u64,
    ) -> Result<Vec<StoredDefinition>, StoreError> {
        let owner = tenant;
        let tenant = tenant.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            let mut stored = Vec::new();
            for doc in documents {
                let latest: u32 = tx.query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM tenant_definitions
                     WHERE tenant = ?1 AND name = ?2",
                    params![tenant, doc.name],
                    |r| r.get(0),
                )?;
                let version = latest + 1;
                tx.execute(
                    "INSERT INTO tenant_definitions (tenant, name, version, kind, yaml, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![tenant, doc.name, version, doc.kind, doc.yaml, now_ms as i64],
                )?;
                stored.push(StoredDefinition {
                    name: doc.name,
                    kind: doc.kind,
                    version,
                    yaml: doc.yaml,
                    created_at_ms: now_ms,
                });
            }
            tx.commit()?;
            Ok(stored)
        })
        .await
        .inspect(|stored| announce(&self.changes, applied_keys(owner, stored)))
    }

    async fn definitions(&self, tenant: &str) -> Result<Vec<StoredDefinition>, StoreError> {
        let tenant = tenant.to_string();
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {DEFINITION_COLUMNS} FROM tenant_definitions d
                 WHERE tenant = ?1 AND version = (SELECT MAX(version) FROM tenant_definitions
                     WHERE tenant = d.tenant AND name = d.name)
                 ORDER BY name"
            ))?;
            stmt.query_map([tenant], definition_row)?.collect()
        })
        .await
    }

    async fn definition(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.run(move |c| {
            c.query_row(
                &format!(
                    "SELECT {DEFINITION_COLUMNS} FROM tenant_definitions
                     WHERE tenant = ?1 AND name = ?2 AND (?3 IS NULL OR version = ?3)
                     ORDER BY version DESC LIMIT 1"
                ),
                params![tenant, name, version],
                definition_row,
            )
            .optional()
        })
        .await
    }

    async fn delete_definition(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let keys = deleted_keys(tenant, name);
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.run(move |c| {
            c.execute(
                "DELETE FROM tenant_definitions WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
            )
            .map(|n| n > 0)
        })
        .await
        .inspect(|_| announce(&self.changes, keys))
    }

    async fn put_component(&self, tenant: &str, meta: &ComponentMeta) -> Result<(), StoreError> {
        let keys = vec![shared_key(tenant)];
        let (tenant, m) = (tenant.to_string(), meta.clone());
        self.run(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO tenant_components
                 (tenant, digest, size, exports_step, exports_condition, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    tenant,
                    m.digest,
                    m.size as i64,
                    m.exports_step,
                    m.exports_condition,
                    m.created_at_ms as i64
                ],
            )
            .map(|_| ())
        })
        .await
        .inspect(|()| announce(&self.changes, keys))
    }

    async fn components(&self, tenant: &str) -> Result<Vec<ComponentMeta>, StoreError> {
        let tenant = tenant.to_string();
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COMPONENT_COLUMNS} FROM tenant_components WHERE tenant = ?1
                 ORDER BY created_at_ms, digest"
            ))?;
            stmt.query_map([tenant], component_row)?.collect()
        })
        .await
    }

    async fn component(
        &self,
        tenant: &str,
        digest: &str,
    ) -> Result<Option<ComponentMeta>, StoreError> {
        let (tenant, digest) = (tenant.to_string(), digest.to_string());
        self.run(move |c| {
            c.query_row(
                &format!(
                    "SELECT {COMPONENT_COLUMNS} FROM tenant_components
                     WHERE tenant = ?1 AND digest = ?2"
                ),
                params![tenant, digest],
                component_row,
            )
            .optional()
        })
        .await
    }

    async fn delete_component(&self, tenant: &str, digest: &str) -> Result<bool, StoreError> {
        let keys = vec![shared_key(tenant)];
        let (tenant, digest) = (tenant.to_string(), digest.to_string());
        self.run(move |c| {
            c.execute(
                "DELETE FROM tenant_components WHERE tenant = ?1 AND digest = ?2",
                params![tenant, digest],
            )
            .map(|n| n > 0)
        })
        .await
        .inspect(|_| announce(&self.changes, keys))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    fn changes(&self) -> &Arc<Changes> {
        &self.changes
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// What every [`TenantStore`] must do.
    pub(crate) async fn conformance(s: &dyn TenantStore) {
        assert!(s.create_tenant("a", 1).await.unwrap());
        assert!(!s.create_tenant("a", 2).await.unwrap());
        assert!(s.tenant_exists("a").await.unwrap());
        assert!(!s.tenant_exists("b").await.unwrap());
        s.add_token("a", "hash-a").await.unwrap();
        assert_eq!(
            s.tenant_of_token("hash-a").await.unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(s.tenant_of_token("nope").await.unwrap(), None);

        let doc = |name: &str| NewDefinition {
            name: name.into(),
            kind: "Services".into(),
            yaml: format!("# {name}"),
        };
        s.apply("a", vec![doc("x"), doc("y")], 1).await.unwrap();
        let again = s.apply("a", vec![doc("x")], 2).await.unwrap();
        assert_eq!(again[0].version, 2);
        let latest = s.definitions("a").await.unwrap();
        assert_eq!(latest.len(), 2);
        assert_eq!((latest[0].name.as_str(), latest[0].version), ("x", 2));
        assert_eq!(
            s.definition("a", "x", Some(1))
                .await
                .unwrap()
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            s.definition("a", "x", None).await.unwrap().unwrap().version,
            2
        );
        assert!(s.definition("b", "x", None).await.unwrap().is_none());
        assert!(s.delete_definition("a", "x").await.unwrap());
        assert!(!s.delete_definition("a", "x").await.unwrap());
        assert!(s.definition("a", "x", None).await.unwrap().is_none());

        let meta = ComponentMeta {
            digest: "sha256:00".into(),
            size: 3,
            exports_step: true,
            exports_condition: false,
            created_at_ms: 5,
        };
        s.put_component("a", &meta).await.unwrap();
        s.put_component("a", &meta).await.unwrap();
        assert_eq!(s.components("a").await.unwrap(), vec![meta.clone()]);
        assert_eq!(s.component("a", "sha256:00").await.unwrap(), Some(meta));
        assert_eq!(s.component("b", "sha256:00").await.unwrap(), None);
        assert!(!s.delete_component("b", "sha256:00").await.unwrap());
        assert!(s.delete_component("a", "sha256:00").await.unwrap());
        s.ping().await.unwrap();
    }

    #[tokio::test]
    async fn conforms_on_sqlite() {
        conformance(&SqliteTenants::in_memory().unwrap()).await;
    }
}
