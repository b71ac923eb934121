use serde_json::json;
use singer::{Catalog, CatalogEntry, ErrorKind, ReplicationMethod};

/// A pipelinewise discovery entry (§10 of the seed-connector notes) with
/// user selections in metadata.
const PW_ENTRY: &str = r#"{"table_name":"t_log","stream":"t_log","tap_stream_id":"public-t_log","metadata":[{"breadcrumb":[],"metadata":{"table-key-properties":["id"],"schema-name":"public","database-name":"seedstudy","row-count":-1,"is-view":false,"selected":true,"replication-method":"LOG_BASED"}},{"breadcrumb":["properties","id"],"metadata":{"sql-datatype":"integer","inclusion":"automatic","selected-by-default":true}},{"breadcrumb":["properties","amount"],"metadata":{"sql-datatype":"numeric","inclusion":"available","selected-by-default":true}},{"breadcrumb":["properties","c_interval"],"metadata":{"sql-datatype":"interval","inclusion":"unsupported","selected-by-default":false}}],"schema":{"type":"object","properties":{"id":{"type":["integer"],"minimum":-2147483648,"maximum":2147483647},"amount":{"type":["null","number"],"exclusiveMaximum":true,"maximum":100000000,"multipleOf":0.0001},"c_interval":{}}}}"#;

fn entry(text: &str) -> CatalogEntry {
    let catalog = Catalog::from_json(&format!(r#"{{"streams":[{text}]}}"#)).unwrap();
    catalog.streams.into_iter().next().unwrap()
}

#[test]
fn pipelinewise_entry_accessors() {
    let e = entry(PW_ENTRY);
    assert_eq!(e.tap_stream_id, "public-t_log");
    assert_eq!(e.stream_name(), "t_log");
    assert_eq!(e.table_name.as_deref(), Some("t_log"));
    assert!(e.is_selected());
    assert_eq!(
        e.replication_method().unwrap(),
        Some(ReplicationMethod::LogBased)
    );
    assert_eq!(e.replication_key(), None);
    assert_eq!(e.key_properties(), ["id"]);
    assert!(!e.is_view());
    assert_eq!(e.database_name(), Some("seedstudy"));
    assert_eq!(e.schema_name(), Some("public"));
    assert_eq!(
        e.property_metadata("amount").unwrap().get("sql-datatype"),
        Some(&json!("numeric"))
    );
    assert_eq!(e.selected_properties(), ["id", "amount"]);
}

#[test]
fn stream_selection_from_top_level_and_legacy_schema() {
    let top = entry(
        r#"{"tap_stream_id":"public-a","schema":{},"selected":true,"replication_method":"INCREMENTAL","replication_key":"updated_at","key_properties":["k"]}"#,
    );
    assert!(top.is_selected());
    assert_eq!(
        top.replication_method().unwrap(),
        Some(ReplicationMethod::Incremental)
    );
    assert_eq!(top.replication_key(), Some("updated_at"));
    assert_eq!(top.key_properties(), ["k"]);

    let legacy =
        entry(r#"{"tap_stream_id":"public-a","schema":{"selected":true,"properties":{}}}"#);
    assert!(legacy.is_selected());

    let by_default = entry(
        r#"{"tap_stream_id":"public-a","schema":{},"metadata":[{"breadcrumb":[],"metadata":{"selected-by-default":true}}]}"#,
    );
    assert!(by_default.is_selected());

    let nothing = entry(r#"{"tap_stream_id":"public-a","schema":{}}"#);
    assert!(!nothing.is_selected());
    assert_eq!(nothing.replication_method().unwrap(), None);
}

#[test]
fn metadata_wins_over_top_level() {
    let e = entry(
        r#"{"tap_stream_id":"public-a","schema":{"selected":true},"selected":true,"replication_method":"FULL_TABLE","replication_key":"a","key_properties":["top"],"metadata":[{"breadcrumb":[],"metadata":{"selected":false,"replication-method":"LOG_BASED","replication-key":"b","table-key-properties":["md"]}}]}"#,
    );
    assert!(!e.is_selected());
    assert_eq!(
        e.replication_method().unwrap(),
        Some(ReplicationMethod::LogBased)
    );
    assert_eq!(e.replication_key(), Some("b"));
    assert_eq!(e.key_properties(), ["md"]);

    let e = entry(
        r#"{"tap_stream_id":"public-a","schema":{},"selected":false,"metadata":[{"breadcrumb":[],"metadata":{"selected":true}}]}"#,
    );
    assert!(e.is_selected());

    // Top-level beats selected-by-default; empty strings count as absent.
    let e = entry(
        r#"{"tap_stream_id":"public-a","schema":{},"selected":false,"replication_method":"INCREMENTAL","metadata":[{"breadcrumb":[],"metadata":{"selected-by-default":true,"replication-method":""}}]}"#,
    );
    assert!(!e.is_selected());
    assert_eq!(
        e.replication_method().unwrap(),
        Some(ReplicationMethod::Incremental)
    );
}

#[test]
fn view_key_properties() {
    let view = entry(
        r#"{"tap_stream_id":"public-v","schema":{},"metadata":[{"breadcrumb":[],"metadata":{"is-view":true,"table-key-properties":[],"view-key-properties":["id","day"]}}]}"#,
    );
    assert!(view.is_view());
    assert_eq!(view.key_properties(), ["id", "day"]);
    let view_without = entry(
        r#"{"tap_stream_id":"public-v","schema":{},"is_view":true,"metadata":[{"breadcrumb":[],"metadata":{"table-key-properties":[]}}]}"#,
    );
    assert!(view_without.is_view());
    assert!(view_without.key_properties().is_empty());
    // view-key-properties is ignored for tables.
    let table = entry(
        r#"{"tap_stream_id":"public-t","schema":{},"metadata":[{"breadcrumb":[],"metadata":{"table-key-properties":["id"],"view-key-properties":["x"]}}]}"#,
    );
    assert_eq!(table.key_properties(), ["id"]);
}

#[test]
fn property_selection_rules() {
    let e = entry(
        r#"{"tap_stream_id":"s","schema":{"properties":{"auto":{},"auto_off":{},"unsup":{},"unsup_on":{},"off":{},"on":{},"dflt_off":{},"dflt_off_on":{},"plain":{},"no_md":{}}},"metadata":[
        {"breadcrumb":["properties","auto"],"metadata":{"inclusion":"automatic"}},
        {"breadcrumb":["properties","auto_off"],"metadata":{"inclusion":"automatic","selected":false}},
        {"breadcrumb":["properties","unsup"],"metadata":{"inclusion":"unsupported"}},
        {"breadcrumb":["properties","unsup_on"],"metadata":{"inclusion":"unsupported","selected":true}},
        {"breadcrumb":["properties","off"],"metadata":{"inclusion":"available","selected":false,"selected-by-default":true}},
        {"breadcrumb":["properties","on"],"metadata":{"inclusion":"available","selected":true,"selected-by-default":false}},
        {"breadcrumb":["properties","dflt_off"],"metadata":{"inclusion":"available","selected-by-default":false}},
        {"breadcrumb":["properties","dflt_off_on"],"metadata":{"selected-by-default":false,"selected":true}},
        {"breadcrumb":["properties","plain"],"metadata":{"inclusion":"available"}}]}"#,
    );
    let expect = [
        ("auto", true),
        ("auto_off", true),
        ("unsup", false),
        ("unsup_on", false),
        ("off", false),
        ("on", true),
        ("dflt_off", false),
        ("dflt_off_on", true),
        ("plain", true),
        ("no_md", true),
    ];
    for (name, selected) in expect {
        assert_eq!(e.is_property_selected(name), selected, "{name}");
    }
    assert_eq!(
        e.selected_properties(),
        ["auto", "auto_off", "on", "dflt_off_on", "plain", "no_md"]
    );
}

#[test]
fn unknown_keys_and_numbers_survive_a_round_trip() {
    let text = r#"{"streams":[{"tap_stream_id":"public-t","stream":"t","table_name":"t","key_properties":["id"],"replication_method":"FULL_TABLE","selected":true,"is_view":false,"schema":{"type":"object","properties":{"n":{"type":["null","number"],"multipleOf":1e-38,"maximum":100000000000000000000000000000000000000}}},"metadata":[{"breadcrumb":[],"metadata":{"row-count":-1,"custom":{"b":1,"a":2}}}],"stream_alias":"x","database_name":"db"}],"version":2}"#;
    let catalog = Catalog::from_json(text).unwrap();
    assert_eq!(serde_json::to_string(&catalog).unwrap(), text);
    let e = &catalog.streams[0];
    assert_eq!(
        e.extra.keys().collect::<Vec<_>>(),
        ["stream_alias", "database_name"]
    );
    assert_eq!(catalog.extra.get("version"), Some(&json!(2)));
    // Through serde too (the Deserialize impl).
    let again: Catalog = serde_json::from_str(text).unwrap();
    assert_eq!(again, catalog);
}

#[test]
fn building_metadata_for_discovery() {
    let mut e = CatalogEntry::new("public-t", json!({"type":"object","properties":{}}));
    e.property_metadata_mut("id")
        .insert("inclusion".into(), json!("automatic"));
    e.stream_metadata_mut()
        .insert("table-key-properties".into(), json!(["id"]));
    e.stream_metadata_mut()
        .insert("schema-name".into(), json!("public"));
    let catalog = Catalog {
        streams: vec![e],
        ..Catalog::default()
    };
    assert_eq!(
        serde_json::to_string(&catalog).unwrap(),
        r#"{"streams":[{"tap_stream_id":"public-t","schema":{"type":"object","properties":{}},"metadata":[{"breadcrumb":[],"metadata":{"table-key-properties":["id"],"schema-name":"public"}},{"breadcrumb":["properties","id"],"metadata":{"inclusion":"automatic"}}]}]}"#
    );
    assert!(catalog.stream("public-t").is_some());
    assert_eq!(catalog.selected_streams().count(), 0);
}

#[test]
fn errors_name_the_stream_and_field() {
    let cases = [
        (
            r#"[]"#,
            "a catalog must be a JSON object with a \"streams\" array",
        ),
        (r#"{}"#, r#"catalog is missing field "streams""#),
        (
            r#"{"streams":[{"schema":{}}]}"#,
            r#"streams[0] is missing field "tap_stream_id""#,
        ),
        (
            r#"{"streams":[{"tap_stream_id":"a","schema":{}},{"tap_stream_id":"b"}]}"#,
            r#"stream "b": missing field "schema""#,
        ),
        (
            r#"{"streams":[{"tap_stream_id":"a","schema":{},"selected":"true"}]}"#,
            r#"stream "a": field "selected" must be a boolean"#,
        ),
        (
            r#"{"streams":[{"tap_stream_id":"a","schema":{},"metadata":[{"breadcrumb":["properties","x"],"metadata":{"selected":"yes"}}]}]}"#,
            r#"stream "a": metadata ["properties","x"]: field "selected" must be a boolean"#,
        ),
        (
            r#"{"streams":[{"tap_stream_id":"a","schema":{},"metadata":[{"breadcrumb":[],"metadata":{"table-key-properties":"id"}}]}]}"#,
            r#"stream "a": metadata []: field "table-key-properties" must be an array of strings"#,
        ),
        (
            r#"{"streams":[{"tap_stream_id":"a","schema":{},"metadata":[{"metadata":{}}]}]}"#,
            r#"stream "a": metadata entry is missing field "breadcrumb""#,
        ),
    ];
    for (text, message) in cases {
        let err = Catalog::from_json(text).unwrap_err();
        assert_eq!(err.to_string(), message, "{text}");
    }
    let e = entry(r#"{"tap_stream_id":"a","schema":{},"replication_method":"CDC"}"#);
    let err = e.replication_method().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidValue);
    assert_eq!(
        err.to_string(),
        r#"stream "a": unknown replication method "CDC"; expected FULL_TABLE, INCREMENTAL or LOG_BASED"#
    );
}

#[test]
fn from_path_loads_catalog_and_properties_files_and_names_the_file() {
    let dir = std::env::temp_dir().join(format!("singer-catalog-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("properties.json");
    std::fs::write(&good, format!("{{\n  \"streams\": [{PW_ENTRY}]\n}}\n")).unwrap();
    let catalog = Catalog::from_path(&good).unwrap();
    assert_eq!(catalog.selected_streams().count(), 1);

    let bad = dir.join("catalog.json");
    std::fs::write(
        &bad,
        "{\n  \"streams\": [\n    {\"tap_stream_id\": \"a\" \"schema\": {}}\n]}\n",
    )
    .unwrap();
    let err = Catalog::from_path(&bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidJson);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: invalid JSON at line 3, column 27: expected `,` or `}}`",
            bad.display()
        )
    );

    std::fs::write(&bad, "").unwrap();
    assert_eq!(
        Catalog::from_path(&bad).unwrap_err().to_string(),
        format!(
            "{}: the file is empty; expected a JSON object",
            bad.display()
        )
    );

    std::fs::write(
        &bad,
        r#"{"streams":[{"tap_stream_id":"a","schema":{},"metadata":{}}]}"#,
    )
    .unwrap();
    assert_eq!(
        Catalog::from_path(&bad).unwrap_err().to_string(),
        format!(
            r#"{}: stream "a": field "metadata" must be an array"#,
            bad.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
