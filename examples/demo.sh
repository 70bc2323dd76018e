#!/usr/bin/env bash
# The Orca demo: runs examples/order-saga.yaml against the example services (orca-mock).
#
#   bash examples/demo.sh BIN_DIR      (BIN_DIR holds `orca` and `orca-mock`; `make demo` does this)
#
# Executions are kept in .orca/demo.db, so `orca executions list --store sqlite:.orca/demo.db`
# shows them afterwards.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 BIN_DIR" >&2
    exit 2
fi
BIN_DIR=$(cd "$1" && pwd)
ORCA="$BIN_DIR/orca"
MOCK="$BIN_DIR/orca-mock"
for bin in "$ORCA" "$MOCK"; do
    if [[ ! -x $bin ]]; then
        echo "error: $bin not found; build it first (cargo build --workspace --bins)" >&2
        exit 2
    fi
done
cd "$(dirname "$0")/.."

WORKFLOW=examples/order-saga.yaml
mkdir -p .orca
export ORCA_STORE="sqlite:.orca/demo.db"

bold=""
reset=""
if [[ -t 1 ]]; then
    bold=$'\e[1m'
    reset=$'\e[0m'
fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }

# Prints a top-level field of the execution JSON in FILE: with jq when it is installed, else
# (for single-line values) from the pretty-printed text.
field() {
    local file=$1 name=$2
    if command -v jq >/dev/null 2>&1; then
        jq -c ".$name" "$file"
    else
        grep -E "^  \"$name\": " "$file" | sed -E "s/^  \"$name\": (.*[^,]),?$/\1/"
    fi
}
has_jq() { command -v jq >/dev/null 2>&1; }

say "Starting the example services (orca-mock) on a free loopback port"
coproc MOCK_PROC { exec "$MOCK"; }
MOCK_PID=$MOCK_PROC_PID
trap 'kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true' EXIT
if ! read -r -t 10 line <&"${MOCK_PROC[0]}"; then
    echo "error: orca-mock did not say where it listens" >&2
    exit 1
fi
URL=${line#listening on }
echo "orca-mock: $line"

say "Pointing every service of the workflow at it (ORCA_SERVICE_<NAME>)"
for service in order inventory payment discount shipping; do
    var="ORCA_SERVICE_${service^^}_SERVICE"
    export "$var=$URL"
    echo "$var=$URL"
done

say "Checking the workflow: orca validate $WORKFLOW"
"$ORCA" validate "$WORKFLOW"

say "Run 1: an order of 1500 -> parallel checks, payment, discount (amount > 1000), shipping"
"$ORCA" run "$WORKFLOW" --input '{"order_id": "o-42", "amount": 1500}' >.orca/run-1.json
echo "status: $(field .orca/run-1.json status)"
if has_jq; then
    echo "output: $(field .orca/run-1.json output)"
fi
echo "(the whole execution is in .orca/run-1.json)"

say "Run 2: shipping answers 503 -> retried twice, then the payment is refunded (saga)"
set +e
"$ORCA" run "$WORKFLOW" --input '{"order_id": "o-43", "amount": 700, "fail_shipping": true}' \
    >.orca/run-2.json
code=$?
set -e
status=$(field .orca/run-2.json status)
echo "status: $status (exit code $code: the execution did not complete)"
echo "error: $(field .orca/run-2.json error)"
echo "(the whole execution is in .orca/run-2.json)"
if [[ $code -ne 1 || $status != '"compensated"' ]]; then
    echo "error: expected run 2 to end compensated with exit code 1" >&2
    exit 1
fi

say "Stored executions: orca executions list --workflow order-saga"
"$ORCA" executions list --workflow order-saga --limit 10

say "Done: run 1 completed, run 2 was compensated."
