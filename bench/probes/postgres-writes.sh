#!/usr/bin/env bash
# What a durable save costs inside PostgreSQL, apart from Orca's process: pgbench runs the
# statements the PostgreSQL store sends, against Orca's own schema (made by `orca` itself in
# a scratch database), beside the hand-written floor of section 4 and variants that tell
# which part of the schema costs what. The findings are in bench/FINDINGS.md, section 4.
#
#   bench/probes/postgres-writes.sh [ORCA_BINARY] [SERVER_URL]
#
# SERVER_URL defaults to postgresql://postgres@127.0.0.1 (a database name is added).
# Takes about 3 minutes; the scratch database is dropped at the end.
set -euo pipefail

orca=${1:-${CARGO_TARGET_DIR:-target}/debug/orca}
server=${2:-postgresql://postgres@127.0.0.1}
db=orca_probe_$$
rounds=${ROUNDS:-3}
work=$(mktemp -d)
trap 'psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; rm -rf "$work"' EXIT

psql -q "$server/postgres" -c "CREATE DATABASE $db"
url="$server/$db"
# Opening the store applies the migrations: the tables, indexes and functions are Orca's.
"$orca" executions list --store "$url" >/dev/null

psql -q "$url" <<'SQL'
-- The floor's table (bench/src/durable.rs, postgres_by_hand).
CREATE TABLE hand (id text PRIMARY KEY, body bytea NOT NULL);
-- Orca's table without its four secondary indexes.
CREATE TABLE bare (LIKE orca_executions INCLUDING DEFAULTS INCLUDING STORAGE
    INCLUDING COMPRESSION) WITH (fillfactor = 50);
ALTER TABLE bare ADD PRIMARY KEY (id);
-- Rows for the saves of the throughput runs to update.
INSERT INTO orca_executions (id, workflow_id, status, created_at_ms, updated_at_ms, body,
        owner, fence, lease_until_ms)
    SELECT 'e' || g, 'wf', 'running', g, g,
        convert_to(repeat(md5(g::text) || '{"a":1},', 80), 'UTF8'), 'me', 1, 9e15
    FROM generate_series(1, 100000) g;
VACUUM ANALYZE;
SQL

# A record of about Orca's size (3 KB of JSON), different in every write.
body() { echo "convert_to(repeat('{\"step\":\"$1\",\"result\":{\"ok\":true,\"n\":' || :i || '}},', 70), 'UTF8')"; }

# One workflow's 4 commits as the PostgreSQL store sends them at c=1 (write_one): the INSERT
# that creates it, two saves, and the last save, which sets the final status and releases
# the lease. $1 the table, $2 the final status, $3 whether the last save releases.
workflow() {
  local save="UPDATE $1 SET workflow_id = 'wf', status = '%s', updated_at_ms = :i, body = %s,
      owner = CASE WHEN %s THEN NULL ELSE owner END,
      lease_until_ms = CASE WHEN %s THEN 0 ELSE lease_until_ms END
      WHERE id = 'n' || :i AND fence = 1 RETURNING created_at_ms;"
  echo '\set i random(1, 2000000000)'
  echo "INSERT INTO $1 (id, workflow_id, status, created_at_ms, updated_at_ms, body, owner,
      fence, lease_until_ms) VALUES ('n' || :i, 'wf', 'running', :i, :i, $(body s0), 'me', 1,
      9e15) ON CONFLICT (id) DO NOTHING;"
  # shellcheck disable=SC2059
  printf "$save\n" running "$(body s1)" false false
  # shellcheck disable=SC2059
  printf "$save\n" running "$(body s2)" false false
  # shellcheck disable=SC2059
  printf "$save\n" "$2" "$(body s3)" "$3" "$3"
}
workflow orca_executions completed true >"$work/orca.sql"
workflow orca_executions running false >"$work/orca-hot.sql"
workflow bare completed true >"$work/bare.sql"
{
  echo '\set i random(1, 2000000000)'
  echo "INSERT INTO hand (id, body) VALUES ('n' || :i, convert_to(repeat('x', 2048), 'UTF8'));"
  for step in 1 2 3; do
    echo "UPDATE hand SET body = convert_to('$step' || repeat('x', 2047), 'UTF8') WHERE id = 'n' || :i;"
  done
} >"$work/hand.sql"

# One save of a body of $1 bytes to an existing row.
for size in 600 2800; do
  {
    echo '\set i random(1, 100000)'
    echo "UPDATE orca_executions SET updated_at_ms = :i,
        body = convert_to(repeat(md5(random()::text) || '{\"step\":\"x\"},', $((size / 44))), 'UTF8')
        WHERE id = 'e' || :i AND fence = 1;"
  } >"$work/size-$size.sql"
done

# One call of orca_write, the statement of a batch under load, carrying $1 saves of a
# record of about $2 bytes.
batch() {
  python3 - "$1" "$2" <<'PY'
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
for k in range(n):
    print("\\set i%d random(1, 100000)" % k)
arr = lambda v: "ARRAY[" + ",".join([v] * n) + "]"
ids = "ARRAY[" + ",".join("'e' || :i%d" % k for k in range(n)) + "]"
body = "convert_to(repeat(md5(random()::text) || '{\"step\":\"x\"},', %d), 'UTF8')" % (size // 44)
print("SELECT count(*) FROM orca_write('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', "
      "%s, %s, %s, %s, %s, %s, %s);" % (ids, arr("1::bigint"), arr("'wf'"), arr("'running'"),
      arr("1::bigint"), "ARRAY[" + ",".join([body] * n) + "]", arr("false")))
PY
}
for n in 1 2 4 8; do batch "$n" 2800 >"$work/batch-$n.sql"; done
for size in 600 2800; do batch 8 "$size" >"$work/batch-8-$size.sql"; done

bench() { # clients, seconds, script -> "tps latency_ms"
  pgbench -n -c "$1" -j 2 -T "$2" -f "$3" "$url" 2>&1 |
    awk '/^latency average/ {l = $4} /^tps/ {t = $3} END {printf "%.0f %.3f", t, l}'
}

echo "## c=1: one workflow's 4 commits, p50 of pgbench's average latency over $rounds rounds"
echo "| statements | latency per workflow |"
echo "|---|---|"
for kind in orca orca-hot bare hand; do : >"$work/$kind.lat"; done
for _ in $(seq "$rounds"); do
  for kind in orca orca-hot bare hand; do
    bench 1 5 "$work/$kind.sql" | awk '{print $2}' >>"$work/$kind.lat"
  done
done
label() {
  case $1 in
    orca) echo "Orca's, on Orca's table";;
    orca-hot) echo "Orca's, the last save keeping status and lease (every save HOT)";;
    bare) echo "Orca's, on Orca's table without its 4 secondary indexes";;
    hand) echo "the hand-written floor's, on (id, body)";;
  esac
}
for kind in orca orca-hot bare hand; do
  echo "| $(label "$kind") | $(sort -n "$work/$kind.lat" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}') ms |"
done

echo
echo "## c=64: one save per transaction, by record size"
echo "| body | saves/s |"
echo "|---|---|"
for size in 600 2800 600 2800; do
  echo "| $size B | $(bench 64 8 "$work/size-$size.sql" | awk '{print $1}') |"
done

echo
# A row of a batch table: $1 the label, $2 the script, $3 saves per call.
batch_row() {
  local tps
  tps=$(bench 6 8 "$2" | awk '{print $1}')
  echo "| $1 | $tps | $((tps * $3)) |"
}

echo "## orca_write over 6 connections (the store's batches in flight), by batch size"
echo "| saves per call | calls/s | saves/s |"
echo "|---|---|---|"
for n in 1 2 4 8; do batch_row "$n" "$work/batch-$n.sql" "$n"; done

echo
echo "## orca_write over 6 connections, 8 saves per call, by record size"
echo "| body | calls/s | saves/s |"
echo "|---|---|---|"
for size in 600 2800 600 2800; do batch_row "$size B" "$work/batch-8-$size.sql" 8; done
