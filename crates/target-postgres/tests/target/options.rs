//! The pipelinewise options that shape the target database beyond the
//! rows: select permissions, `schema_mapping.<source>.indices` and
//! `data_flattening_max_level`.

use serde_json::{json, Value};

use crate::*;

/// Whether `role` has `privilege` on the schema and on the table.
async fn privileges(db: &pg_testkit::TestDb, role: &str, schema: &str, table: &str) -> Value {
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let rows = db
        .query_json(&format!(
            "SELECT has_schema_privilege({r}, {s}, 'USAGE') AS usage, \
                    has_table_privilege({r}, {t}, 'SELECT') AS select",
            r = lit(role),
            s = lit(schema),
            t = lit(&format!("{}.{}", q(schema), q(table))),
        ))
        .await;
    rows[0].clone()
}

#[tokio::test]
async fn select_permissions_are_granted_on_schemas_and_tables() {
    let db = pg_testkit::cluster().create_database().await;
    // Roles are cluster-wide: name them after the test's database.
    let (user, group, other) = (
        format!("{}_ro", db.name()),
        format!("{} Read \"Group\"", db.name()),
        format!("{}_other", db.name()),
    );
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    db.execute_batch(&format!(
        "CREATE ROLE {}; CREATE ROLE {}; CREATE ROLE {}",
        q(&user),
        q(&group),
        q(&other)
    ))
    .await;
    let config = json!({
        "default_target_schema_select_permissions": {"users": [user], "groups": group},
        "schema_mapping": {"src": {"target_schema": "Mapped Schema",
                                   "target_schema_select_permissions": other}},
        "batch_size_rows": 1
    });
    // A second table appears after the first one has rows; a mapped source
    // schema has its own roles.
    let input = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "one"})),
        schema(
            "public-Later Table",
            json!({"id": {"type": "integer"}}),
            &["id"],
        ),
        record("public-Later Table", json!({"id": 1})),
        schema("src-m", json!({"id": {"type": "integer"}}), &["id"]),
        record("src-m", json!({"id": 1})),
    ]);
    let r = run(&db, config.clone(), &input).success();
    let yes = json!({"usage": true, "select": true});
    let no = json!({"usage": false, "select": false});
    for role in [&user, &group] {
        assert_eq!(privileges(&db, role, "tgt", "t").await, yes, "{role}");
        assert_eq!(privileges(&db, role, "tgt", "Later Table").await, yes);
        assert_eq!(privileges(&db, role, "Mapped Schema", "m").await, no);
    }
    assert_eq!(privileges(&db, &other, "tgt", "t").await, no);
    assert_eq!(privileges(&db, &other, "Mapped Schema", "m").await, yes);
    // Once per table per run, not per batch.
    assert_eq!(r.stderr.matches("granted USAGE").count(), 3, "{}", r.stderr);

    // A table that already exists (created without grants) gets them when
    // the target first uses it.
    db.execute_batch("CREATE TABLE tgt.pre (id bigint PRIMARY KEY)")
        .await;
    assert_eq!(privileges(&db, &user, "tgt", "pre").await["select"], false);
    let input = lines(&[
        schema("public-pre", json!({"id": {"type": "integer"}}), &["id"]),
        record("public-pre", json!({"id": 1})),
    ]);
    run(&db, config, &input).success();
    assert_eq!(privileges(&db, &user, "tgt", "pre").await, yes);
}

#[tokio::test]
async fn a_missing_role_is_an_error_naming_it() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "one"})),
    ]);
    let missing = format!("{}_no_such_role", db.name());
    let err = run(
        &db,
        json!({"default_target_schema_select_permissions": ["PUBLIC", missing]}),
        &input,
    )
    .failure();
    assert!(
        err.contains(&format!(
            "role \"{missing}\" (select permissions) does not exist"
        )),
        "{err}"
    );
    assert!(err.contains("stream public-t, line 1"), "{err}");
    // Nothing was created.
    assert_eq!(
        db.query_json("SELECT 1 FROM pg_namespace WHERE nspname = 'tgt'")
            .await
            .len(),
        0
    );
}

/// The non-primary indexes of `table`: name and columns in order.
async fn indexes(db: &pg_testkit::TestDb, table: &str) -> Vec<Value> {
    db.query_json(&format!(
        "SELECT c.relname::text AS name, \
                array_agg(a.attname::text ORDER BY k.ord) AS columns \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = '{table}'::regclass AND NOT i.indisprimary \
         GROUP BY c.relname ORDER BY 1"
    ))
    .await
}

#[tokio::test]
async fn schema_mapping_indices_are_created_once() {
    let db = pg_testkit::cluster().create_database().await;
    let long = "l".repeat(60);
    let config = json!({
        "batch_size_rows": 1,
        "data_flattening_max_level": 1,
        "schema_mapping": {"public": {"target_schema": "tgt", "indices": {
            "t": ["Mixed Col", "id, name", long, "o__k"]}}}
    });
    let input = lines(&[
        schema(
            "public-t",
            json!({"id": {"type": "integer"}, "name": {"type": "string"},
                   "Mixed Col": {"type": "string"}, long.clone(): {"type": "string"},
                   "o": {"type": "object", "properties": {"k": {"type": "integer"}}}}),
            &["id"],
        ),
        record("public-t", json!({"id": 1, "name": "a", "Mixed Col": "x"})),
        record("public-t", json!({"id": 2, "name": "b", "Mixed Col": "y"})),
        state(json!({"n": 1})),
        record("public-t", json!({"id": 3, "name": "c", "Mixed Col": "z"})),
    ]);
    let long_index = target_postgres::schema::short_name(&format!("i_t_{long}"));
    assert_eq!(long_index.len(), 63);
    let expected = {
        let mut v = vec![
            json!({"name": "i_t_Mixed Col", "columns": ["Mixed Col"]}),
            json!({"name": "i_t_id_name", "columns": ["id", "name"]}),
            json!({"name": "i_t_o__k", "columns": ["o__k"]}),
            json!({"name": long_index, "columns": [long]}),
        ];
        v.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        v
    };
    let r = run(&db, config.clone(), &input).success();
    assert_eq!(indexes(&db, "tgt.t").await, expected);
    assert_eq!(r.stderr.matches("is in place").count(), 4, "{}", r.stderr);
    // A second run over the existing table finds them in place.
    run(&db, config, &input).success();
    assert_eq!(indexes(&db, "tgt.t").await, expected);
    assert_eq!(
        db.query_json("SELECT count(*) AS n FROM tgt.t").await,
        vec![json!({"n": 3})]
    );

    let bad = json!({"schema_mapping": {"public": {"target_schema": "tgt",
        "indices": {"t": ["id", "nope"]}}}});
    let err = run(&db, bad, &input).failure();
    assert!(
        err.contains(
            "schema_mapping.public.indices.t: \"nope\" is not a column of stream public-t"
        ),
        "{err}"
    );
}

fn nested_input() -> String {
    lines(&[
        schema(
            "public-n",
            json!({
                "id": {"type": "integer"},
                "a": {"type": ["null", "object"], "properties": {
                    "x": {"type": ["null", "integer"]},
                    "b": {"type": ["null", "object"], "properties": {
                        "y": {"type": ["null", "string"]},
                        "z": {"type": ["null", "array"]}}}}},
                "free": {"type": ["null", "object"]},
                "Mixed Case": {"type": "object", "properties": {
                    "Inner Key": {"type": "string"}}}
            }),
            &["id"],
        ),
        record(
            "public-n",
            json!({"id": 1, "a": {"x": 1, "b": {"y": "deep", "z": [1, "2"]}},
                   "free": {"k": "v"}, "Mixed Case": {"Inner Key": "mk"}}),
        ),
        record("public-n", json!({"id": 2, "a": null, "free": null})),
        record("public-n", json!({"id": 3, "a": {"x": 3, "b": null}})),
        record("public-n", json!({"id": 4, "a": {"b": {"y": "only y"}}})),
    ])
}

async fn columns(db: &pg_testkit::TestDb, schema: &str) -> Vec<String> {
    db.query_json(&format!(
        "SELECT attname::text AS c, format_type(atttypid, atttypmod) AS ty FROM pg_attribute \
         WHERE attrelid = '{schema}.n'::regclass AND attnum > 0 AND NOT attisdropped \
         ORDER BY attnum"
    ))
    .await
    .iter()
    .map(|r| format!("{} {}", r["c"].as_str().unwrap(), r["ty"].as_str().unwrap()))
    .collect()
}

#[tokio::test]
async fn flattening_level_0_keeps_objects_as_jsonb() {
    let db = pg_testkit::cluster().create_database().await;
    run(&db, json!({}), &nested_input()).success();
    assert_eq!(
        columns(&db, "tgt").await,
        ["id bigint", "a jsonb", "free jsonb", "Mixed Case jsonb"]
    );
    assert_eq!(
        db.query_json("SELECT * FROM tgt.n ORDER BY id").await,
        vec![
            json!({"id": 1, "a": {"x": 1, "b": {"y": "deep", "z": [1, "2"]}},
                   "free": {"k": "v"}, "Mixed Case": {"Inner Key": "mk"}}),
            json!({"id": 2, "a": null, "free": null, "Mixed Case": null}),
            json!({"id": 3, "a": {"x": 3, "b": null}, "free": null, "Mixed Case": null}),
            json!({"id": 4, "a": {"b": {"y": "only y"}}, "free": null, "Mixed Case": null}),
        ]
    );
}

#[tokio::test]
async fn flattening_level_1_makes_parent_child_columns() {
    let db = pg_testkit::cluster().create_database().await;
    run(
        &db,
        json!({"data_flattening_max_level": 1}),
        &nested_input(),
    )
    .success();
    assert_eq!(
        columns(&db, "tgt").await,
        [
            "id bigint",
            "a__x bigint",
            "a__b jsonb",
            "free jsonb",
            "Mixed Case__Inner Key text"
        ]
    );
    assert_eq!(
        db.query_json("SELECT * FROM tgt.n ORDER BY id").await,
        vec![
            json!({"id": 1, "a__x": 1, "a__b": {"y": "deep", "z": [1, "2"]},
                   "free": {"k": "v"}, "Mixed Case__Inner Key": "mk"}),
            json!({"id": 2, "a__x": null, "a__b": null, "free": null, "Mixed Case__Inner Key": null}),
            json!({"id": 3, "a__x": 3, "a__b": null, "free": null, "Mixed Case__Inner Key": null}),
            json!({"id": 4, "a__x": null, "a__b": {"y": "only y"}, "free": null,
                   "Mixed Case__Inner Key": null}),
        ]
    );
}

#[tokio::test]
async fn flattening_level_2_and_absent_nested_keys_keep_values() {
    let db = pg_testkit::cluster().create_database().await;
    let config = json!({"data_flattening_max_level": 2});
    run(&db, config.clone(), &nested_input()).success();
    assert_eq!(
        columns(&db, "tgt").await,
        [
            "id bigint",
            "a__x bigint",
            "a__b__y text",
            "a__b__z jsonb",
            "free jsonb",
            "Mixed Case__Inner Key text"
        ]
    );
    let row = |id: i64, x: Value, y: Value, z: Value, free: Value, mk: Value| {
        json!({"id": id, "a__x": x, "a__b__y": y, "a__b__z": z, "free": free,
               "Mixed Case__Inner Key": mk})
    };
    let n = Value::Null;
    assert_eq!(
        db.query_json("SELECT * FROM tgt.n ORDER BY id").await,
        vec![
            row(
                1,
                json!(1),
                json!("deep"),
                json!([1, "2"]),
                json!({"k": "v"}),
                json!("mk")
            ),
            row(2, n.clone(), n.clone(), n.clone(), n.clone(), n.clone()),
            row(3, json!(3), n.clone(), n.clone(), n.clone(), n.clone()),
            row(
                4,
                n.clone(),
                json!("only y"),
                n.clone(),
                n.clone(),
                n.clone()
            ),
        ]
    );
    // Updates: a nested key that is absent keeps the column's value; a
    // nested object that is null sets its columns to NULL.
    let updates = lines(&[
        schema(
            "public-n",
            nested_input()
                .lines()
                .next()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["schema"]["properties"].clone())
                .unwrap(),
            &["id"],
        ),
        record("public-n", json!({"id": 1, "a": {"x": 10}})),
        record("public-n", json!({"id": 3, "a": {"b": {"y": "new"}}})),
        record("public-n", json!({"id": 4, "a": {"x": 4, "b": null}})),
    ]);
    run(&db, config, &updates).success();
    assert_eq!(
        db.query_json("SELECT * FROM tgt.n ORDER BY id").await,
        vec![
            row(
                1,
                json!(10),
                json!("deep"),
                json!([1, "2"]),
                json!({"k": "v"}),
                json!("mk")
            ),
            row(2, n.clone(), n.clone(), n.clone(), n.clone(), n.clone()),
            row(3, json!(3), json!("new"), n.clone(), n.clone(), n.clone()),
            row(4, json!(4), n.clone(), n.clone(), n.clone(), n.clone()),
        ]
    );
}

#[tokio::test]
async fn flattening_names_shortened_and_collisions_are_errors() {
    let db = pg_testkit::cluster().create_database().await;
    let (p, c) = ("p".repeat(40), "c".repeat(40));
    let input = lines(&[
        schema(
            "public-n",
            json!({"id": {"type": "integer"},
                   p.clone(): {"type": "object", "properties": {c.clone(): {"type": "string"}}}}),
            &["id"],
        ),
        record("public-n", json!({"id": 1, p.clone(): {c.clone(): "v"}})),
    ]);
    run(&db, json!({"data_flattening_max_level": 1}), &input).success();
    let col = target_postgres::schema::short_name(&format!("{p}__{c}"));
    assert_eq!(
        columns(&db, "tgt").await,
        ["id bigint".to_owned(), format!("{col} text")]
    );
    let rows = db.query_json("SELECT * FROM tgt.n").await;
    assert_eq!(rows, vec![json!({"id": 1, col: "v"})]);

    let input = lines(&[schema(
        "public-k",
        json!({"id": {"type": "integer"}, "a__b": {"type": "string"},
               "a": {"type": "object", "properties": {"b": {"type": "string"}}}}),
        &["id"],
    )]);
    let err = run(&db, json!({"data_flattening_max_level": 1}), &input).failure();
    assert!(
        err.contains(r#"properties "a__b" and "a" → "b" both map to column "a__b""#),
        "{err}"
    );
}
