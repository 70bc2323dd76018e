#!/usr/bin/env bash
# Builds every example guest component from source:
#
#   bash guest-examples/build.sh [rust] [js] [python]     (no argument: all; `make guests` runs it)
#
# Output: ${ORCA_GUEST_DIR:-${CARGO_TARGET_DIR:-target}/guests}/<name>.wasm for
#   Rust (wasm32-wasip2, wit-bindgen via sdk/): fraud-score high-value refund aggregate
#     hostile-loop hostile-memory hostile-recursion hostile-egress hostile-snoop hostile-result
#   JavaScript (componentize-js from npm):      discount-js
#   Python (componentize-py from PyPI):         tax-python
# Work files: ${CARGO_TARGET_DIR:-target}/guest-build (the Rust guests' cargo target dir, kept
# apart from the host's so the two builds never wait on each other's lock; the Python venv; the
# JS/Python build stamps). A relative CARGO_TARGET_DIR or ORCA_GUEST_DIR is taken from the repo
# root. Installs (the wasm32-wasip2 target, `npm ci`, the pinned componentize-py in a venv) run
# only when missing or changed, and JS/Python components are rebuilt only when their sources,
# the WIT or the toolchain changed, so a second run takes seconds. Any failure stops the script
# with a non-zero exit and the failing tool's output.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT"

abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$ROOT/$1" ;; esac; }
TARGET=$(abs "${CARGO_TARGET_DIR:-target}")
OUT=$(abs "${ORCA_GUEST_DIR:-$TARGET/guests}")
WORK="$TARGET/guest-build"
WIT="$ROOT/wit"
mkdir -p "$OUT" "$WORK"

RUST_GUESTS=(fraud-score high-value refund aggregate
    hostile-loop hostile-memory hostile-recursion hostile-egress hostile-snoop hostile-result)

die() { echo "guest-examples/build.sh: error: $*" >&2; exit 1; }
note() { echo "guest-examples/build.sh: $*" >&2; }
now() { date +%s; }

want_rust=0 want_js=0 want_py=0
if [[ $# -eq 0 ]]; then
    want_rust=1 want_js=1 want_py=1
fi
for arg in "$@"; do
    case $arg in
        rust) want_rust=1 ;;
        js) want_js=1 ;;
        python) want_py=1 ;;
        *) die "unknown argument '$arg' (expected rust, js or python)" ;;
    esac
done

# A component starts with the wasm magic and the component-model layer:
# 00 61 73 6d, version 0d 00, layer 01 00 (a core module has 01 00 00 00).
check_component() {
    local file=$1 header
    [[ -s $file ]] || die "$file was not produced"
    header=$(od -An -tx1 -N8 "$file" | tr -d ' \n')
    [[ $header == 0061736d0d000100 ]] || die "$file is not a WebAssembly component (header $header)"
}

# True when $1 exists and no file under the other arguments is newer.
up_to_date() {
    local out=$1
    shift
    [[ -f $out ]] || return 1
    [[ -z $(find "$@" -newer "$out" -type f -print -quit 2>/dev/null) ]]
}

build_rust() {
    local start
    start=$(now)
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
        note "installing the wasm32-wasip2 target"
        rustup target add wasm32-wasip2
    fi
    local cargo=${CARGO:-cargo}
    CARGO_TARGET_DIR="$WORK/rust" "$cargo" build --manifest-path "$HERE/Cargo.toml" --workspace \
        --release --target wasm32-wasip2 --locked \
        || die "the Rust guests failed to build"
    local name
    for name in "${RUST_GUESTS[@]}"; do
        local built="$WORK/rust/wasm32-wasip2/release/${name//-/_}.wasm"
        check_component "$built"
        cp "$built" "$OUT/$name.wasm.tmp"
        mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
    done
    note "rust guests ok ($(($(now) - start)) s)"
}

build_js() {
    local start js="$HERE/js" out="$OUT/discount-js.wasm" stamp
    start=$(now)
    command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed for the JS guest"
    stamp="$js/node_modules/.orca-installed"
    if [[ ! -x $js/node_modules/.bin/componentize-js ]] || ! cmp -s "$js/package-lock.json" "$stamp"; then
        note "npm ci (componentize-js)"
        (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $js"
        cp "$js/package-lock.json" "$stamp"
    fi
    if up_to_date "$out" "$js"/*.js "$js/package-lock.json" "$WIT"; then
        note "discount-js is up to date"
        return
    fi
    (cd "$js" && node_modules/.bin/componentize-js discount.js --wit "$WIT" -n step-component \
        -d http -d fetch-event -o "$out.tmp") || die "componentize-js failed for discount-js"
    check_component "$out.tmp"
    mv "$out.tmp" "$out"
    note "discount-js ok ($(($(now) - start)) s)"
}

build_python() {
    local start py="$HERE/python" venv="$WORK/py-venv" out="$OUT/tax-python.wasm" stamp
    start=$(now)
    stamp="$venv/.orca-installed"
    if [[ ! -x $venv/bin/componentize-py ]] || ! cmp -s "$py/requirements.txt" "$stamp"; then
        note "installing componentize-py into $venv"
        local python=${PYTHON:-python3}
        command -v "$python" >/dev/null || die "python3 is needed for the Python guest"
        rm -rf "$venv"
        "$python" -m venv "$venv" || die "cannot create a venv (on Debian: apt-get install python3-venv)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$py/requirements.txt" \
            || die "pip install -r $py/requirements.txt failed"
        cp "$py/requirements.txt" "$stamp"
    fi
    if up_to_date "$out" "$py/tax" "$py/requirements.txt" "$WIT"; then
        note "tax-python is up to date"
        return
    fi
    # Build from a copy so the build's __pycache__ stays out of the source tree.
    local src="$WORK/python/tax"
    rm -rf "$src"
    mkdir -p "$src"
    cp "$py"/tax/*.py "$src/"
    (cd "$src" && env -u VIRTUAL_ENV "$venv/bin/componentize-py" -d "$WIT" -w step-component \
        componentize app -p . -o "$out.tmp") || die "componentize-py failed for tax-python"
    check_component "$out.tmp"
    mv "$out.tmp" "$out"
    note "tax-python ok ($(($(now) - start)) s)"
}

# Rust first (cargo uses every core); then the JS and Python builds, which are mostly
# single-threaded, side by side.
[[ $want_rust == 1 ]] && build_rust
pids=()
logs=()
if [[ $want_js == 1 ]]; then
    logs+=("$WORK/js.log")
    build_js >"$WORK/js.log" 2>&1 &
    pids+=($!)
fi
if [[ $want_py == 1 ]]; then
    logs+=("$WORK/python.log")
    build_python >"$WORK/python.log" 2>&1 &
    pids+=($!)
fi
failed=0
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
        cat "${logs[$i]}" >&2
    else
        failed=1
        echo "---- ${logs[$i]} ----" >&2
        cat "${logs[$i]}" >&2
    fi
done
[[ $failed == 0 ]] || die "a guest failed to build (see above)"

# A stable, repo-relative name for the outputs, so example workflows can say
# `source: ../guest-examples/out/fraud-score.wasm` wherever the target directory is.
if [ "$OUT" != "$HERE/out" ]; then
    ln -sfn "$OUT" "$HERE/out"
fi

echo "guest components in $OUT:"
ls -l "$OUT"/*.wasm | awk '{printf "  %10d  %s\n", $5, $NF}'
