# pg_oncall — the two commands: `make demo` (the main job) and `make test` (everything).
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGRX_TEST_PGDATA ?= /tmp/pg_oncall-pgrx-tests
export PG_CONFIG
export PGRX_PG_CONFIG_PATH := $(PG_CONFIG)

.PHONY: setup test test-unit test-pg test-e2e install demo bench

setup:
	@bash scripts/setup.sh

# Unit tests (pure Rust), in-server #[pg_test]s, then end-to-end tests with real sessions.
test: setup test-unit test-pg test-e2e

test-unit:
	cargo test -p oncall-core -p fake-pagerduty

# Tests run every cluster from a private copy of the PostgreSQL installation with the library
# just built (scripts/pgtree.sh): they never write into the system's PostgreSQL. A debug build:
# quicker to build, and Rust's overflow checks stay on under test.
TEST_TREE := target/pgtree/test

test-pg: setup
	bash scripts/pgrx-test.sh "$$(bash scripts/pgtree.sh --debug $(TEST_TREE))"

test-e2e: setup
	PG_CONFIG="$$(bash scripts/pgtree.sh --debug $(TEST_TREE))" cargo test -p e2e -- --test-threads=1

install: setup
	bash scripts/install.sh

demo: setup install
	bash scripts/demo.sh

bench: setup install
	bash bench/run.sh
