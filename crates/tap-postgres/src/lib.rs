//! `tap-postgres`: reads a PostgreSQL database and writes Singer messages to
//! stdout.
//!
//! This crate holds the program's logic; `main.rs` only parses arguments and
//! turns the result into an exit code. Discovery and the replication methods
//! (FULL_TABLE, INCREMENTAL, LOG_BASED) are added by the issues that build
//! them; today the program validates its config and answers `--about`.
#![warn(missing_docs)]

pub mod encode;
pub mod types;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use plugin::cli::{CommonArgs, Startup};
use plugin::{About, Settings};

/// The program's about facts.
pub const ABOUT: About = About {
    name: "tap-postgres",
    description: "Singer tap for PostgreSQL: FULL_TABLE, INCREMENTAL and LOG_BASED (wal2json) \
                  replication, drop-in for the pipelinewise/Macrometa PostgreSQL source.",
    version: env!("CARGO_PKG_VERSION"),
    capabilities: &[
        "catalog",
        "properties",
        "discover",
        "state",
        "about",
        "log-based",
        "activate-version",
    ],
};

/// The JSON Schema of the config file (`schemas/tap-postgres.config.json`
/// with the shared connection settings).
pub fn settings() -> Settings {
    Settings::compose(include_str!("../../../schemas/tap-postgres.config.json"))
}

/// Command-line arguments.
#[derive(Debug, clap::Parser)]
#[command(name = "tap-postgres", version, about = ABOUT.description)]
pub struct Args {
    #[command(flatten)]
    /// Options shared with the target.
    pub common: CommonArgs,

    /// Print the catalog of every table, view and partitioned table to stdout.
    #[arg(short = 'd', long)]
    pub discover: bool,

    /// Catalog of the streams to sync (from --discover, with selections).
    #[arg(long, value_name = "FILE", conflicts_with = "properties")]
    pub catalog: Option<PathBuf>,

    /// Legacy name of --catalog.
    #[arg(short = 'p', long, value_name = "FILE")]
    pub properties: Option<PathBuf>,

    /// State from a previous run (bookmarks). Accepted and ignored with --discover.
    #[arg(short = 's', long, value_name = "FILE")]
    pub state: Option<PathBuf>,
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
    if args.discover {
        anyhow::bail!("--discover is not implemented yet (issue #3)");
    }
    if args.catalog.is_none() && args.properties.is_none() {
        anyhow::bail!("nothing to do: give --discover, or --catalog FILE to sync");
    }
    anyhow::bail!("syncing is not implemented yet (issues #3 and #4)")
}
