//! The command-line options both programs share, and what they do before the
//! program's own work starts: `--about`, logging set-up, reading and
//! validating `--config`.
//!
//! Exit codes: 0 success; 1 failure (a CRITICAL line on stderr says why);
//! 2 bad command-line usage (clap's convention).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Map, Value};

use crate::{About, AboutFormat, LogFormat, Settings};

/// Options common to `tap-postgres` and `target-postgres`.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Config file (JSON). May be repeated: later files override earlier keys.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,

    /// Print the program's name, version, capabilities and settings, then exit.
    #[arg(long)]
    pub about: bool,

    /// Format of --about: text, json or markdown.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = parse_about_format)]
    pub format: AboutFormat,

    /// Log level or filter (debug, info, warn, error).
    #[arg(long, value_name = "LEVEL", env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format on stderr: text or json.
    #[arg(long, value_name = "FORMAT", env = "LOG_FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub log_format: LogFormat,
}

fn parse_about_format(s: &str) -> Result<AboutFormat, String> {
    AboutFormat::parse(s).ok_or_else(|| format!("{s:?} is not one of text, json, markdown"))
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    LogFormat::parse(s).ok_or_else(|| format!("{s:?} is not one of text, json"))
}

/// What the program should do after [`start`].
#[derive(Debug)]
pub enum Startup {
    /// `--about` was printed: exit 0.
    Done,
    /// Run with this validated config.
    Run(Map<String, Value>),
}

/// Handles `--about`, installs logging, loads and validates the config files
/// (logging each warning). Errors name the file and key at fault.
pub fn start(common: &CommonArgs, about: &About, settings: &Settings) -> anyhow::Result<Startup> {
    if common.about {
        let text = about.render(settings, common.format);
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(Startup::Done);
    }
    crate::logging::init(&common.log_level, common.log_format).map_err(anyhow::Error::msg)?;
    let loaded = crate::load_config(&common.config, settings)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(Startup::Run(loaded.config))
}

/// Turns the program's result into its exit code, printing a failure once,
/// with its whole cause chain, as one CRITICAL line on stderr (control
/// characters escaped by [`crate::logging::one_line`]) (callers such as
/// Meltano and cron wrappers look for it).
pub fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line, whatever names the message quotes (see `logging`).
            let message = format!("{e:#}");
            let line = crate::logging::one_line(&message, false);
            let _ = writeln!(std::io::stderr().lock(), "CRITICAL {line}");
            ExitCode::FAILURE
        }
    }
}
