# polis-gateway developer and CI entry points. `make` alone lists the targets.
# CI runs `bash .ci/run`, which runs `make test` on a fresh clone.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# The steps of `make test` must run in order, one at a time.
.NOTPARALLEL:

CARGO ?= cargo
BIN := target/debug/polis-gateway

.PHONY: help deps deps-test build demo test conformance bench lint clean \
	fmt-check clippy cargo-test purity conformance-run

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

demo: build ## run the gateway + built-in mock IdP (config/demo.toml); prints the URL to open
	$(BIN) demo --config config/demo.toml

# cargo-test also builds target/debug/polis-gateway (integration tests need the binary), so
# `test` does not run `build`: with dev-dependency features unified differently, it would
# recompile the whole graph.
test: deps-test fmt-check clippy cargo-test purity conformance-run ## everything CI checks: fmt, clippy, tests, purity, spid-sp-test

conformance: deps-test build conformance-run ## only the spid-sp-test run (CONFORMANCE_RUNS="redirect:1 post:2" narrows it)

bench: deps ## the ACS benchmark
	$(CARGO) bench --bench acs

lint: deps fmt-check clippy purity ## fmt check + clippy + SAML purity check

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

conformance-run: ## scripts/conformance.sh against the already built binary
	bash scripts/conformance.sh
