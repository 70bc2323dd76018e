//! [`TenantStore`] on PostgreSQL, beside the executions of a `postgresql://` store (or the
//! persistence of a Redis one): tables `orca_tenants`, `orca_tenant_tokens`,
//! `orca_tenant_definitions` and `orca_tenant_components`.

use async_trait::async_trait;
use deadpool_postgres::Pool;

use std::sync::Arc;

use crate::postgres::notices;
use crate::tenants::{
    ComponentMeta, NewDefinition, StoredDefinition, TenantStore, applied_keys, deleted_keys,
    shared_key,
};
use crate::{Changes, PostgresConfig, StoreError};

const BACKEND: &str = "postgresql (tenants)";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS orca_tenants (
        name          TEXT PRIMARY KEY,
        created_at_ms BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS orca_tenant_tokens (
        sha256 TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES orca_tenants(name)
    );
    CREATE TABLE IF NOT EXISTS orca_tenant_definitions (
        tenant        TEXT NOT NULL,
        name          TEXT NOT NULL,
        version       INTEGER NOT NULL,
        kind          TEXT NOT NULL,
        yaml          TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, name, version)
    );
    CREATE TABLE IF NOT EXISTS orca_tenant_components (
        tenant            TEXT NOT NULL,
        digest            TEXT NOT NULL,
        size              BIGINT NOT NULL,
        exports_step      BOOLEAN NOT NULL,
        exports_condition BOOLEAN NOT NULL,
        created_at_ms     BIGINT NOT NULL,
        PRIMARY KEY (tenant, digest)
    );";

fn pg_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::backend(BACKEND, e)
}

pub struct PostgresTenants {
    pool: Pool,
    changes: Arc<Changes>,
    channel: String,
}

impl PostgresTenants {
    pub async fn open(config: &PostgresConfig) -> Result<Self, StoreError> {
        // The same pool settings as the execution store (schema, timeouts, size).
        let pool = crate::postgres_pool(config)?;
        let channel = notices::channel(config, "definitions");
        let store = PostgresTenants {
            pool,
            changes: notices::changes(config, channel.clone())?,
            channel,
        };
        let client = store.client().await?;
        if let Some(schema) = &config.schema {
            // A plain lower-case identifier (checked when the config was parsed).
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(pg_error)?;
        }
        client.batch_execute(SCHEMA).await.map_err(pg_error)?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(pg_error)
    }

    /// Announces `keys` here, and to the other processes on the database.
    fn announce(&self, keys: Vec<String>) {
        for key in &keys {
            self.changes.announce(key, false);
        }
        let messages = self
            .changes
            .messages(keys.iter().map(|k| (k.as_str(), false)));
        notices::send(&self.pool, &self.channel, messages);
    }
}

fn definition(row: &tokio_postgres::Row) -> StoredDefinition {
    StoredDefinition {
        name: row.get(0),
        kind: row.get(1),
        version: row.get::<_, i32>(2) as u32,
        yaml: row.get(3),
        created_at_ms: row.get::<_, i64>(4) as u64,
    }
}

fn component(row: &tokio_postgres::Row) -> ComponentMeta {
    ComponentMeta {
        digest: row.get(0),
        size: row.get::<_, i64>(1) as u64,
        exports_step: row.get(2),
        exports_condition: row.get(3),
        created_at_ms: row.get::<_, i64>(4) as u64,
    }
}

const DEFINITION_COLUMNS: &str = "name, kind, version, yaml, created_at_ms";
const COMPONENT_COLUMNS: &str = "digest, size, exports_step, exports_condition, created_at_ms";

#[async_trait]
impl TenantStore for PostgresTenants {
    async fn create_tenant(&self, tenant: &str, now_ms: u64) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO orca_tenants (name, created_at_ms) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&tenant, &(now_ms as i64)],
            )
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    async fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT 1 FROM orca_tenants WHERE name = $1", &[&tenant])
            .await
            .map_err(pg_error)?;
        Ok(row.is_some())
    }

    async fn add_token(&self, tenant: &str, token_sha256: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO orca_tenant_tokens (sha256, tenant) VALUES ($1, $2)",
                &[&token_sha256, &tenant],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn tenant_of_token(&self, token_sha256: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT tenant FROM orca_tenant_tokens WHERE sha256 = $1",
                &[&token_sha256],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn apply(
        &self,
        tenant: &str,
        documents: Vec<NewDefinition>,
        now_ms: u64,
    ) -> Result<Vec<StoredDefinition>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // One apply at a time per tenant, so two cannot take the same version number.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&tenant])
            .await
            .map_err(pg_error)?;
        let mut stored = Vec::new();
        for doc in documents {
            let latest: i32 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM orca_tenant_definitions
                     WHERE tenant = $1 AND name = $2",
                    &[&tenant, &doc.name],
                )
                .await
                .map_err(pg_error)?
                .get(0);
            let version = latest + 1;
            tx.execute(
                "INSERT INTO orca_tenant_definitions
                 (tenant, name, version, kind, yaml, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &tenant,
                    &doc.name,
                    &version,
                    &doc.kind,
                    &doc.yaml,
                    &(now_ms as i64),
                ],
            )
            .await
            .map_err(pg_error)?;
            stored.push(StoredDefinition {
                name: doc.name,
                kind: doc.kind,
                version: version as u32,
                yaml: doc.yaml,
                created_at_ms: now_ms,
            });
        }
        tx.commit().await.map_err(pg_error)?;
        self.announce(applied_keys(tenant, &stored));
        Ok(stored)
    }

    async fn definitions(&self, tenant: &str) -> Result<Vec<StoredDefinition>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT DISTINCT ON (name) {DEFINITION_COLUMNS} FROM orca_tenant_definitions
                     WHERE tenant = $1 ORDER BY name, version DESC"
                ),
                &[&tenant],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(definition).collect())
    }

    async fn definition(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        let version = version.map(|v| v as i32);
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {DEFINITION_COLUMNS} FROM orca_tenant_definitions
                     WHERE tenant = $1 AND name = $2 AND ($3::INTEGER IS NULL OR version = $3)
                     ORDER BY version DESC LIMIT 1"
                ),
                &[&tenant, &name, &version],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.as_ref().map(definition))
    }

    async fn delete_definition(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM orca_tenant_definitions WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(pg_error)?;
        self.announce(deleted_keys(tenant, name));
        Ok(n > 0)
    }

    async fn put_component(&self, tenant: &str, meta: &ComponentMeta) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO orca_tenant_components
                 (tenant, digest, size, exports_step, exports_condition, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &tenant,
                    &meta.digest,
                    &(meta.size as i64),
                    &meta.exports_step,
                    &meta.exports_condition,
                    &(meta.created_at_ms as i64),
                ],
            )
            .await
            .map_err(pg_error)?;
        self.announce(vec![shared_key(tenant)]);
        Ok(())
    }

    async fn components(&self, tenant: &str) -> Result<Vec<ComponentMeta>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COMPONENT_COLUMNS} FROM orca_tenant_components WHERE tenant = $1
                     ORDER BY created_at_ms, digest"
                ),
                &[&tenant],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(component).collect())
    }

    async fn component(
        &self,
        tenant: &str,
        digest: &str,
    ) -> Result<Option<ComponentMeta>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {COMPONENT_COLUMNS} FROM orca_tenant_components
                     WHERE tenant = $1 AND digest = $2"
                ),
                &[&tenant, &digest],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.as_ref().map(component))
    }

    async fn delete_component(&self, tenant: &str, digest: &str) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM orca_tenant_components WHERE tenant = $1 AND digest = $2",
                &[&tenant, &digest],
            )
            .await
            .map_err(pg_error)?;
        self.announce(vec![shared_key(tenant)]);
        Ok(n > 0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client()
            .await?
            .simple_query("SELECT 1")
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    fn changes(&self) -> &Arc<Changes> {
        &self.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conforms_on_postgresql() {
        let url = std::env::var("ORCA_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1/test".to_string());
        let schema = format!("orca_test_tenants_{}", uuid::Uuid::new_v4().simple());
        let config = PostgresConfig {
            url: url.clone(),
            schema: Some(schema.clone()),
        };
        let store = PostgresTenants::open(&config).await.unwrap();
        let outcome = tokio::spawn(async move {
            crate::tenants::tests::conformance(&store).await;
        })
        .await;
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
        outcome.unwrap();
    }
}
