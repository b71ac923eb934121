# The project's commands. `make demo` and `make test` work on a fresh Debian
# machine: `setup` installs what is missing (PostgreSQL and wal2json).
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: all setup build install wheels test lint docs demo demo-clean bench clean

all: build

## setup: install PostgreSQL and wal2json if missing (apt-get as root; else prints the command)
setup:
	@bash scripts/setup.sh

## build: release binaries in target/release/
build:
	$(CARGO) build --release --workspace --bins

## install: release binaries into $(PREFIX)/bin (default /usr/local; DESTDIR for staging)
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 target/release/tap-postgres target/release/target-postgres $(DESTDIR)$(PREFIX)/bin/

## wheels: one pip wheel per program in dist/ (the binary alone, stripped), built by
## maturin from PyPI in target/maturin-venv; `pip install dist/<wheel>` needs no Rust
MATURIN := maturin>=1.7,<2
MATURIN_VENV := target/maturin-venv
wheels:
	@if [[ "$$(cat $(MATURIN_VENV)/.installed 2>/dev/null)" != '$(MATURIN)' ]]; then \
	    rm -rf $(MATURIN_VENV) && python3 -m venv $(MATURIN_VENV) \
	    && $(MATURIN_VENV)/bin/pip install --disable-pip-version-check '$(MATURIN)' \
	    && printf '%s' '$(MATURIN)' > $(MATURIN_VENV)/.installed; \
	fi
	rm -f dist/tap_postgres_rs-*.whl dist/target_postgres_rs-*.whl
	$(MATURIN_VENV)/bin/maturin build --locked --release --strip --manifest-path crates/tap-postgres/Cargo.toml --out dist
	$(MATURIN_VENV)/bin/maturin build --locked --release --strip --manifest-path crates/target-postgres/Cargo.toml --out dist

## test: setup, lint, then the whole suite against a throwaway local cluster
test: setup lint
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast
	# The LOG_BASED tests again on the replication protocol (the first pass
	# reads their small backlogs with pg_logical_slot_peek_changes).
	TAP_TEST_LOG_ROUTE=replication $(CARGO) test -p tap-postgres --test tap --no-fail-fast log_based

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## docs: regenerate what is generated from schemas/: the README's settings tables,
## the settings of examples/meltano/meltano.yml and the plugin definitions in examples/meltano/hub/
docs:
	UPDATE_GENERATED=1 $(CARGO) test -p e2e --test end_to_end docs::

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
	rm -rf dist
