//! `target-postgres`: reads Singer messages on stdin and loads them into a
//! PostgreSQL database, printing each state once the data before it is
//! committed.
//!
//! This crate holds the program's logic; `main.rs` only parses arguments and
//! turns the result into an exit code.
//!
//! # Modules, in the order data flows through them
//! - [`input`]: stdin or `--input FILE` in chunks, on its own thread,
//!   pulled as events (a line, idle, the end).
//! - [`batch`]: the converter thread: messages → per-stream batches of COPY
//!   text ([`encode`]), flush decisions; [`state`]: when a STATE may print.
//! - [`schema`]: SCHEMA → the table a stream wants; [`ddl`]: making the
//!   table so.
//! - [`loader`]: the async side: DDL, [`copy_in`] + [`merge`] per batch in
//!   one transaction, ACTIVATE_VERSION, printing states.
//! - [`work`]: what the converter hands the loader (both import it, never
//!   each other).
//! - [`pipeline`]: wiring the three together; [`config`]; [`error`].
#![warn(missing_docs)]

pub mod batch;
pub mod config;
pub mod copy_in;
pub mod ddl;
pub mod encode;
pub mod error;
pub mod failpoint;
pub mod input;
pub mod loader;
pub mod merge;
pub mod pipeline;
pub mod schema;
pub mod state;
pub mod work;

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
    let target = config::TargetConfig::from_json(&config)
        .with_context(|| format!("{}", config_file.display()))?;
    tracing::debug!(?connection, ?target, "config is valid");
    pipeline::run(target, connection, args.input)?;
    Ok(ExitCode::SUCCESS)
}
