# The project's commands. `make demo` and `make test` work on a fresh Debian
# machine: `setup` installs what is missing (PostgreSQL and wal2json).
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: all setup build test lint docs demo demo-clean bench clean

all: build

## setup: install PostgreSQL and wal2json if missing (apt-get as root; else prints the command)
setup:
	@bash scripts/setup.sh

## build: release binaries in target/release/
build:
	$(CARGO) build --release --workspace --bins

## test: setup, lint, then the whole suite against a throwaway local cluster
test: setup lint
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## docs: regenerate what is generated from schemas/: the README's settings tables
## and the plugin definitions in examples/meltano/hub/
docs:
	UPDATE_GENERATED=1 $(CARGO) test -p e2e --test docs

## demo: the main job end to end on a throwaway local cluster
demo: setup build
	@bash scripts/demo.sh

demo-clean:
	@bash scripts/demo.sh clean

## bench: throughput against psql \copy, reported as ratios
bench: setup build
	@bash scripts/bench.sh

clean:
	$(CARGO) clean
