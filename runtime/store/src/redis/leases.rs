//! [`LeaseStore`] on Redis: the lease lives in the record's hash, so checking the fence and
//! writing the record are one script; a sorted set by expiry answers `list_expired` and
//! `claim_expired`.

use async_trait::async_trait;

use super::{RedisStore, fenced_outcome, redis_error, scripts};
use crate::{Claim, Fence, Lease, LeaseStore, StoreError, StoredExecution};

use ::redis::AsyncCommands;

type LeaseFields = (Option<String>, Option<u64>, Option<u64>);

fn lease_of(id: &str, (owner, fence, until): LeaseFields) -> Option<Lease> {
    Some(Lease {
        execution_id: id.to_string(),
        owner: owner?,
        fence: fence?,
        until_ms: until.unwrap_or(0),
    })
}

impl RedisStore {
    async fn lease_fields(&self, id: &str) -> Result<LeaseFields, StoreError> {
        self.conn
            .clone()
            .hmget(self.record_key(id), &["owner", "fence", "lease_until_ms"])
            .await
            .map_err(redis_error)
    }
}

#[async_trait]
impl LeaseStore for RedisStore {
    async fn lease(&self, id: &str) -> Result<Option<Lease>, StoreError> {
        Ok(lease_of(id, self.lease_fields(id).await?))
    }

    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<Option<Fence>, StoreError> {
        let take_over = claim.take_over.map(|f| f.to_string()).unwrap_or_default();
        let fence: i64 = scripts::CLAIM
            .key(self.record_key(id))
            .key(self.leases_key())
            .arg(id)
            .arg(claim.owner)
            .arg(claim.until_ms)
            .arg(claim.now_ms)
            .arg(take_over)
            .arg(self.ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        match fence {
            -1 => Err(StoreError::NotFound(id.to_string())),
            0 => Ok(None),
            fence => Ok(Some(fence as Fence)),
        }
    }

    async fn renew(&self, id: &str, fence: Fence, lease_until_ms: u64) -> Result<(), StoreError> {
        let reply: String = scripts::RENEW
            .key(self.record_key(id))
            .key(self.leases_key())
            .arg(id)
            .arg(fence)
            .arg(lease_until_ms)
            .arg(self.ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        fenced_outcome(&reply, id, fence)
    }

    async fn release(&self, id: &str, fence: Fence) -> Result<(), StoreError> {
        let reply: String = scripts::RELEASE
            .key(self.record_key(id))
            .key(self.leases_key())
            .arg(id)
            .arg(fence)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        fenced_outcome(&reply, id, fence)
    }

    async fn list_expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let mut leases = Vec::new();
        let mut offset = 0isize;
        while leases.len() < limit {
            let ids: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
                .arg(self.leases_key())
                .arg("-inf")
                .arg(format!("({now_ms}"))
                .arg("LIMIT")
                .arg(offset)
                .arg(super::PAGE)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(redis_error)?;
            if ids.is_empty() {
                break;
            }
            let mut pipe = ::redis::pipe();
            for id in &ids {
                pipe.hmget(self.record_key(id), &["owner", "fence", "lease_until_ms"]);
            }
            let fields: Vec<LeaseFields> = pipe
                .query_async(&mut self.conn.clone())
                .await
                .map_err(redis_error)?;
            let mut gone = Vec::new();
            for (id, fields) in ids.iter().zip(fields) {
                match lease_of(id, fields) {
                    Some(lease) if lease.expired_at(now_ms) && leases.len() < limit => {
                        leases.push(lease)
                    }
                    Some(_) => {}
                    // Expired with its record, or released: not a lease anyone holds.
                    None => gone.push(id.clone()),
                }
            }
            offset += super::PAGE - gone.len() as isize;
            if !gone.is_empty() {
                let _: () = self
                    .conn
                    .clone()
                    .zrem(self.leases_key(), &gone)
                    .await
                    .map_err(redis_error)?;
            }
        }
        Ok(leases)
    }

    /// One script over the expiry set, so the whole claim is atomic like a single one.
    async fn claim_expired(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(StoredExecution, Fence)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (ids, fences): (Vec<String>, Vec<Fence>) = scripts::CLAIM_EXPIRED
            .key(self.leases_key())
            .arg(owner)
            .arg(now_ms)
            .arg(until_ms)
            .arg(limit)
            .arg(self.ttl_ms)
            .arg(self.record_key(""))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)
            .map(|claimed: Vec<(String, Fence)>| claimed.into_iter().unzip())?;
        // Read after the claim, in one round trip: the new fences keep every earlier owner
        // from writing in between. A record that expired in between has nothing to resume.
        let records = self.records(&ids).await?;
        Ok(records
            .into_iter()
            .zip(fences)
            .filter_map(|(record, fence)| Some((record?, fence)))
            .collect())
    }
}
