//! The `target-postgres` binary: parse arguments, run, report.
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    plugin::cli::exit_code(target_postgres::run(target_postgres::Args::parse()))
}
