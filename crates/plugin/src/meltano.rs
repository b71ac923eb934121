//! Meltano's view of a program, generated from the same settings schema as
//! `--about` and the README tables: the `settings:` entries of a plugin
//! (`examples/meltano/meltano.yml`) and a whole plugin definition in Meltano
//! Hub format (`examples/meltano/hub/<program>.yml`, for `meltano add …
//! --from-ref`). The files are checked in; `tests/docs.rs` fails when they
//! differ from what this module generates, and `make docs` rewrites them.
//!
//! The output is YAML written by hand, one flow mapping per setting, every
//! string JSON-quoted (a YAML double-quoted scalar reads JSON's escapes the
//! same way), so no YAML library is needed and the text is stable.
//!
//! Each setting carries its Meltano `kind` (from the JSON type: `options`
//! for an enum, else `boolean`, `integer`, `array`, `object`, `string`), its
//! options, `sensitive` (from `x-sensitive`), its description and its default
//! as `value`. Meltano passes a `value` to the program as if the user had
//! set it, so a default that applies only when another setting is absent
//! (`sslmode`'s `prefer`, which `ssl: true` would otherwise turn into
//! `require`) is marked `x-meltano-omit-default` in `schemas/` and left out.
//!
//! It knows nothing of the programs: names, capabilities and settings come
//! from their [`About`] and [`Settings`].

use std::fmt::Write as _;

use serde_json::Value;

use crate::{About, Settings};

/// The Meltano Hub variant of both programs (Hub variants name the
/// maintainer or the project).
pub const VARIANT: &str = "singer-postgres-rs";

/// The Python distribution (wheel) that installs `about.name`:
/// `tap-postgres-rs` for `tap-postgres`. The PyPI names `tap-postgres` and
/// `target-postgres` belong to other projects; the executables keep the
/// programs' names. `crates/<program>/pyproject.toml` declares the same name
/// (a test checks it).
pub fn distribution(about: &About) -> String {
    format!("{}-rs", about.name)
}

/// Meltano's plugin type of a program, from the Singer naming convention
/// Meltano itself uses: `tap-…` is an extractor, `target-…` a loader.
///
/// # Panics
/// For a name that is neither.
pub fn plugin_type(about: &About) -> &'static str {
    if about.name.starts_with("tap-") {
        "extractor"
    } else if about.name.starts_with("target-") {
        "loader"
    } else {
        panic!("{}: neither a tap nor a target", about.name)
    }
}

/// Meltano's `kind` for a setting's JSON Schema.
pub fn kind(prop: &Value) -> &'static str {
    let types: Vec<&str> = match &prop["type"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if prop.get("enum").is_some() {
        "options"
    } else if types.contains(&"boolean") {
        "boolean"
    } else if types.contains(&"integer") {
        "integer"
    } else if types.contains(&"array") {
        "array"
    } else if types.contains(&"object") {
        "object"
    } else {
        "string"
    }
}

/// The `settings:` entries, one `- {name: …, kind: …, …}` line each, every
/// line starting with `indent`.
pub fn settings_entries(settings: &Settings, indent: &str) -> String {
    let mut out = String::new();
    for (name, prop) in settings.properties() {
        let kind = kind(prop);
        let _ = write!(out, "{indent}- {{name: {name}, kind: {kind}");
        if kind == "options" {
            let options: Vec<String> = prop["enum"]
                .as_array()
                .expect("enum is an array")
                .iter()
                .map(|v| format!("{{label: {v}, value: {v}}}"))
                .collect();
            let _ = write!(out, ", options: [{}]", options.join(", "));
        }
        if let Some(default) = prop.get("default") {
            if prop["x-meltano-omit-default"] != Value::Bool(true) {
                let _ = write!(out, ", value: {default}");
            }
        }
        if prop["x-sensitive"] == Value::Bool(true) {
            out.push_str(", sensitive: true");
        }
        if let Some(d) = prop["description"].as_str() {
            let _ = write!(out, ", description: {}", Value::from(d));
        }
        out.push_str("}\n");
    }
    out
}

/// The plugin definition in Meltano Hub format, for `meltano add
/// <plugin_type> <name> --from-ref <file>`. `pip_url` is the distribution's
/// name, as it would be on PyPI; until it is there, pip and uv find the
/// wheels of `make wheels` through `PIP_FIND_LINKS` / `UV_FIND_LINKS`.
pub fn hub_definition(about: &About, settings: &Settings) -> String {
    let plugin_type = plugin_type(about);
    let mut s = format!(
        "# The Meltano Hub definition of {name}, generated from schemas/ by `make docs`:\n\
         # do not edit. Add it to a Meltano project with\n\
         #   meltano add {plugin_type} {name} --from-ref <this file>\n",
        name = about.name,
    );
    let _ = writeln!(s, "name: {}", about.name);
    let _ = writeln!(s, "variant: {VARIANT}");
    let _ = writeln!(s, "namespace: {}", about.name.replace('-', "_"));
    let _ = writeln!(s, "label: PostgreSQL");
    let _ = writeln!(s, "description: {}", Value::from(about.description));
    let _ = writeln!(s, "domain_url: \"https://www.postgresql.org/\"");
    let _ = writeln!(s, "keywords: [database]");
    let _ = writeln!(s, "pip_url: {}", distribution(about));
    let _ = writeln!(s, "executable: {}", about.name);
    let _ = writeln!(s, "capabilities: [{}]", about.capabilities.join(", "));
    let _ = writeln!(
        s,
        "settings_group_validation: [[{}]]",
        settings.required().join(", ")
    );
    s.push_str("settings:\n");
    s.push_str(&settings_entries(settings, ""));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAP: About = About {
        name: "tap-x",
        description: "A \"test\" tap.",
        version: "1.2.3",
        capabilities: &["catalog", "discover"],
    };

    fn settings() -> Settings {
        Settings::compose(
            r#"{"type":"object","properties":{
                "flag":{"type":["boolean","string"],"default":true,"description":"A flag."},
                "list":{"type":["array","string"],"description":"Some names."},
                "mode":{"type":"string","enum":["a","b"],"default":"a","x-meltano-omit-default":true},
                "secret":{"type":"string","x-sensitive":true}}}"#,
        )
    }

    #[test]
    fn settings_entries_carry_kind_options_default_and_sensitive() {
        let e = settings_entries(&settings(), "  ");
        let lines: Vec<&str> = e.lines().collect();
        assert!(
            lines.contains(
                &"  - {name: port, kind: integer, value: 5432, description: \"Server port.\"}"
            ),
            "{e}"
        );
        assert!(
            lines.contains(
                &"  - {name: flag, kind: boolean, value: true, description: \"A flag.\"}"
            ),
            "{e}"
        );
        assert!(
            lines.contains(&"  - {name: list, kind: array, description: \"Some names.\"}"),
            "{e}"
        );
        assert!(lines.contains(&"  - {name: mode, kind: options, options: [{label: \"a\", value: \"a\"}, {label: \"b\", value: \"b\"}]}"), "{e}");
        assert!(
            lines.contains(&"  - {name: secret, kind: string, sensitive: true}"),
            "{e}"
        );
    }

    #[test]
    fn hub_definition_names_the_plugin_and_its_wheel() {
        let d = hub_definition(&TAP, &settings());
        for line in [
            "#   meltano add extractor tap-x --from-ref <this file>",
            "name: tap-x",
            "variant: singer-postgres-rs",
            "namespace: tap_x",
            "description: \"A \\\"test\\\" tap.\"",
            "pip_url: tap-x-rs",
            "executable: tap-x",
            "capabilities: [catalog, discover]",
            "settings_group_validation: [[host, user]]",
            "settings:",
        ] {
            assert!(d.lines().any(|l| l == line), "{line:?} in\n{d}");
        }
        assert!(d.ends_with(&settings_entries(&settings(), "")));
    }

    #[test]
    fn plugin_type_follows_the_name() {
        assert_eq!(plugin_type(&TAP), "extractor");
        let target = About {
            name: "target-x",
            ..TAP
        };
        assert_eq!(plugin_type(&target), "loader");
    }
}
