//! `--about`: what a program is, what it can do and every setting it takes,
//! as text (for people), JSON (Meltano's shape: `name`, `description`,
//! `version`, `capabilities`, `settings` as a JSON Schema) or Markdown (the
//! README's settings tables are generated from this output).

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::Settings;

/// The fixed facts about a program.
#[derive(Debug, Clone, Copy)]
pub struct About {
    /// Program name, e.g. `tap-postgres`.
    pub name: &'static str,
    /// One-sentence description.
    pub description: &'static str,
    /// Version (the crate's).
    pub version: &'static str,
    /// Meltano capabilities the program implements.
    pub capabilities: &'static [&'static str],
}

/// The output format of `--about`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AboutFormat {
    /// Plain text.
    Text,
    /// JSON, Meltano SDK's shape.
    Json,
    /// Markdown.
    Markdown,
}

impl AboutFormat {
    /// Parses `text`, `json` or `markdown`.
    pub fn parse(s: &str) -> Option<AboutFormat> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Some(AboutFormat::Text),
            "json" => Some(AboutFormat::Json),
            "markdown" | "md" => Some(AboutFormat::Markdown),
            _ => None,
        }
    }
}

impl About {
    /// Renders the about document, ending with a newline.
    pub fn render(&self, settings: &Settings, format: AboutFormat) -> String {
        match format {
            AboutFormat::Json => {
                let doc = json!({
                    "name": self.name,
                    "description": self.description,
                    "version": self.version,
                    "capabilities": self.capabilities,
                    "settings": settings.schema(),
                });
                let mut s = serde_json::to_string_pretty(&doc).expect("about is JSON");
                s.push('\n');
                s
            }
            AboutFormat::Markdown => {
                let mut s = format!(
                    "# `{}`\n\n{}\n\nVersion: {}\n\n## Capabilities\n\n",
                    self.name, self.description, self.version
                );
                for c in self.capabilities {
                    let _ = writeln!(s, "- `{c}`");
                }
                s.push_str("\n## Settings\n\n");
                s.push_str(&settings_table(settings));
                s
            }
            AboutFormat::Text => {
                let mut s = format!(
                    "Name: {}\nDescription: {}\nVersion: {}\nCapabilities: {}\nSettings:\n",
                    self.name,
                    self.description,
                    self.version,
                    self.capabilities.join(", ")
                );
                let required = settings.required();
                for (key, prop) in settings.properties() {
                    let _ = writeln!(
                        s,
                        "  {key} ({}{}{}): {}",
                        type_name(prop, " | "),
                        if required.contains(&key.as_str()) {
                            ", required"
                        } else {
                            ""
                        },
                        default_of(prop)
                            .map(|d| format!(", default {d}"))
                            .unwrap_or_default(),
                        prop["description"].as_str().unwrap_or("")
                    );
                }
                s
            }
        }
    }
}

/// The Markdown table of every setting: key, type, required, default,
/// description. The README embeds this verbatim.
pub fn settings_table(settings: &Settings) -> String {
    let required = settings.required();
    let mut s = String::from(
        "| Setting | Type | Required | Default | Description |\n|---|---|---|---|---|\n",
    );
    for (key, prop) in settings.properties() {
        let _ = writeln!(
            s,
            "| `{key}` | {} | {} | {} | {} |",
            type_name(prop, " \\| "),
            if required.contains(&key.as_str()) {
                "yes"
            } else {
                ""
            },
            default_of(prop)
                .map(|d| format!("`{d}`"))
                .unwrap_or_default(),
            prop["description"]
                .as_str()
                .unwrap_or("")
                .replace('|', "\\|")
        );
    }
    s
}

/// The type of a setting for people: its values joined by `or` (` | ` in
/// text, ` \\| ` inside a Markdown table cell), or its main JSON type.
fn type_name(prop: &Value, or: &str) -> String {
    if let Some(values) = prop["enum"].as_array() {
        return values
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(or);
    }
    let types: Vec<&str> = match &prop["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    // `["boolean","string"]` means "a boolean, also as a string".
    let main = types.iter().find(|t| **t != "string" && **t != "null");
    match main {
        // `["string","number"]`: a string, also as a number (`password`).
        Some(&"number") if types.first() == Some(&"string") => format!("string{or}number"),
        Some(t) => t.to_string(),
        None if types.contains(&"array") => "string or list".into(),
        None => types.first().copied().unwrap_or("any").to_string(),
    }
}

fn default_of(prop: &Value) -> Option<String> {
    prop.get("default").map(|d| match d {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABOUT: About = About {
        name: "tap-x",
        description: "A test tap.",
        version: "1.2.3",
        capabilities: &["catalog", "discover"],
    };

    fn settings() -> Settings {
        Settings::compose(
            r#"{"type":"object","properties":{"flag":{"type":["boolean","string"],"default":true,"description":"A | flag."}}}"#,
        )
    }

    #[test]
    fn json_has_every_setting() {
        let s = settings();
        let v: Value = serde_json::from_str(&ABOUT.render(&s, AboutFormat::Json)).unwrap();
        assert_eq!(v["name"], "tap-x");
        assert_eq!(v["version"], "1.2.3");
        assert_eq!(v["capabilities"], json!(["catalog", "discover"]));
        let props = v["settings"]["properties"].as_object().unwrap();
        for key in [
            "host", "port", "user", "password", "dbname", "sslmode", "flag",
        ] {
            assert!(props.contains_key(key), "{key}");
        }
        assert_eq!(v["settings"]["required"], json!(["host", "user"]));
    }

    #[test]
    fn markdown_table_rows() {
        let md = ABOUT.render(&settings(), AboutFormat::Markdown);
        assert!(
            md.contains("| `flag` | boolean |  | `true` | A \\| flag. |\n"),
            "{md}"
        );
        assert!(md.contains("| `host` | string | yes |  |"), "{md}");
        assert!(md.contains("| `port` | integer |  | `5432` |"), "{md}");
        assert!(
            md.contains("| `password` | string \\| number |  |  |"),
            "{md}"
        );
        assert!(md.contains("| `sslmode` | disable \\| prefer \\| require \\| verify-ca \\| verify-full |  | `prefer` |"), "{md}");
    }

    #[test]
    fn text_lists_settings() {
        let t = ABOUT.render(&settings(), AboutFormat::Text);
        assert!(t.starts_with("Name: tap-x\nDescription: A test tap.\nVersion: 1.2.3\nCapabilities: catalog, discover\nSettings:\n"));
        assert!(t.contains("  host (string, required): "));
        assert!(t.contains("  flag (boolean, default true): A | flag.\n"));
        // Text is for people: no Markdown escapes.
        assert!(
            t.contains("  sslmode (disable | prefer | require | verify-ca | verify-full, default prefer): "),
            "{t}"
        );
        assert!(!t.contains("\\|"), "{t}");
    }
}
