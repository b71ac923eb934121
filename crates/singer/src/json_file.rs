//! Reading the JSON files given on the command line (catalog, properties,
//! state): the whole file is read and parsed into a [`Value`], and every
//! error starts with the file's path. Invalid JSON gives serde_json's line
//! and column.

use std::path::Path;

use serde_json::Value;

use crate::error::{json_syntax_message, Error, ErrorKind, Result};

/// Reads and parses a JSON file that must not be empty.
pub(crate) fn read(path: &Path) -> Result<Value> {
    read_or_empty(path)?.ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidJson,
            "the file is empty; expected a JSON object",
        )
        .context(path.display())
    })
}

/// Reads and parses a JSON file; `None` when it is empty or only
/// whitespace.
pub(crate) fn read_or_empty(path: &Path) -> Result<Option<Value>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format_args!("{}: cannot read the file", path.display()), e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::new(ErrorKind::InvalidJson, json_syntax_message(&e, true)).context(path.display())
    })
}
