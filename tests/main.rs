//! The end-to-end tests: the real `tap-postgres` and `target-postgres`
//! binaries, run as users run them, against one throwaway cluster.
//!
//! One test binary with a module per subject (as ripgrep's `tests/tests.rs`):
//! each test binary links both programs' crates and starts a cluster of its
//! own, so one binary links once and starts one cluster for every test.
//! Shared helpers (running the binaries, `discover`/`select`, fixtures,
//! `wait_until`) are in `support/lib.rs` (the `e2e` crate).
//!
//! Run one subject with a filter: `cargo test -p e2e --test end_to_end
//! pipe_failures::`.

mod cli;
mod cron;
mod docs;
mod interop;
mod log_based;
mod log_based_kill;
mod logs;
mod meltano;
mod pipe_failures;
mod pipelinewise;
mod round_trip;
