# pg_oncall — the two commands: `make demo` (the main job) and `make test` (everything).
#
#   make test                 unit tests once, then the end-to-end suite (in-server checks included)
#                             on every PostgreSQL major in MAJORS, each provisioned when missing
#   make test PG=17           one major
#   make demo [PG=18]         a throw-away cluster of that major (default 15) against a fake PagerDuty
#   make bench [PG=18]        the benchmarks on that major (default 15)
#   make install PG_CONFIG=/path/to/pg_config   (or PG=17) build and install into that installation
#   make package [PG=17]      target/packages/postgresql-NN-pg-oncall_<version>_amd64.deb for each
#                             major in MAJORS (release builds, dpkg-deb); `make test` installs each
#                             into a throw-away root and runs it in a cluster (scripts/package-test.sh)
#
# Each major's installation comes from scripts/provision.sh (15: Debian packages; 17: a Debian
# trixie root whose servers run in a chroot; 18: a PyPI wheel), cached under
# $${PG_ONCALL_CACHE:-$$HOME/.cache/pg_oncall}. Tests, the demo and the benches run every cluster
# from a private copy of that installation with the library just built (scripts/pgtree.sh):
# they never write into an installation of the system's. `make install` is the one target that does.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

# The majors `make test` covers (16: no complete installation can be had here).
MAJORS ?= 15 17 18
PG ?=
TEST_MAJORS := $(if $(PG),$(PG),$(MAJORS))
# Demo and benches: one major.
ONE_MAJOR := $(if $(PG),$(PG),15)

# `eval` this: PG_CONFIG and PG_ONCALL_CHROOT of major $(1), provisioned when missing.
provision = env=$$(bash scripts/provision.sh $(1)) && eval "$$env" && export PG_CONFIG PG_ONCALL_CHROOT

.PHONY: setup test test-unit test-major test-package install demo bench package

setup:
	@bash scripts/setup.sh

test: setup test-unit
	@status=0; for major in $(TEST_MAJORS); do \
	    $(MAKE) --no-print-directory test-major PG=$$major || status=1; \
	    $(MAKE) --no-print-directory test-package PG=$$major || status=1; \
	done; exit $$status

test-unit:
	cargo test -p oncall-core -p fake-pagerduty

# The end-to-end suite (e2e/tests, in-server checks included) on major PG, every cluster from a
# private tree of that major with a debug build (quicker to build, overflow checks on).
# PG_CONFIG names the tree; PG_ONCALL_CHROOT, when set, the root its servers run in.
test-major:
	@test -n "$(PG)" || { echo "make test-major needs PG=<major>" >&2; exit 2; }
	@echo "== PostgreSQL $(PG) =="
	@started=$$(date +%s) && $(call provision,$(PG)) && \
	tree=$$(bash scripts/pgtree.sh --debug target/pgtree/$(PG)/test) && \
	echo "== PostgreSQL $(PG): provisioned, built and installed into the tree in $$(($$(date +%s) - started)) s ==" && \
	PG_CONFIG=$$tree bash scripts/e2e.sh $(PG)

install: setup
	@$(if $(PG),$(call provision,$(PG)) &&) bash scripts/install.sh

# The demo runs from a private tree (release build) of major PG (default 15): nothing is
# installed into the system's PostgreSQL.
demo: setup
	@$(call provision,$(ONE_MAJOR)) && \
	tree=$$(bash scripts/pgtree.sh target/pgtree/$(ONE_MAJOR)/demo) && \
	PG_CONFIG=$$tree bash scripts/demo.sh

bench: setup
	@$(call provision,$(ONE_MAJOR)) && \
	tree=$$(bash scripts/pgtree.sh target/pgtree/$(ONE_MAJOR)/bench) && \
	PG_CONFIG=$$tree bash bench/run.sh

# Debian packages, one per major (release builds; each major provisioned when missing).
package: setup
	@bash scripts/package.sh $(TEST_MAJORS)

# The package of major PG: built, installed with dpkg into a throw-away root, run in a cluster
# of that major (e2e/tests/packages.rs), removed.
test-package:
	@test -n "$(PG)" || { echo "make test-package needs PG=<major>" >&2; exit 2; }
	@bash scripts/package-test.sh $(PG)
