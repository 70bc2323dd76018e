//! [`LeaseStore`] on SQLite: each operation is one conditional `UPDATE` (or, for a bulk
//! claim, one transaction), which SQLite runs under its database write lock, so it is atomic
//! across connections and processes.

use async_trait::async_trait;
use rusqlite::types::Value;
use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::{COLUMNS, SqliteStore, row_to_execution};
use crate::{Claim, Fence, Lease, LeaseStore, StoreError, StoredExecution};

fn lease_of(id: String, row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Lease>> {
    let Some(owner) = row.get::<_, Option<String>>(0)? else {
        return Ok(None);
    };
    Ok(Some(Lease {
        execution_id: id,
        owner,
        fence: row.get::<_, i64>(1)? as Fence,
        until_ms: row.get::<_, i64>(2)? as u64,
    }))
}

/// Why a fenced statement changed no row: the id is unknown, or the fence is stale.
pub(super) fn unchanged(conn: &Connection, id: &str, fence: Fence) -> rusqlite::Result<StoreError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?
        .exists([id])?;
    Ok(if exists {
        StoreError::Fenced {
            id: id.to_string(),
            fence,
        }
    } else {
        StoreError::NotFound(id.to_string())
    })
}

/// Runs a statement guarded by `WHERE id = ?1 AND fence = ?2`; no row changed is an error.
async fn fenced(
    store: &SqliteStore,
    id: &str,
    fence: Fence,
    sql: &'static str,
    extra: Vec<Value>,
) -> Result<(), StoreError> {
    let id = id.to_owned();
    store
        .with_conn(move |conn| {
            let mut args = vec![Value::Text(id.clone()), Value::Integer(fence as i64)];
            args.extend(extra);
            let changed = conn.prepare_cached(sql)?.execute(params_from_iter(args))?;
            (changed == 0)
                .then(|| unchanged(conn, &id, fence))
                .transpose()
        })
        .await?
        .map_or(Ok(()), Err)
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn lease(&self, id: &str) -> Result<Option<Lease>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "SELECT owner, fence, lease_until_ms FROM executions WHERE id = ?1",
            )?
            .query_row([&id], |row| lease_of(id.clone(), row))
            .optional()
            .map(Option::flatten)
        })
        .await
    }

    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<Option<Fence>, StoreError> {
        let id = id.to_owned();
        let owner = claim.owner.to_owned();
        let (until, now) = (claim.until_ms as i64, claim.now_ms as i64);
        let take_over = claim.take_over.map(|f| f as i64);
        self.with_conn(move |conn| {
            let fence: Option<i64> = conn
                .prepare_cached(
                    "UPDATE executions SET owner = ?2, fence = fence + 1, lease_until_ms = ?3
                         WHERE id = ?1 AND (owner IS NULL OR lease_until_ms < ?4 OR owner = ?2
                                            OR fence = ?5)
                         RETURNING fence",
                )?
                .query_row(params![id, owner, until, now, take_over], |row| row.get(0))
                .optional()?;
            if fence.is_some() {
                return Ok(Ok(fence.map(|f| f as Fence)));
            }
            let exists = conn
                .prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?
                .exists([&id])?;
            Ok(if exists {
                Ok(None)
            } else {
                Err(StoreError::NotFound(id))
            })
        })
        .await?
    }

    async fn renew(&self, id: &str, fence: Fence, lease_until_ms: u64) -> Result<(), StoreError> {
        fenced(
            self,
            id,
            fence,
            "UPDATE executions SET lease_until_ms = ?3 WHERE id = ?1 AND fence = ?2",
            vec![Value::Integer(lease_until_ms as i64)],
        )
        .await
    }

    async fn release(&self, id: &str, fence: Fence) -> Result<(), StoreError> {
        fenced(
            self,
            id,
            fence,
            "UPDATE executions SET owner = NULL, lease_until_ms = 0 WHERE id = ?1 AND fence = ?2",
            Vec::new(),
        )
        .await
    }

    async fn list_expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT owner, fence, lease_until_ms, id FROM executions
                 WHERE owner IS NOT NULL AND lease_until_ms < ?1
                 ORDER BY lease_until_ms, id LIMIT ?2",
            )?;
            let rows = statement.query_map(params![now_ms as i64, limit], |row| {
                lease_of(row.get(3)?, row)
            })?;
            rows.filter_map(Result::transpose).collect()
        })
        .await
    }

    /// The candidates are picked and updated by one statement under the write lock, so no
    /// other connection can claim one in between. `RETURNING` comes back in no particular
    /// order and cannot show the old expiry, so the same selection, read first in the same
    /// transaction, gives the order.
    async fn claim_expired(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(StoredExecution, Fence)>, StoreError> {
        const EXPIRED: &str = "SELECT id FROM executions
             WHERE owner IS NOT NULL AND lease_until_ms < ?1
             ORDER BY lease_until_ms, id LIMIT ?2";
        let owner = owner.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (now, until) = (now_ms as i64, until_ms as i64);
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let order: Vec<String> = tx
                .prepare_cached(EXPIRED)?
                .query_map(params![now, limit], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut claimed: HashMap<String, (StoredExecution, Fence)> = tx
                .prepare_cached(&format!(
                    "UPDATE executions SET owner = ?3, fence = fence + 1, lease_until_ms = ?4
                     WHERE id IN ({EXPIRED})
                     RETURNING {COLUMNS}, fence"
                ))?
                .query_map(params![now, limit, owner, until], |row| {
                    let fence: i64 = row.get(6)?;
                    Ok((row.get(0)?, (row_to_execution(row)?, fence as Fence)))
                })?
                .collect::<rusqlite::Result<_>>()?;
            tx.commit()?;
            Ok(order
                .into_iter()
                .filter_map(|id| claimed.remove(&id))
                .collect())
        })
        .await
    }
}
