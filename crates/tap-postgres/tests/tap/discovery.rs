//! Discovery: partitioned tables folded, views and materialized views,
//! foreign tables, names with case and spaces, metadata, and speed on a
//! database with 2,000 tables.

use std::time::Instant;

use pg_testkit::cluster;
use serde_json::{json, Value};

use crate::support::{config, discover, Files};

fn stream<'a>(catalog: &'a Value, id: &str) -> &'a Value {
    catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tap_stream_id"] == id)
        .unwrap_or_else(|| panic!("no stream {id} in {catalog}"))
}

fn stream_md(s: &Value) -> &Value {
    &s["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["breadcrumb"] == json!([]))
        .unwrap()["metadata"]
}

fn prop_md<'a>(s: &'a Value, col: &str) -> &'a Value {
    &s["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["breadcrumb"] == json!(["properties", col]))
        .unwrap()["metadata"]
}

#[tokio::test]
async fn discovers_tables_partitions_views_and_foreign_tables() {
    let db = cluster().create_database().await;
    db.execute_batch(
        r#"
        CREATE SCHEMA other;
        CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(12,2) NOT NULL, note text);
        CREATE TABLE events (id int, region text, payload jsonb, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
        CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
        CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
        CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;
        CREATE MATERIALIZED VIEW order_totals AS SELECT count(*) AS n FROM orders;
        CREATE TABLE other."Mixed Case" ("Some Col" int, "select" text);
        CREATE EXTENSION file_fdw;
        CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
        CREATE FOREIGN TABLE ext_data (a int) SERVER files OPTIONS (filename '/dev/null');
        "#,
    )
    .await;
    let files = Files::new();
    let catalog = discover(&files, &config(&db, json!({})));
    let ids: Vec<&str> = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tap_stream_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "other-Mixed Case",
            "public-big_orders",
            "public-events",
            "public-ext_data",
            "public-order_totals",
            "public-orders"
        ],
        "partitions are folded into their parent; order is schema, name"
    );

    let orders = stream(&catalog, "public-orders");
    assert_eq!(orders["stream"], "orders");
    assert_eq!(orders["table_name"], "orders");
    let md = stream_md(orders);
    assert_eq!(md["table-key-properties"], json!(["id"]));
    assert_eq!(md["schema-name"], "public");
    assert_eq!(md["database-name"], db.name());
    assert_eq!(md["is-view"], false);
    assert_eq!(md["valid-replication-keys"], json!(["id", "total", "note"]));
    assert_eq!(
        prop_md(orders, "id"),
        &json!({"sql-datatype": "bigint", "inclusion": "automatic", "selected-by-default": true})
    );
    assert_eq!(
        prop_md(orders, "total"),
        &json!({"sql-datatype": "numeric", "inclusion": "available", "selected-by-default": true})
    );
    assert_eq!(
        orders["schema"]["properties"]["total"],
        json!({"type": ["null", "number"], "x-sql-datatype": "numeric(12,2)"})
    );

    let events = stream(&catalog, "public-events");
    assert_eq!(stream_md(events)["row-count"], -1, "never analyzed");
    assert_eq!(
        stream_md(events)["table-key-properties"],
        json!(["id", "region"])
    );
    let props: Vec<&String> = events["schema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(props, ["id", "region", "payload"]);

    assert_eq!(
        stream_md(stream(&catalog, "public-big_orders"))["is-view"],
        true
    );
    assert_eq!(
        stream_md(stream(&catalog, "public-big_orders"))["table-key-properties"],
        json!([])
    );
    assert_eq!(
        stream_md(stream(&catalog, "public-order_totals"))["is-view"],
        true
    );
    assert_eq!(
        stream_md(stream(&catalog, "public-ext_data"))["is-view"],
        false
    );
    let mixed = stream(&catalog, "other-Mixed Case");
    assert_eq!(mixed["stream"], "Mixed Case");
    assert!(mixed["schema"]["properties"]["Some Col"].is_object());

    // filter_schemas as a comma-separated string, filter_table as a list.
    let only = discover(&files, &config(&db, json!({"filter_schemas": "other, x"})));
    assert_eq!(only["streams"].as_array().unwrap().len(), 1);
    let only = discover(
        &files,
        &config(&db, json!({"filter_table": ["orders", "other.Mixed Case"]})),
    );
    let ids: Vec<&str> = only["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tap_stream_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["other-Mixed Case", "public-orders"]);
}

#[tokio::test]
async fn only_readable_tables_and_columns_are_discovered() {
    let db = cluster().create_database().await;
    let role = format!("reader_{}", db.name());
    db.execute_batch(&format!(
        r#"
        CREATE TABLE open (id int PRIMARY KEY, secret text, public text);
        CREATE TABLE closed (id int);
        CREATE ROLE {role} LOGIN;
        GRANT SELECT (id, public) ON open TO {role};
        "#
    ))
    .await;
    let files = Files::new();
    let catalog = discover(&files, &config(&db, json!({"user": role})));
    let streams = catalog["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{catalog}");
    let props: Vec<&String> = streams[0]["schema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(props, ["id", "public"]);
    db.execute_batch(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .await;
}

#[tokio::test]
async fn discovery_of_2000_tables_takes_seconds_not_minutes() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "DO $$ BEGIN FOR i IN 1..2000 LOOP
           EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, a text, b numeric(10,2), c timestamptz, d int[])', i);
         END LOOP; END $$;",
    )
    .await;
    let files = Files::new();
    let started = Instant::now();
    let catalog = discover(&files, &config(&db, json!({})));
    let took = started.elapsed();
    assert_eq!(catalog["streams"].as_array().unwrap().len(), 2000);
    assert!(
        took.as_secs() < 15,
        "discovery of 2000 tables took {took:?}"
    );
    eprintln!("discovery of 2000 tables: {took:?}");
}

#[tokio::test]
async fn discover_accepts_and_ignores_state_as_meltano_passes_it() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE t (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg = files.write("config.json", &config(&db, json!({})));
    let state = files.write(
        "state.json",
        &json!({"bookmarks": {"public-t": {"replication_key_value": 1}}}),
    );
    let out = crate::support::tap()
        .arg("--config")
        .arg(&cfg)
        .arg("--state")
        .arg(&state)
        .arg("--discover")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(catalog["streams"][0]["tap_stream_id"], "public-t");
}
