# polis-gateway developer and CI entry points. `make` alone lists the targets.
# CI runs `bash .ci/run`, which runs `make test` on a fresh clone.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# The steps of `make test` must run in order, one at a time.
.NOTPARALLEL:

CARGO ?= cargo
BIN := target/debug/polis-gateway
EXAMPLE := target/debug/examples/istanze-esempio

.PHONY: help deps deps-test build demo demo-build test conformance bench bench-load bench-campaign lint clean \
	fmt-check clippy cargo-test purity structure conformance-run fuzz browser-check browser-run

help: ## list the targets
	@echo "polis-gateway make targets:"
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | \
		sed -E 's/^([a-z-]+):.*## (.*)$$/  \1\t\2/' | expand -t 18

deps: ## install the Debian build packages that are missing (apt; sudo if not root)
	bash scripts/install-deps.sh

deps-test: ## install the build + test packages that are missing (redis, postgresql, xmlsec1, ...)
	bash scripts/install-deps.sh --test

build: deps ## cargo build (debug)
	$(CARGO) build

# The gateway and the example downstream service (examples/istanze_esempio, which needs
# the dev-dependencies) in ONE cargo invocation: one feature resolution, so every crate
# is compiled once (two invocations unify features differently and rebuild ~140 crates),
# and the same artifacts `make test` then reuses.
demo-build: deps
	$(CARGO) build --bin polis-gateway --example istanze-esempio

# The example downstream service on :8081 runs next to the gateway; the trap stops it
# when the gateway stops (Ctrl-C stops both).
demo: demo-build ## run the gateway + built-in mock IdP (config/demo.toml) and the example service on :8081
	@echo "Example downstream service (OpenID Connect client): http://localhost:8081"
	ISTANZE_ESEMPIO_CLIENT_SECRET=demo-esempio-secret-NON-USARE $(EXAMPLE) \
		--gateway http://localhost:8080 --listen 127.0.0.1:8081 \
		--public-url http://localhost:8081 --client-id istanze-esempio & \
	example=$$!; \
	trap 'kill $$example 2>/dev/null || true' EXIT INT TERM; \
	$(BIN) demo --config config/demo.toml

# cargo-test also builds target/debug/polis-gateway (integration tests need the binary), so
# `test` does not run `build`: with dev-dependency features unified differently, it would
# recompile the whole graph.
test: deps-test fmt-check clippy structure cargo-test purity conformance-run browser-run ## everything CI checks: fmt, clippy, layers and sizes, tests, purity, spid-sp-test, the pages in headless Chromium

conformance: deps-test build conformance-run ## only the spid-sp-test run (CONFORMANCE_RUNS="redirect:1 post:2" narrows it)

# Headless Chromium (Debian package) + playwright-core/axe-core from tests/browser's
# lock file: screenshots of the SPID path at 1280 and 375 px in
# target/browser-screenshots/, no horizontal overflow at 375 px, no axe-core violation
# (a deliberately broken page proves both checks fail first). `make test` runs it on the
# binary its cargo-test step built.
browser-check: deps-test demo-build browser-run ## screenshots + overflow and axe-core checks of every page in headless Chromium

browser-run:
	cd tests/browser && npm ci --no-audit --no-fund
	node tests/browser/screenshots.mjs

bench: deps ## the ACS benchmark
	$(CARGO) bench --bench acs

# The load benchmark (examples/bench_load): the release gateway as a child process
# pinned to core 1, its stores (redis-server, PostgreSQL) in temp dirs, the driver on
# core 0. One cargo invocation builds both (one feature resolution). Options in
# BENCH_LOAD_ARGS (e.g. --backends memory-sqlite --scenarios acs), sizes in BENCH_* (README).
BENCH_LOAD_ARGS ?=
bench-load: deps-test ## load benchmark over HTTP: ACS, full OIDC login, memory per pending, overload (JSON in target/bench-load/)
	$(CARGO) build --release --bin polis-gateway --example bench-load
	taskset -c 0 target/release/examples/bench-load $(BENCH_LOAD_ARGS)

# The inactivity campaign at ministry scale (examples/bench_campaign): its own durable
# PostgreSQL, BENCH_CAMPAIGN_ACCOUNTS synthetic accounts (2,000,000 by default: about an
# hour here), the notice days BENCH_CAMPAIGN_DAYS (30,1), the rerun, the deadline.
bench-campaign: deps-test ## inactivity campaign over 2,000,000 accounts on PostgreSQL, notices to the outbox (JSON in target/bench-campaign/)
	$(CARGO) build --release --example bench-campaign
	target/release/examples/bench-campaign

# cargo-fuzz on the machine's stable toolchain: RUSTC_BOOTSTRAP lets it pass the -Z
# sanitizer flags libFuzzer needs. New inputs the fuzzer keeps land in fuzz/corpus/<t>/
# (commit the interesting ones; `cargo test` replays them all).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= xml_reader post_binding redirect_binding response_parse fiscal_code xml_differential signature_differential
fuzz: deps ## run each fuzz target for FUZZ_SECONDS (600) s; FUZZ_TARGETS narrows it
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) \
			-rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 || exit 1; \
	done

lint: deps fmt-check clippy purity structure ## fmt check + clippy + SAML purity + layers, clock and sizes

clean: ## remove target/ (build output, spid-sp-test venv, conformance reports)
	$(CARGO) clean
	rm -rf target

fmt-check: ## cargo fmt --check
	$(CARGO) fmt --all -- --check

clippy: ## cargo clippy on all targets, warnings are errors
	$(CARGO) clippy --all-targets -- -D warnings

cargo-test: ## cargo test (unit, integration and doc tests; integration tests start their own redis/postgres)
	$(CARGO) test

purity: ## src/saml/ must not use tokio/axum/redis/sqlx/reqwest/std::fs/std::net or read the clock
	bash scripts/check-saml-purity.sh

structure: ## module edges allowed by ARCHITECTURE.md's table, no wall-clock reads outside src/clock.rs, fn ≤ 80 / file ≤ 800 lines
	bash scripts/check-layers.sh
	bash scripts/check-sizes.sh

conformance-run: ## scripts/conformance.sh against the already built binary
	bash scripts/conformance.sh
