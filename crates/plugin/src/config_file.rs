//! Reading `--config` files.
//!
//! Several files may be given (Meltano's SDK convention): they are merged in
//! order, later keys overriding earlier ones. The merged object is validated
//! against the program's [`Settings`]; every error names the file and the key.
//! Keys the schema does not know are reported as warnings (with a suggestion
//! when one is close), never silently accepted and never fatal, since other
//! tools may share the file. The value of a sensitive key (`x-sensitive`
//! in the schema: passwords, private keys) is never quoted in a message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::Settings;

/// A config file that cannot be used. The message names the file and, where
/// there is one, the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    fn new(message: String) -> Self {
        ConfigError { message }
    }
}

/// What loading found besides errors: the merged config, and warnings to log.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The merged config object.
    pub config: Map<String, Value>,
    /// Unknown keys and the like, one message each, naming the file.
    pub warnings: Vec<String>,
}

/// Reads, merges and validates the config files. Warnings are returned, not
/// logged, so the caller decides (the binaries log them at WARN).
pub fn load_config(paths: &[PathBuf], settings: &Settings) -> Result<LoadedConfig, ConfigError> {
    if paths.is_empty() {
        return Err(ConfigError::new("no --config file given".into()));
    }
    let mut merged = Map::new();
    let mut warnings = Vec::new();
    let mut origin: Vec<(String, PathBuf)> = Vec::new();
    for path in paths {
        let object = read_object(path)?;
        for key in object.keys() {
            if !settings.properties().contains_key(key) {
                warnings.push(unknown_key_warning(path, key, settings));
            }
            origin.retain(|(k, _)| k != key);
            origin.push((key.clone(), path.clone()));
        }
        merged.extend(object);
    }
    let value = Value::Object(merged);
    let mut problems = String::new();
    for error in settings.validator().iter_errors(&value) {
        let pointer = error.instance_path().to_string();
        let key = pointer
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .replace("~1", "/")
            .replace("~0", "~");
        let file = origin
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p.as_path())
            .unwrap_or(paths.last().expect("at least one path"));
        let what = match error.kind() {
            jsonschema::error::ValidationErrorKind::Required { property } => format!(
                "missing required key `{}`",
                property.as_str().unwrap_or(&property.to_string())
            ),
            _ if key.is_empty() => error.to_string(),
            // The validator's message quotes the value: never for a secret.
            _ if settings.is_sensitive(&key) => format!(
                "key `{key}`: the value breaks the schema's `{}` rule (it is not shown: `{key}` is sensitive)",
                error
                    .schema_path()
                    .to_string()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
            ),
            _ => format!("key `{}`: {}", pointer.trim_start_matches('/'), error),
        };
        if !problems.is_empty() {
            problems.push('\n');
        }
        let _ = write!(problems, "{}: {what}", file.display());
    }
    if !problems.is_empty() {
        return Err(ConfigError::new(problems));
    }
    let Value::Object(config) = value else {
        unreachable!("merged config is an object")
    };
    Ok(LoadedConfig { config, warnings })
}

fn read_object(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("{}: cannot read config: {e}", path.display())))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        ConfigError::new(format!(
            "{}: line {}, column {}: invalid JSON: {}",
            path.display(),
            e.line(),
            e.column(),
            strip_position(&e)
        ))
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ConfigError::new(format!(
            "{}: the config must be a JSON object, not {}",
            path.display(),
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ))),
    }
}

/// serde_json appends " at line L column C"; we print the position first.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn unknown_key_warning(path: &Path, key: &str, settings: &Settings) -> String {
    let best = settings
        .properties()
        .keys()
        .map(|k| (strsim::damerau_levenshtein(k, key), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min();
    match best {
        Some((_, k)) => format!(
            "{}: unknown key `{key}` is ignored (did you mean `{k}`?)",
            path.display()
        ),
        None => format!("{}: unknown key `{key}` is ignored", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const PROGRAM: &str = r#"{"type":"object","properties":{
        "batch_size_rows":{"type":["integer","string"],"pattern":"^[0-9]+$","minimum":1},
        "hard_delete":{"type":["boolean","string"],"pattern":"^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"}}}"#;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn load(
        texts: &[&str],
    ) -> (
        Vec<tempfile::NamedTempFile>,
        Result<LoadedConfig, ConfigError>,
    ) {
        let settings = Settings::compose(PROGRAM);
        let files: Vec<_> = texts.iter().map(|t| file(t)).collect();
        let paths: Vec<_> = files.iter().map(|f| f.path().to_path_buf()).collect();
        let r = load_config(&paths, &settings);
        (files, r)
    }

    #[test]
    fn valid_config_with_string_booleans_and_numbers() {
        let (_f, r) = load(&[
            r#"{"host":"h","user":"u","dbname":"d","port":"5433","hard_delete":"true","batch_size_rows":10}"#,
        ]);
        let loaded = r.unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config["port"], "5433");
    }

    #[test]
    fn missing_key_names_file_and_key() {
        let (f, r) = load(&[r#"{"host":"h","dbname":"d"}"#]);
        let msg = r.unwrap_err().to_string();
        assert_eq!(
            msg,
            format!("{}: missing required key `user`", f[0].path().display())
        );
    }

    #[test]
    fn mistyped_key_names_file_and_key() {
        let (f, r) = load(&[r#"{"host":"h","user":"u","port":"abc","hard_delete":"yes"}"#]);
        let msg = r.unwrap_err().to_string();
        let p = f[0].path().display().to_string();
        assert!(msg.contains(&format!("{p}: key `port`: ")), "{msg}");
        assert!(msg.contains(&format!("{p}: key `hard_delete`: ")), "{msg}");
        let (_, r) = load(&[r#"{"host":"h","user":"u","port":0}"#]);
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("key `port`: 0 is less than the minimum of 1"));
    }

    /// Issue 10, item 5: a numeric password or user is accepted (templating
    /// turns "123456" into a number) ...
    #[test]
    fn numeric_password_and_user_are_accepted() {
        let (_f, r) =
            load(&[r#"{"host":"h","user":12345,"password":98765432109876,"dbname":"d"}"#]);
        let loaded = r.unwrap();
        assert_eq!(loaded.config["password"], 98765432109876u64);
    }

    /// ... and the value of a sensitive key is never in a message.
    #[test]
    fn a_bad_secret_is_not_echoed() {
        for bad in [
            r#"["hunter2-98765"]"#,
            r#"{"pw":"hunter2-98765"}"#,
            r#"true"#,
        ] {
            let text = format!(
                r#"{{"host":"h","user":"u","dbname":"d","password":{bad},"ssl_client_key":{bad}}}"#
            );
            let (f, r) = load(&[&text]);
            let msg = r.unwrap_err().to_string();
            let p = f[0].path().display();
            assert_eq!(
                msg,
                format!(
                    "{p}: key `password`: the value breaks the schema's `type` rule (it is not shown: `password` is sensitive)\n\
                     {p}: key `ssl_client_key`: the value breaks the schema's `type` rule (it is not shown: `ssl_client_key` is sensitive)"
                )
            );
            assert!(!msg.contains("hunter2") && !msg.contains("true"), "{msg}");
        }
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let (f, r) = load(&["{\n  \"host\": \"h\",\n  \"user\": \n}"]);
        let msg = r.unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}: line 4, column 1: invalid JSON: expected value",
                f[0].path().display()
            )
        );
        let (_, r) = load(&["[1]"]);
        assert!(r
            .unwrap_err()
            .to_string()
            .ends_with("the config must be a JSON object, not an array"));
    }

    #[test]
    fn unknown_keys_warn_with_suggestion() {
        let (f, r) = load(&[r#"{"host":"h","user":"u","dbname":"d","batch_size_row":5,"zzz":1}"#]);
        let w = r.unwrap().warnings;
        let p = f[0].path().display().to_string();
        assert_eq!(
            w,
            vec![
                format!("{p}: unknown key `batch_size_row` is ignored (did you mean `batch_size_rows`?)"),
                format!("{p}: unknown key `zzz` is ignored"),
            ]
        );
    }

    #[test]
    fn later_files_override_and_errors_name_the_right_file() {
        let (f, r) = load(&[
            r#"{"host":"h","user":"u","dbname":"d","port":1}"#,
            r#"{"port":"x"}"#,
        ]);
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}: key `port`", f[1].path().display())),
            "{msg}"
        );
        let (_f, r) = load(&[r#"{"host":"h","user":"u","port":1}"#, r#"{"port":2}"#]);
        assert_eq!(r.unwrap().config["port"], 2);
    }
}
