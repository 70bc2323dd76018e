//! [`LeaseStore`] on PostgreSQL: each operation is one conditional `UPDATE` (a bulk claim
//! picks its rows with `FOR UPDATE SKIP LOCKED` first; see
//! [`PostgresStore::claim_expired_rows`]).
//!
//! Under READ COMMITTED, PostgreSQL re-checks an `UPDATE`'s `WHERE` clause against the newest
//! version of a row it had to wait for, so two claims racing for one expired lease serialize
//! on the row lock and exactly one of them matches.

use async_trait::async_trait;

use super::{COLUMNS, PostgresStore, pg_error, row_to_fenced};
use crate::{Claim, Fence, Lease, LeaseStore, StoreError, StoredExecution};

fn lease_of(id: String, row: &tokio_postgres::Row) -> Result<Option<Lease>, StoreError> {
    let owner: Option<String> = row.try_get("owner").map_err(pg_error)?;
    let Some(owner) = owner else {
        return Ok(None);
    };
    let fence: i64 = row.try_get("fence").map_err(pg_error)?;
    let until: i64 = row.try_get("lease_until_ms").map_err(pg_error)?;
    Ok(Some(Lease {
        execution_id: id,
        owner,
        fence: fence as Fence,
        until_ms: until as u64,
    }))
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn lease(&self, id: &str) -> Result<Option<Lease>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT owner, fence, lease_until_ms FROM orca_executions WHERE id = $1",
            )
            .await
            .map_err(pg_error)?;
        match client
            .query_opt(&statement, &[&id])
            .await
            .map_err(pg_error)?
        {
            Some(row) => lease_of(id.to_string(), &row),
            None => Ok(None),
        }
    }

    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<Option<Fence>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE orca_executions SET owner = $2, fence = fence + 1, lease_until_ms = $3
                 WHERE id = $1
                   AND (owner IS NULL OR lease_until_ms < $4 OR owner = $2 OR fence = $5)
                 RETURNING fence",
            )
            .await
            .map_err(pg_error)?;
        let take_over = claim.take_over.map(|f| f as i64);
        let row = client
            .query_opt(
                &statement,
                &[
                    &id,
                    &claim.owner,
                    &(claim.until_ms as i64),
                    &(claim.now_ms as i64),
                    &take_over,
                ],
            )
            .await
            .map_err(pg_error)?;
        match row {
            Some(row) => Ok(Some(row.try_get::<_, i64>(0).map_err(pg_error)? as Fence)),
            None if self.exists(&client, id).await? => Ok(None),
            None => Err(StoreError::NotFound(id.to_string())),
        }
    }

    async fn renew(&self, id: &str, fence: Fence, lease_until_ms: u64) -> Result<(), StoreError> {
        self.fenced(
            id,
            fence,
            "UPDATE orca_executions SET lease_until_ms = $3 WHERE id = $1 AND fence = $2",
            &[&(lease_until_ms as i64)],
        )
        .await
    }

    async fn release(&self, id: &str, fence: Fence) -> Result<(), StoreError> {
        self.fenced(
            id,
            fence,
            "UPDATE orca_executions SET owner = NULL, lease_until_ms = 0
             WHERE id = $1 AND fence = $2",
            &[],
        )
        .await
    }

    async fn list_expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT id, owner, fence, lease_until_ms FROM orca_executions
                 WHERE owner IS NOT NULL AND lease_until_ms < $1
                 ORDER BY lease_until_ms, id LIMIT $2",
            )
            .await
            .map_err(pg_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(&statement, &[&(now_ms as i64), &limit])
            .await
            .map_err(pg_error)?;
        let mut leases = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id").map_err(pg_error)?;
            leases.extend(lease_of(id, row)?);
        }
        Ok(leases)
    }

    /// The claimed records as the claim left them, soonest-expired first. `SKIP LOCKED` lets two
    /// processes recovering at once each take rows the other is not taking, instead of
    /// queueing behind each other's locks; a row claimed meanwhile is re-checked against the
    /// `WHERE` clause once locked, and dropped.
    async fn claim_expired(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(StoredExecution, Fence)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "WITH picked AS (
                     SELECT id, lease_until_ms FROM orca_executions
                     WHERE owner IS NOT NULL AND lease_until_ms < $1
                     ORDER BY lease_until_ms, id LIMIT $2
                     FOR UPDATE SKIP LOCKED
                 ), claimed AS (
                     UPDATE orca_executions e
                     SET owner = $3, fence = e.fence + 1, lease_until_ms = $4
                     FROM picked
                     WHERE e.id = picked.id
                     RETURNING e.*, picked.lease_until_ms AS expired_ms
                 )
                 SELECT {COLUMNS}, fence FROM claimed ORDER BY expired_ms, id"
            ))
            .await
            .map_err(pg_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &statement,
                &[&(now_ms as i64), &limit, &owner, &(until_ms as i64)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(row_to_fenced).collect()
    }
}
