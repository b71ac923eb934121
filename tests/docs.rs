//! The README's settings tables are generated from `schemas/`: this test
//! fails when they are stale, and `make docs` (UPDATE_README=1) rewrites them.

use std::path::PathBuf;

use plugin::about::settings_table;

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
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, &expected).expect("write README.md");
        return;
    }
    assert!(
        readme == expected,
        "README.md settings tables are stale: run `make docs`"
    );
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
