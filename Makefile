# The two commands a newcomer needs: `make demo` runs a workflow, `make test` runs every test.
# One target directory for the workspace, outside the clone so checkouts share builds.
export CARGO_TARGET_DIR ?= /var/tmp/orca-target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/debug

.PHONY: demo test build lint guests bench fuzz

build:
	$(CARGO) build --workspace --bins

# Starts the example services on a free loopback port, runs the order saga against them on
# the embedded SQLite store (under .orca/), then stops the services.
demo: build
	@bash examples/demo.sh "$(BIN)"

lint:
	bash .ci/check-deps
	bash .ci/check-standalone
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p orca-runtime --all-targets --features otel -- -D warnings

# The example guest components (Rust, JavaScript, Python), built from source into
# $CARGO_TARGET_DIR/guests/<name>.wasm (or $ORCA_GUEST_DIR); see guest-examples/build.sh.
guests:
	@bash guest-examples/build.sh

# The OpenTelemetry export is behind a feature, off by default: its test runs in a second pass.
# Then each fuzz target runs for a few seconds from the committed corpus (fuzz/run.sh), and
# schemathesis checks the running server against its OpenAPI document (tests/api/run.sh).
test: lint build guests
	$(CARGO) test --workspace
	$(CARGO) test -p orca-runtime --features otel --test otel
	bash fuzz/run.sh 10
	bash tests/api/run.sh

# Long fuzzing runs: FUZZ_SECONDS per target (default 10 minutes each).
FUZZ_SECONDS ?= 600
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

# Orca against its floors (engine overhead, fan-out, Wasm, durable stores, memory, recovery);
# prints a table and rewrites BENCHMARKS.md. Needs the guests and the local PostgreSQL and
# Redis. Full run ~5 min; `make bench BENCH_ARGS=--quick` for a ~1 min smoke run.
BENCH_ARGS ?=
bench: guests
	$(CARGO) run --release -p orca-bench -- $(BENCH_ARGS)
