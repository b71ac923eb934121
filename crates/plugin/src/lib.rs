//! The Singer/Meltano plugin surface shared by `tap-postgres` and
//! `target-postgres`: what a user or an orchestrator sees of a program before
//! it touches a database.
//!
//! - [`settings`]: a program's settings as a JSON Schema (from `schemas/`),
//!   composed with the shared connection settings.
//! - [`config_file`]: reading `--config` files, merging them, validating them
//!   against the settings schema, warning about unknown keys.
//! - [`about`]: `--about` as text, JSON (Meltano's shape) and Markdown.
//! - [`meltano`]: Meltano plugin settings and Hub plugin definitions.
//! - [`logging`]: stderr logging through `tracing`, as text or JSON.
//!
//! It knows nothing of PostgreSQL or of Singer messages.
#![warn(missing_docs)]

pub mod about;
pub mod cli;
pub mod config_file;
pub mod logging;
pub mod meltano;
pub mod settings;

pub use about::{About, AboutFormat};
pub use config_file::{load_config, ConfigError, LoadedConfig};
pub use logging::LogFormat;
pub use settings::Settings;
