//! Files generated from `schemas/` are checked in: the README's settings
//! tables, the `settings:` lists of `examples/meltano/meltano.yml` and the
//! Meltano Hub plugin definitions in `examples/meltano/hub/`. These tests
//! fail when one is stale; `make docs` (UPDATE_GENERATED=1) rewrites them.

use std::path::{Path, PathBuf};

use e2e::workspace_root;
use plugin::about::settings_table;
use plugin::meltano::{distribution, hub_definition, settings_entries};
use plugin::{About, Settings};

/// Both programs: their about facts and settings.
fn programs() -> [(About, Settings); 2] {
    [
        (tap_postgres::ABOUT, tap_postgres::settings()),
        (target_postgres::ABOUT, target_postgres::settings()),
    ]
}

/// Whether to rewrite stale generated files instead of failing
/// (`make docs`). `UPDATE_README` is the older name.
fn updating() -> bool {
    std::env::var_os("UPDATE_GENERATED").is_some() || std::env::var_os("UPDATE_README").is_some()
}

/// Compares `path` with `expected`; rewrites it when [`updating`], else
/// returns it as stale.
fn check(path: &Path, expected: &str) -> Option<String> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current == expected {
        return None;
    }
    if updating() {
        std::fs::write(path, expected).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return None;
    }
    Some(path.display().to_string())
}

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

/// Replaces the text between `<!-- BEGIN {name} settings …-->` and
/// `<!-- END {name} settings -->` with `table`.
fn splice(readme: &str, name: &str, table: &str) -> String {
    let begin_tag = format!("<!-- BEGIN {name} settings");
    let end_tag = format!("<!-- END {name} settings -->");
    let begin = readme
        .find(&begin_tag)
        .unwrap_or_else(|| panic!("README.md lacks the marker {begin_tag:?}"));
    let body_start = begin + readme[begin..].find("-->").expect("marker closes") + 3;
    let end = readme
        .find(&end_tag)
        .unwrap_or_else(|| panic!("README.md lacks the marker {end_tag:?}"));
    format!("{}\n{}{}", &readme[..body_start], table, &readme[end..])
}

#[test]
fn readme_settings_tables_match_schemas() {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let mut expected = splice(
        &readme,
        "tap-postgres",
        &settings_table(&tap_postgres::settings()),
    );
    expected = splice(
        &expected,
        "target-postgres",
        &settings_table(&target_postgres::settings()),
    );
    if let Some(stale) = check(&path, &expected) {
        panic!("{stale}: the settings tables are stale: run `make docs`");
    }
}

#[test]
fn every_schema_setting_is_in_the_readme() {
    let readme = std::fs::read_to_string(readme_path()).expect("README.md");
    for settings in [tap_postgres::settings(), target_postgres::settings()] {
        for key in settings.properties().keys() {
            assert!(
                readme.contains(&format!("| `{key}` |")),
                "README.md does not document `{key}`"
            );
        }
    }
}

#[test]
fn meltano_hub_definitions_match_schemas() {
    let mut stale = Vec::new();
    for (about, settings) in programs() {
        let path = workspace_root()
            .join("examples/meltano/hub")
            .join(format!("{}.yml", about.name));
        stale.extend(check(&path, &hub_definition(&about, &settings)));
    }
    assert!(stale.is_empty(), "{stale:?} are stale: run `make docs`");
}

/// The `settings:` lists between the `# BEGIN <program> settings` and `#
/// END <program> settings` lines of `examples/meltano/meltano.yml`, and each
/// plugin's `capabilities:` (the line after its `executable:`).
#[test]
fn meltano_yml_settings_match_schemas() {
    let path = workspace_root().join("examples/meltano/meltano.yml");
    let text = std::fs::read_to_string(&path).expect("meltano.yml");
    let mut expected = text.clone();
    for (about, settings) in programs() {
        let program = about.name;
        let begin = format!("    # BEGIN {program} settings\n");
        let end = format!("    # END {program} settings\n");
        let from = expected.find(&begin).expect("BEGIN marker") + begin.len();
        let to = expected.find(&end).expect("END marker");
        expected.replace_range(from..to, &settings_entries(&settings, "    "));
        let exe = format!("    executable: {program}\n");
        let at = expected.find(&exe).expect("executable line") + exe.len();
        let line_end = at + expected[at..].find('\n').expect("a line");
        expected.replace_range(
            at..line_end,
            &format!("    capabilities: [{}]", about.capabilities.join(", ")),
        );
    }
    if let Some(stale) = check(&path, &expected) {
        panic!("{stale}: settings or capabilities are stale: run `make docs`");
    }
}

/// The wheel of each program is the distribution the Meltano files install.
#[test]
fn pyproject_names_are_the_plugin_definitions_distributions() {
    for (about, _) in programs() {
        let path = workspace_root()
            .join("crates")
            .join(about.name)
            .join("pyproject.toml");
        let text = std::fs::read_to_string(&path).expect("pyproject.toml");
        let name_line = format!("name = \"{}\"", distribution(&about));
        assert!(
            text.lines().any(|l| l == name_line),
            "{}: no `{name_line}`",
            path.display()
        );
        assert!(
            text.lines().any(|l| l == "bindings = \"bin\""),
            "{}: maturin packs the binary",
            path.display()
        );
    }
    let yml = std::fs::read_to_string(workspace_root().join("examples/meltano/meltano.yml"))
        .expect("meltano.yml");
    for (about, _) in programs() {
        let pip_url = format!("    pip_url: {} ", distribution(&about));
        assert!(yml.contains(&pip_url), "meltano.yml: no {pip_url:?}");
    }
}
