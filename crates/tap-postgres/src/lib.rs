//! `tap-postgres`: reads a PostgreSQL database and writes Singer messages to
//! stdout.
//!
//! This crate holds the program's logic; `main.rs` only parses arguments,
//! loads the config (`plugin::cli::start`) and turns the result into an
//! exit code.
//!
//! - [`discovery`]: `pg_catalog` → tables and the Singer catalog.
//! - [`types`], [`encode`]: the JSON Schema and the JSON value of every
//!   column type, one encoding for every replication method.
//! - [`rows`], [`read`], [`binary`]: COPY rows (binary, or text) → RECORD bodies.
//! - [`sync`]: a run over the selected streams; [`full_table`],
//!   [`incremental`] and [`log_based`] are the replication methods, writing
//!   through [`output`].
//! - [`phase`]: where a stream is (fresh, copying, streaming, incremental),
//!   the only reader and writer of bookmark keys.
//! - [`error`]: the tap's one error type.
//! - [`config`]: the tap's settings; [`values`]: the value policies it
//!   sets (a leaf module).
#![warn(missing_docs)]

pub mod binary;
pub mod config;
pub mod discovery;
pub mod encode;
pub mod error;
pub mod full_table;
pub mod incremental;
pub mod log_based;
pub mod output;
pub mod phase;
pub mod progress;
pub mod read;
pub mod rows;
pub mod sync;
pub mod types;
pub mod values;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use plugin::cli::CommonArgs;
use plugin::{About, Settings};

pub use crate::error::Error;
use crate::error::{Context as _, Result};

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

/// Runs the program with `config`, the validated config file
/// (`plugin::cli::start`, which the binary calls first).
pub fn run(args: &Args, config: &serde_json::Map<String, serde_json::Value>) -> Result<ExitCode> {
    let config_file = args.common.config.last().expect("config was loaded");
    let config = config::TapConfig::from_json(config)
        .with_context(|| format!("{}", config_file.display()))?;
    // One thread runs every connection and the encoding: the server is the
    // other core's work. Two workers cost more than they gained: each few
    // kilobytes of COPY data crossed threads with a wakeup (a third of the
    // CPU of a FULL_TABLE run). Stdout has a thread of its own, so that this
    // one never blocks ([`singer::pipe`]).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if args.discover {
            return discover(&config).await;
        }
        let catalog_path = args
            .catalog
            .as_ref()
            .or(args.properties.as_ref())
            .ok_or_else(|| {
                Error::config("nothing to do: give --discover, or --catalog FILE to sync")
            })?;
        let catalog = singer::Catalog::from_path(catalog_path)?;
        let state = match &args.state {
            Some(path) => singer::State::from_path(path)?,
            None => singer::State::default(),
        };
        let stdout = singer::ThreadedStdout::start().context("starting the stdout writer")?;
        let writable = stdout.writable();
        let mut writer = singer::MessageWriter::new(stdout);
        sync::run(&config, &catalog, state, &mut writer, writable).await?;
        writer.finish()?.finish()?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn discover(config: &config::TapConfig) -> Result<ExitCode> {
    let conn = config.read_connection();
    let client = pg::connect(conn).await?;
    let tables = discovery::discover(&client, &config.filter)
        .await
        .context("reading the database catalog")?;
    if tables.is_empty() {
        tracing::warn!(
            "no table, view or partitioned table found in database {:?} (check filter_schemas, filter_table and the user's SELECT privileges)",
            conn.dbname
        );
    }
    let catalog = discovery::catalog(&tables, &conn.dbname, &config.values);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", catalog.to_json_pretty())
        .and_then(|_| out.flush())
        .context("writing the catalog to stdout")?;
    tracing::info!("discovered {} streams", tables.len());
    Ok(ExitCode::SUCCESS)
}
