#!/usr/bin/env bash
# API schema testing: schemathesis (PyPI) generates requests from the OpenAPI document a
# running `orca serve` publishes at /v1/openapi.json, on PostgreSQL (the store whose column
# types refuse the most), and checks every answer: no 5xx, a documented status, the documented
# content type and schema. A bounded number of cases per operation keeps it to about a minute.
#
#   bash tests/api/run.sh [MAX_EXAMPLES]        (`make test` runs it with the default, 100)
#
# Needs the debug `orca` binary (make build) and PostgreSQL on 127.0.0.1 (as .ci/run starts
# it). schemathesis is installed into a venv under the target directory the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."

examples=${1:-100}
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
orca="$target/debug/orca"
venv="$target/schemathesis-venv"
version=4.32.5
if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

pg=${ORCA_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1/test}
schema="orca_api_$$_$(date +%s%N)"
work=$(mktemp -d)
admin=api-admin-token
"$orca" serve --listen 127.0.0.1:0 --admin-token "$admin" --store "$pg?schema=$schema" \
  > "$work/stdout" 2> "$work/stderr" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql "$pg" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q '^listening on' "$work/stdout" 2>/dev/null && break
  sleep 0.1
done
base=$(sed -n 's/^listening on //p' "$work/stdout")
[ -n "$base" ] || { cat "$work/stderr" >&2; echo "orca serve did not start" >&2; exit 1; }

# A tenant with a workflow and a finished execution, so that reads find something.
curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"name": "api"}' "$base/v1/tenants" >/dev/null
token=$(curl -sf -X POST -H "Authorization: Bearer $admin" "$base/v1/tenants/api/tokens" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
curl -sf -H "Authorization: Bearer $token" --data-binary @- "$base/v1/definitions" >/dev/null <<'YAML'
apiVersion: orca.dev/v1
kind: WorkflowDefinition
metadata:
  name: api-check
spec:
  startAt: done
  states:
    - {name: done, type: pass, result: {ok: true}, end: true}
YAML
curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"workflow": "api-check", "input": {}}' "$base/v1/executions?wait=5s" >/dev/null

# schemathesis keeps a cache in its working directory: the scratch one, not the clone.
cd "$work"

# Every answer checked against the document, for the requests a token may make.
check() {
  local token=$1
  shift
  "$venv/bin/schemathesis" run "$base/v1/openapi.json" \
    --header "Authorization: Bearer $token" "$@" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" --seed 1 --workers 1 --request-timeout 20 \
    --phases examples,coverage,fuzzing --generation-database none \
    --no-color --suppress-health-check all
}

# The tenant's operations, with the tenant's token; then the admin's, with the admin token.
check "$token"
check "$admin" --include-path-regex '^/(metrics|v1/tenants)'
