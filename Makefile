# Two commands matter: `make run` (the product, locally) and `make test` (every test layer).
# Both install what they need first.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
# PG_PREFIX (optional): install and test the extension in a private copy of Postgres made by
# scripts/pg-prefix.sh, instead of the system one (for several checkouts on one machine).
export PG_PREFIX ?=
ifneq ($(PG_PREFIX),)
PG_CONFIG := $(PG_PREFIX)/usr/lib/postgresql/15/bin/pg_config
export PGRX_HOME ?= $(PG_PREFIX)/pgrx-home
endif
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
# The e2e harness and the scripts start Postgres from here.
export PG_BIN := $(patsubst %/,%,$(dir $(PG_CONFIG)))
# On a non-root machine, let pgrx use sudo to write into the system Postgres.
PGRX_SUDO := $(if $(filter 0,$(shell id -u)),,--sudo)

.PHONY: run test deps build install-ext install-ext-release lint test-unit test-ext test-e2e test-js fmt fuzz bench bench-ingest bench-changes bench-latency bench-fanout bench-presence bench-webhooks
.PHONY: bench-connections bench-subscribe bench-soak bench-relays bench-deps bench-transports bench-supabase

run: install-ext build
	@scripts/run.sh

test: deps lint test-unit test-ext test-e2e test-js
	@echo "all test layers passed"

deps:
	@scripts/install-deps.sh

build: deps
	cargo build -p realtime-relay

# pgrx writes only the current version's script; scripts/install-sql.sh adds the frozen 0.1.0
# install script and every upgrade script from sql/ (CREATE EXTENSION ... VERSION, ALTER ... UPDATE).
install-ext: deps
	cd extension && cargo pgrx install $(PGRX_SUDO) --pg-config $(PG_CONFIG)
	PG_CONFIG=$(PG_CONFIG) scripts/install-sql.sh

# Benchmarks measure an optimised build of the extension (a debug build's publish is several
# times slower); it serves the tests just as well.
install-ext-release: deps
	cd extension && cargo pgrx install --release $(PGRX_SUDO) --pg-config $(PG_CONFIG)
	PG_CONFIG=$(PG_CONFIG) scripts/install-sql.sh

lint: deps
	cargo fmt --all -- --check
	cargo clippy -p realtime-core -p realtime-relay -p realtime-e2e -p realtime-loadgen --all-targets -- -D warnings
	cargo clippy -p realtime --features "pg15 pg_test" --all-targets -- -D warnings

test-unit: deps
	cargo test -p realtime-core -p realtime-relay -p realtime-loadgen

test-ext: deps
	scripts/test-extension.sh

test-e2e: install-ext build
	cargo test -p realtime-e2e -- --test-threads=2

# The TypeScript SDK, its React hooks and the demo page in headless Chromium, against a real
# relay and Postgres (npm ci, tsc, node --test).
test-js: install-ext build
	scripts/test-js.sh

fmt:
	cargo fmt --all

# Property tests (every test whose name contains `proptest`) with many more generated and mutated
# cases than `make test` runs (proptest's default, 256). FUZZ_CASES=n sets the count; add a crate
# that has such tests to FUZZ_PACKAGES.
FUZZ_CASES ?= 20000
FUZZ_PACKAGES ?= realtime-relay
fuzz: deps
	@for pkg in $(FUZZ_PACKAGES); do \
		echo "== $$pkg: PROPTEST_CASES=$(FUZZ_CASES)"; \
		PROPTEST_CASES=$(FUZZ_CASES) cargo test -p $$pkg proptest || exit 1; \
	done

# Benchmarks (never part of `make test`). Results are appended to bench/RESULTS.md.
# bench/deps.sh: jq, curl, and Go with Debian's Centrifuge library for the Centrifuge peer.
bench-deps:
	bench/deps.sh

bench-ingest: install-ext-release
	bench/ingest/run.sh

bench-changes: install-ext-release
	bench/changes/run.sh

bench-latency: install-ext-release
	bench/latency/run.sh

bench-fanout: install-ext-release bench-deps
	bench/fanout/run.sh

bench-presence: install-ext-release
	bench/presence/run.sh

bench-webhooks: install-ext-release
	bench/webhooks/run.sh

bench-connections: install-ext-release bench-deps
	bench/connections/run.sh

bench-subscribe: install-ext-release
	bench/subscribe/run.sh

bench-soak: install-ext-release bench-deps
	bench/soak/run.sh

bench-relays: install-ext-release bench-deps
	bench/relays/run.sh

bench-transports: install-ext-release bench-deps
	bench/transports/run.sh

bench-supabase: install-ext-release bench-deps
	bench/supabase/run.sh

# A short smoke run of every scenario (a few minutes in all), to keep the harness working
# (needs node, and what bench-deps installs; figures from it mean nothing).
bench: install-ext build bench-deps
	bench/ingest/run.sh --smoke
	bench/changes/run.sh --smoke
	bench/latency/run.sh --smoke
	bench/fanout/run.sh --smoke
	bench/connections/run.sh --smoke
	bench/subscribe/run.sh --smoke
	bench/presence/run.sh --smoke
	bench/webhooks/run.sh --smoke
	bench/soak/run.sh --smoke
	bench/relays/run.sh --smoke
	bench/transports/run.sh --smoke
	bench/supabase/run.sh --smoke
