//! `target-postgres`: reads Singer messages on stdin and loads them into a
//! PostgreSQL database, printing each state once the data before it is
//! committed.
//!
//! This crate holds the program's logic; `main.rs` only parses arguments and
//! turns the result into an exit code. Loading is added by the issue that
//! builds it; today the program validates its config and answers `--about`.
#![warn(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use plugin::cli::{CommonArgs, Startup};
use plugin::{About, Settings};

/// The program's about facts.
pub const ABOUT: About = About {
    name: "target-postgres",
    description: "Singer target for PostgreSQL: COPY-speed loading with exact values, \
                  state printed only after commit, drop-in for the pipelinewise/Macrometa \
                  PostgreSQL target.",
    version: env!("CARGO_PKG_VERSION"),
    capabilities: &["about", "activate-version", "hard-delete", "soft-delete"],
};

/// The JSON Schema of the config file (`schemas/target-postgres.config.json`
/// with the shared connection settings).
pub fn settings() -> Settings {
    Settings::compose(include_str!("../../../schemas/target-postgres.config.json"))
}

/// Command-line arguments.
#[derive(Debug, clap::Parser)]
#[command(name = "target-postgres", version, about = ABOUT.description)]
pub struct Args {
    #[command(flatten)]
    /// Options shared with the tap.
    pub common: CommonArgs,

    /// Read Singer messages from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

/// Runs the program.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = settings();
    let config = match plugin::cli::start(&args.common, &ABOUT, &settings)? {
        Startup::Done => return Ok(ExitCode::SUCCESS),
        Startup::Run(config) => config,
    };
    let config_file = args.common.config.last().expect("config was loaded");
    let connection = pg::ConnectionConfig::from_json(&config, ABOUT.name)
        .with_context(|| format!("{}", config_file.display()))?;
    tracing::debug!(?connection, "config is valid");
    anyhow::bail!("loading is not implemented yet (issue #5)")
}
