//! The Lua scripts behind the Redis store's conditional writes.
//!
//! Redis runs a script atomically, so "check the fence, then write" cannot interleave with
//! another client's claim; a MULTI/WATCH loop would do the same with more round trips.
//!
//! Key layout (after the configured prefix): `exec:<id>` a hash per execution (the record's
//! columns, `body`, and the lease: `owner`, `fence`, `lease_until_ms`); `index` a sorted set
//! of ids by `created_at_ms` for listing; `leases` a sorted set of held leases by expiry for
//! [`crate::LeaseStore::list_expired`]. The two sets are trimmed lazily of ids whose
//! hash has expired. Scripts touch keys derived from the prefix (passed as an argument), so
//! the store needs a single Redis node, not a cluster.

use std::sync::LazyLock;

use ::redis::Script;

/// KEYS: record, index, leases. ARGV: id, workflow_id, status, created_at_ms, updated_at_ms,
/// body, owner, lease_until_ms, ttl_ms, record key prefix. Returns 1, or 0 if the id exists.
/// Also drops up to ten of the oldest index entries whose record has expired, so the index
/// stays about as large as the live set without a sweeper.
pub(super) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'workflow_id', ARGV[2], 'status', ARGV[3],
  'created_at_ms', ARGV[4], 'updated_at_ms', ARGV[5], 'body', ARGV[6],
  'owner', ARGV[7], 'fence', 1, 'lease_until_ms', ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, 9)) do
  if redis.call('EXISTS', ARGV[10] .. old) == 0 then
    redis.call('ZREM', KEYS[2], old)
    redis.call('ZREM', KEYS[3], old)
  end
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[1])
return 1
",
    )
});

/// KEYS: record, leases. ARGV: fence, workflow_id, status, updated_at_ms, body, ttl_ms, id,
/// release (`1` to also give the lease up, as [`RELEASE`] does, or empty).
/// Returns `ok`, `missing` or `fenced`.
pub(super) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local fence = redis.call('HGET', KEYS[1], 'fence')
if not fence then return 'missing' end
if tonumber(fence) ~= tonumber(ARGV[1]) then return 'fenced' end
redis.call('HSET', KEYS[1], 'workflow_id', ARGV[2], 'status', ARGV[3],
  'updated_at_ms', ARGV[4], 'body', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if ARGV[8] == '1' then
  redis.call('HDEL', KEYS[1], 'owner')
  redis.call('HSET', KEYS[1], 'lease_until_ms', 0)
  redis.call('ZREM', KEYS[2], ARGV[7])
end
return 'ok'
",
    )
});

/// KEYS: record, leases. ARGV: id, owner, until_ms, now_ms, take_over fence or '', ttl_ms.
/// Returns the new fence, 0 if someone else holds the lease, -1 if the id is unknown.
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'owner', 'fence', 'lease_until_ms')
if not v[2] then return -1 end
local fence = tonumber(v[2])
local free = (not v[1]) or tonumber(v[3]) < tonumber(ARGV[4]) or v[1] == ARGV[2]
  or (ARGV[5] ~= '' and tonumber(ARGV[5]) == fence)
if not free then return 0 end
fence = fence + 1
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'fence', fence, 'lease_until_ms', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return fence
",
    )
});

/// KEYS: record, leases. ARGV: id, fence, until_ms, ttl_ms. Renewing also pushes the record's
/// expiry out, so an execution waiting on a long call is not dropped while it is driven.
/// Returns `ok`, `missing` or `fenced`.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'fence', 'owner')
if not v[1] then return 'missing' end
if tonumber(v[1]) ~= tonumber(ARGV[2]) then return 'fenced' end
redis.call('HSET', KEYS[1], 'lease_until_ms', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if v[2] then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
return 'ok'
",
    )
});

/// KEYS: record, leases. ARGV: id, fence. Returns `ok`, `missing` or `fenced`.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local fence = redis.call('HGET', KEYS[1], 'fence')
if not fence then return 'missing' end
if tonumber(fence) ~= tonumber(ARGV[2]) then return 'fenced' end
redis.call('HDEL', KEYS[1], 'owner')
redis.call('HSET', KEYS[1], 'lease_until_ms', 0)
redis.call('ZREM', KEYS[2], ARGV[1])
return 'ok'
",
    )
});

/// KEYS: leases. ARGV: owner, now_ms, until_ms, limit, ttl_ms, record key prefix. Claims, as
/// [`CLAIM`] does for one, up to `limit` leases that expired before `now_ms`, soonest-expired
/// first; returns `{id, fence}` pairs.
///
/// The expiry set is read in pages first and only changed afterwards, so the offsets stay
/// valid while paging. Its scores can be older than the hashes (trimmed lazily), so every
/// candidate is checked against its hash; ids whose hash expired or was released leave the
/// set on the way, as in `list_expired`.
pub(super) static CLAIM_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[4])
local page = 200
local picked, gone = {}, {}
local offset = 0
while #picked < limit do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', offset, page)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local v = redis.call('HMGET', ARGV[6] .. id, 'owner', 'fence', 'lease_until_ms')
    if not v[1] or not v[2] then
      table.insert(gone, id)
    elseif tonumber(v[3]) < now and #picked < limit then
      table.insert(picked, {id, tonumber(v[2])})
    end
  end
  offset = offset + page
end
for _, id in ipairs(gone) do redis.call('ZREM', KEYS[1], id) end
local claimed = {}
for _, p in ipairs(picked) do
  local key = ARGV[6] .. p[1]
  local fence = p[2] + 1
  redis.call('HSET', key, 'owner', ARGV[1], 'fence', fence, 'lease_until_ms', ARGV[3])
  redis.call('PEXPIRE', key, ARGV[5])
  redis.call('ZADD', KEYS[1], ARGV[3], p[1])
  table.insert(claimed, {p[1], fence})
end
return claimed
",
    )
});

/// The layered store's cache write. KEYS: record. ARGV: workflow_id, status, created_at_ms,
/// updated_at_ms, body, fence, ttl_ms, mode. Mode `newer` writes unless Redis holds a record
/// of a *higher* fence (a late write from an owner that was since fenced out); mode `absent`
/// writes only if there is no record (a read-through fill, which must not overwrite a save
/// that landed meanwhile). Returns 1 if written, 0 if not.
pub(super) static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('HGET', KEYS[1], 'fence')
if current and (ARGV[8] == 'absent' or tonumber(current) > tonumber(ARGV[6])) then
  return 0
end
redis.call('HSET', KEYS[1], 'workflow_id', ARGV[1], 'status', ARGV[2],
  'created_at_ms', ARGV[3], 'updated_at_ms', ARGV[4], 'body', ARGV[5], 'fence', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
",
    )
});
