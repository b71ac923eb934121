//! The `tap-postgres` binary: parse arguments, run, report.
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    plugin::cli::exit_code(tap_postgres::run(tap_postgres::Args::parse()))
}
