//! The `tap-postgres` binary: parse arguments, load the config, run, report.
use std::process::ExitCode;

use clap::Parser as _;
use plugin::cli::Startup;

fn main() -> ExitCode {
    plugin::cli::exit_code(run(tap_postgres::Args::parse()))
}

fn run(args: tap_postgres::Args) -> anyhow::Result<ExitCode> {
    let settings = tap_postgres::settings();
    match plugin::cli::start(&args.common, &tap_postgres::ABOUT, &settings)? {
        Startup::Done => Ok(ExitCode::SUCCESS),
        Startup::Run(config) => Ok(tap_postgres::run(&args, &config)?),
    }
}
