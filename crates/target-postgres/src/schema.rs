//! From a SCHEMA message to the table a stream wants: its name, its columns
//! with their PostgreSQL types, its key. Pure: nothing here talks to the
//! server ([`crate::ddl`] makes the table match).
//!
//! Rules (the README's "target-postgres" section is the user-facing copy):
//! - Table: the part of the stream name after the first `-` (the source
//!   schema prefix), or the whole name without one; Macrometa's
//!   `target_table` replaces it for every stream. Schema: see
//!   [`TargetConfig::target_schema`].
//! - Names are kept as the source wrote them (case, spaces, reserved
//!   words); they are quoted wherever they reach SQL. A name longer than 63
//!   bytes (PostgreSQL's limit) becomes its first 54 bytes (at a character
//!   boundary), `_` and 8 hex digits of a hash of the whole name, so the same
//!   name always maps to the same column. Two properties that end up with the
//!   same column name are an error naming both.
//! - Types: a property's `x-sql-datatype` wins (our tap writes the source's
//!   exact type); the type derived from the JSON Schema is kept as the
//!   fallback for when that type does not exist in the target (e.g. an enum).
//!   Derived: integer → bigint, number → numeric (never a float), boolean →
//!   boolean, string → text, or timestamptz / date / time by `format`,
//!   `x-singer.decimal` → numeric; unions (`type` lists, `anyOf`, `oneOf`)
//!   unwrap to the natural type when their non-null branches agree
//!   (integer + number → numeric; strings of several formats → text), see
//!   [`derived_type`]; an array of one scalar item type → that type's
//!   array (`text[]`); object, other arrays and unions, untyped → jsonb.
//! - Flattening (`data_flattening_max_level` = N, default 0): an object
//!   property whose type includes `object` and that has non-empty
//!   `properties`, at depth < N, is replaced in place by its children's
//!   columns, named by the path joined with `__` (`a__b__c`), then
//!   shortened like any name. Beyond N, or without `properties`, the value
//!   stays one jsonb column. (The records are flattened the same way by
//!   [`crate::encode`].)
//! - Metadata columns, when enabled, come last and win over properties of
//!   the same name.
//! - Grants and indexes: the roles of `target_schema_select_permissions`
//!   (or the default) and the `indices` of the stream's source schema and
//!   table are resolved here; [`crate::ddl`] applies them.

use serde_json::{Map, Value};
use singer::SchemaMessage;

use crate::config::TargetConfig;
use crate::error::{Error, Result};

/// PostgreSQL's identifier length limit in bytes.
pub const MAX_IDENT_BYTES: usize = 63;

/// A metadata column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    /// `_sdc_extracted_at`: the RECORD's `time_extracted`.
    ExtractedAt,
    /// `_sdc_received_at`: when the target read the record.
    ReceivedAt,
    /// `_sdc_batched_at`: when the batch was merged (the transaction's time).
    BatchedAt,
    /// `_sdc_deleted_at`: from the record; non-null marks a delete.
    DeletedAt,
    /// `_sdc_lsn`: from the record.
    Lsn,
    /// `_sdc_table_version`: the RECORD's `version`.
    TableVersion,
}

impl Meta {
    /// Every metadata column, in table order.
    pub const ALL: [Meta; 6] = [
        Meta::ExtractedAt,
        Meta::ReceivedAt,
        Meta::BatchedAt,
        Meta::DeletedAt,
        Meta::Lsn,
        Meta::TableVersion,
    ];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Meta::ExtractedAt => "_sdc_extracted_at",
            Meta::ReceivedAt => "_sdc_received_at",
            Meta::BatchedAt => "_sdc_batched_at",
            Meta::DeletedAt => "_sdc_deleted_at",
            Meta::Lsn => "_sdc_lsn",
            Meta::TableVersion => "_sdc_table_version",
        }
    }

    /// The column type.
    pub fn sql_type(self) -> &'static str {
        match self {
            Meta::Lsn | Meta::TableVersion => "bigint",
            _ => "timestamp with time zone",
        }
    }
}

/// How a string value of a bytea column is encoded (`contentEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinaryEncoding {
    /// Hex digits, with or without a leading `\x` (our tap's default).
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// One column a stream wants.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// The property name in the records (empty for metadata columns); for
    /// a flattened property, the path joined by `__`.
    pub property: String,
    /// The path of property names from the record to the value: one name,
    /// or more for a flattened property (empty for metadata columns).
    pub path: Vec<String>,
    /// The column name (the property name, shortened if too long).
    pub name: String,
    /// The wanted type: `x-sql-datatype`, or derived.
    pub sql_type: String,
    /// The derived type, used when `sql_type` does not exist in the target.
    pub fallback_type: String,
    /// `contentEncoding` of a string property.
    pub encoding: BinaryEncoding,
    /// The property's strings hold JSON text (`contentMediaType:
    /// application/json`): a json/jsonb column loads their content.
    pub json_text: bool,
    /// Which metadata column this is, if it is one.
    pub meta: Option<Meta>,
}

/// The table a stream wants.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// The stream name.
    pub stream: String,
    /// The target table.
    pub table: pg::QualifiedName,
    /// Columns: properties in schema order, then metadata columns.
    pub columns: Vec<ColumnSpec>,
    /// Indices into `columns` of the key, in `key_properties` order.
    pub key: Vec<usize>,
    /// The SCHEMA's JSON Schema, for `validate_records`.
    pub json_schema: Value,
    /// Roles granted USAGE on the schema and SELECT on the table.
    pub grantees: Vec<String>,
    /// Indexes to create (`schema_mapping.<source>.indices`).
    pub indices: Vec<IndexSpec>,
}

/// An index from `schema_mapping.<source>.indices.<table>`. Each entry of
/// the list is one index: a column name, or (as in pipelinewise) several
/// separated by commas for a multi-column index; a name is a property or
/// column name of the stream (a flattened `parent__child` too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// `i_<table>_<col>[_<col>…]`, shortened like any name over 63 bytes.
    pub name: String,
    /// The column names, in index order.
    pub columns: Vec<String>,
}

impl StreamSpec {
    /// The spec for a SCHEMA message under `config`.
    pub fn from_message(msg: &SchemaMessage, config: &TargetConfig) -> Result<StreamSpec> {
        let keys = match &msg.key_properties {
            Some(k) => k.clone(),
            None if config.primary_key_required => {
                return Err(Error::input(
                    "SCHEMA has no key_properties and primary_key_required is true \
                     (set primary_key_required to false to load key-less streams)",
                ))
            }
            None => Vec::new(),
        };
        if keys.is_empty() && config.primary_key_required {
            return Err(Error::input(
                "SCHEMA has empty key_properties and primary_key_required is true \
                 (set primary_key_required to false to load key-less streams)",
            ));
        }
        let (source_schema, table) = split_stream(&msg.stream);
        let table_name = config
            .target_table
            .clone()
            .unwrap_or_else(|| table.to_owned());
        let table = pg::QualifiedName::new(
            short_name(&config.target_schema(source_schema)),
            short_name(&table_name),
        );
        let properties = msg
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                Error::input(
                    "SCHEMA has no \"properties\" object, so it defines no columns \
                     (a table needs at least one)",
                )
            })?;
        let mut columns = Vec::with_capacity(properties.len() + 6);
        push_properties(&mut columns, properties, &[], config);
        if config.metadata_columns {
            for meta in Meta::ALL {
                columns.push(ColumnSpec {
                    property: String::new(),
                    path: Vec::new(),
                    name: meta.name().to_owned(),
                    sql_type: meta.sql_type().to_owned(),
                    fallback_type: meta.sql_type().to_owned(),
                    encoding: BinaryEncoding::Hex,
                    json_text: false,
                    meta: Some(meta),
                });
            }
        }
        if columns.is_empty() {
            return Err(Error::input(
                "SCHEMA defines no columns: its \"properties\" is empty \
                 (a table needs at least one)",
            ));
        }
        for (i, a) in columns.iter().enumerate() {
            if let Some(b) = columns[..i].iter().find(|b| b.name == a.name) {
                return Err(Error::input(format!(
                    "properties {} and {} both map to column {:?}",
                    b.describe(),
                    a.describe(),
                    a.name
                )));
            }
        }
        let mut key = Vec::with_capacity(keys.len());
        for k in &keys {
            match columns
                .iter()
                .position(|c| c.meta.is_none() && &c.property == k)
            {
                Some(i) => key.push(i),
                None => {
                    return Err(Error::input(format!(
                        "key property {k:?} is not among the schema's properties"
                    )))
                }
            }
        }
        let mut indices: Vec<IndexSpec> = Vec::new();
        for entry in config.indices(source_schema, &table_name) {
            let find = |n: &str| {
                columns
                    .iter()
                    .position(|c| !n.is_empty() && (c.property == n || c.name == n))
            };
            let cols = match find(entry) {
                Some(i) => vec![i],
                None => entry
                    .split(',')
                    .map(|n| {
                        find(n.trim()).ok_or_else(|| {
                            Error::config(format!(
                                "schema_mapping.{}.indices.{table_name}: {:?} is not a column \
                                 of stream {}",
                                source_schema.unwrap_or(""),
                                n.trim(),
                                msg.stream
                            ))
                        })
                    })
                    .collect::<Result<Vec<usize>>>()?,
            };
            let names: Vec<String> = cols.iter().map(|&i| columns[i].name.clone()).collect();
            let name = short_name(&format!("i_{}_{}", table.name, names.join("_")));
            if !indices.iter().any(|i| i.name == name) {
                indices.push(IndexSpec {
                    name,
                    columns: names,
                });
            }
        }
        Ok(StreamSpec {
            stream: msg.stream.clone(),
            table,
            columns,
            key,
            json_schema: msg.schema.clone(),
            grantees: config.grantees(source_schema).to_vec(),
            indices,
        })
    }

    /// The index of a metadata column, if the spec has it.
    pub fn meta_index(&self, meta: Meta) -> Option<usize> {
        self.columns.iter().position(|c| c.meta == Some(meta))
    }

    /// The column that marks a record as a delete: the `_sdc_deleted_at`
    /// metadata column, or else a property of that name (a LOG_BASED tap's
    /// schema has one even when metadata columns are off).
    pub fn deleted_at_index(&self) -> Option<usize> {
        self.meta_index(Meta::DeletedAt).or_else(|| {
            self.columns
                .iter()
                .position(|c| c.meta.is_none() && c.name == Meta::DeletedAt.name())
        })
    }
}

impl ColumnSpec {
    /// The property for messages: `"a"`, or `"a" → "b"` when flattened.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self.path.iter().map(|p| format!("{p:?}")).collect();
        if parts.is_empty() {
            format!("{:?}", self.name)
        } else {
            parts.join(" → ")
        }
    }
}

/// Appends the columns of `properties` (at `parent`'s path): one per
/// property, or, for an object property with `properties` above
/// `data_flattening_max_level`, its children's columns in its place.
fn push_properties(
    columns: &mut Vec<ColumnSpec>,
    properties: &Map<String, Value>,
    parent: &[String],
    config: &TargetConfig,
) {
    for (property, schema) in properties {
        if parent.is_empty()
            && config.metadata_columns
            && Meta::ALL.iter().any(|m| m.name() == property)
        {
            continue;
        }
        let mut path = parent.to_vec();
        path.push(property.clone());
        if parent.len() < config.flattening_max_level {
            if let Some(children) = flattenable(schema) {
                push_properties(columns, children, &path, config);
                continue;
            }
        }
        let fallback_type = derived_type(schema).to_owned();
        let sql_type = match schema.get("x-sql-datatype").and_then(Value::as_str) {
            Some(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => fallback_type.clone(),
        };
        let encoding = match schema.get("contentEncoding").and_then(Value::as_str) {
            Some(e) if e.eq_ignore_ascii_case("base64") => BinaryEncoding::Base64,
            _ => BinaryEncoding::Hex,
        };
        let json_text =
            schema.get("contentMediaType").and_then(Value::as_str) == Some("application/json");
        let flat = path.join("__");
        columns.push(ColumnSpec {
            name: short_name(&flat),
            property: flat,
            path,
            sql_type,
            fallback_type,
            encoding,
            json_text,
            meta: None,
        });
    }
}

/// The child properties of an object schema that flattening replaces by
/// columns: its type includes `object` and it has non-empty `properties`.
fn flattenable(schema: &Value) -> Option<&Map<String, Value>> {
    let object = match schema.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => false,
    };
    let properties = schema.get("properties")?.as_object()?;
    (object && !properties.is_empty()).then_some(properties)
}

/// `public-orders` → (`Some("public")`, `orders`); `orders` → (`None`,
/// `orders`).
pub fn split_stream(stream: &str) -> (Option<&str>, &str) {
    match stream.split_once('-') {
        Some((schema, table)) if !schema.is_empty() && !table.is_empty() => (Some(schema), table),
        _ => (None, stream),
    }
}

/// `name` if it fits in 63 bytes; else its first 54 bytes (at a character
/// boundary), `_` and 8 hex digits of its FNV-1a hash.
pub fn short_name(name: &str) -> String {
    if name.len() <= MAX_IDENT_BYTES {
        return name.to_owned();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut cut = MAX_IDENT_BYTES - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}", &name[..cut], (hash ^ (hash >> 32)) as u32)
}

/// The column type derived from a property's JSON Schema.
///
/// Unions — a `type` list, `anyOf`, `oneOf` (what SDK, Salesforce and
/// Pydantic-derived taps write for optional fields) — unwrap to the natural
/// type: `null` branches are dropped; branches of one type give that type;
/// integer with number gives numeric; strings of different formats give
/// text. An array whose items have one scalar type is a PostgreSQL array
/// of it (`text[]`). Anything else (objects, arrays of objects or of
/// arrays, string beside number, …) stays jsonb, which holds every JSON
/// value.
pub fn derived_type(schema: &Value) -> &'static str {
    let mut found: Vec<&'static str> = Vec::new();
    if !collect_types(schema, &mut found) || found.is_empty() {
        return "jsonb";
    }
    found.sort_unstable();
    found.dedup();
    match found.as_slice() {
        [one] => one,
        ["bigint", "numeric"] => "numeric",
        many if many.iter().all(|t| STRINGS.contains(t)) => "text",
        _ => "jsonb",
    }
}

/// The array type of a scalar column type; None for jsonb (items that
/// may be arrays or objects: ragged or mixed JSON arrays stay jsonb).
fn array_of(item: &str) -> Option<&'static str> {
    Some(match item {
        "bigint" => "bigint[]",
        "numeric" => "numeric[]",
        "boolean" => "boolean[]",
        "text" => "text[]",
        "timestamp with time zone" => "timestamp with time zone[]",
        "date" => "date[]",
        "time without time zone" => "time without time zone[]",
        _ => return None,
    })
}

/// Types a JSON string may load into, by `format`.
const STRINGS: [&str; 4] = [
    "text",
    "timestamp with time zone",
    "date",
    "time without time zone",
];

/// Adds the column type of each non-null branch of `schema` to `found`;
/// false when a branch has no scalar type (untyped, object, array).
fn collect_types(schema: &Value, found: &mut Vec<&'static str>) -> bool {
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key) {
            let Some(branches) = branches.as_array() else {
                return false;
            };
            return branches.iter().all(|b| collect_types(b, found));
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return false,
    };
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    let mut multi: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    multi.dedup();
    if multi.len() > 1 {
        // A type list of several JSON types: one column can hold them only as jsonb.
        return false;
    }
    match multi.first() {
        None => true, // a null branch
        Some(t) => {
            let column = match *t {
                "integer" => "bigint",
                "number" => "numeric",
                "boolean" => "boolean",
                "string" => match format {
                    "date-time" => "timestamp with time zone",
                    "date" => "date",
                    "time" => "time without time zone",
                    "x-singer.decimal" | "singer.decimal" => "numeric",
                    _ => "text",
                },
                "array" => match schema.get("items").map(derived_type) {
                    // One scalar item type: a one-dimensional PostgreSQL array.
                    Some(item) => match array_of(item) {
                        Some(a) => a,
                        None => return false,
                    },
                    None => return false,
                },
                _ => return false,
            };
            found.push(column);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> TargetConfig {
        let Value::Object(m) = v else { unreachable!() };
        TargetConfig::from_json(&m).unwrap()
    }

    fn schema(stream: &str, schema: Value, keys: Option<&[&str]>) -> SchemaMessage {
        SchemaMessage {
            stream: stream.into(),
            schema,
            key_properties: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
            bookmark_properties: vec![],
        }
    }

    #[test]
    fn derived_types() {
        for (s, t) in [
            (json!({"type": ["null", "integer"]}), "bigint"),
            (json!({"type": "number"}), "numeric"),
            (
                json!({"type": ["string"], "format": "date-time"}),
                "timestamp with time zone",
            ),
            (json!({"type": "string", "format": "date"}), "date"),
            (
                json!({"type": "string", "format": "time"}),
                "time without time zone",
            ),
            (json!({"type": "string"}), "text"),
            (json!({"type": "boolean"}), "boolean"),
            (json!({"type": "object"}), "jsonb"),
            (
                json!({"type": "array", "items": {"type": "integer"}}),
                "bigint[]",
            ),
            (
                json!({"type": ["array", "null"], "items": {"type": ["string"], "format": "date"}}),
                "date[]",
            ),
            (
                json!({"type": "array", "items": {"type": ["null", "integer", "array"]}}),
                "jsonb",
            ),
            (
                json!({"type": "array", "items": {"type": "object"}}),
                "jsonb",
            ),
            (json!({"type": "array"}), "jsonb"),
            (json!({"type": ["integer", "string"]}), "jsonb"),
            (json!({}), "jsonb"),
            (json!({"type": "null"}), "jsonb"),
            // Unions of other taps unwrap to the natural type (issue 11).
            (json!({"anyOf": [{"type": "string"}]}), "text"),
            (
                json!({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}),
                "timestamp with time zone",
            ),
            (
                json!({"oneOf": [{"type": "null"}, {"type": ["integer", "null"]}]}),
                "bigint",
            ),
            (
                json!({"anyOf": [{"type": "integer"}, {"type": "number"}]}),
                "numeric",
            ),
            (
                json!({"anyOf": [{"type": "string", "format": "date"}, {"type": "string"}]}),
                "text",
            ),
            (
                json!({"anyOf": [{"type": "string"}, {"type": "null"}, {"type": "string", "maxLength": 5}]}),
                "text",
            ),
            (
                json!({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]}),
                "text[]",
            ),
            (
                json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
                "jsonb",
            ),
            (
                json!({"anyOf": [{"type": "object"}, {"type": "null"}]}),
                "jsonb",
            ),
            (json!({"anyOf": [{}, {"type": "null"}]}), "jsonb"),
            (
                json!({"type": ["null", "string"], "format": "date"}),
                "date",
            ),
        ] {
            assert_eq!(derived_type(&s), t, "{s}");
        }
    }

    #[test]
    fn names_and_keys() {
        let c = config(json!({"default_target_schema": "tgt", "add_metadata_columns": true}));
        let m = schema(
            "public-Order Items",
            json!({"properties": {
                "ID": {"type": "integer"},
                "price": {"type": ["null", "number"], "x-sql-datatype": "numeric(12,2)"},
                "_sdc_lsn": {"type": ["null", "string"]}}}),
            Some(&["ID"]),
        );
        let s = StreamSpec::from_message(&m, &c).unwrap();
        assert_eq!(s.table, pg::QualifiedName::new("tgt", "Order Items"));
        let names: Vec<_> = s.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ID",
                "price",
                "_sdc_extracted_at",
                "_sdc_received_at",
                "_sdc_batched_at",
                "_sdc_deleted_at",
                "_sdc_lsn",
                "_sdc_table_version"
            ]
        );
        assert_eq!(s.columns[1].sql_type, "numeric(12,2)");
        assert_eq!(s.columns[1].fallback_type, "numeric");
        assert_eq!(s.key, vec![0]);
    }

    #[test]
    fn key_rules() {
        let c = config(json!({}));
        let m = schema("s-t", json!({"properties": {"a": {}}}), None);
        assert!(StreamSpec::from_message(&m, &c)
            .unwrap_err()
            .to_string()
            .contains("primary_key_required"));
        let m = schema("s-t", json!({"properties": {"a": {}}}), Some(&["b"]));
        assert!(StreamSpec::from_message(&m, &c)
            .unwrap_err()
            .to_string()
            .contains("\"b\""));
        let c = config(json!({"primary_key_required": false}));
        let m = schema("t", json!({"properties": {"a": {}}}), None);
        let s = StreamSpec::from_message(&m, &c).unwrap();
        assert_eq!(s.table, pg::QualifiedName::new("public", "t"));
        assert!(s.key.is_empty());
    }

    #[test]
    fn long_names_are_shortened_deterministically() {
        let long = "a".repeat(70);
        let s = short_name(&long);
        assert_eq!(s.len(), 63);
        assert_eq!(s, short_name(&long));
        assert_ne!(s, short_name(&format!("{long}b")));
        let uni = "é".repeat(40);
        assert!(short_name(&uni).len() <= 63);
        assert_eq!(short_name("short"), "short");
    }

    #[test]
    fn collisions_name_both() {
        let c = config(json!({"primary_key_required": false}));
        let base = "x".repeat(54);
        // Two different 70-byte names share 54 bytes but hash differently;
        // a real collision needs the same column name, e.g. a name equal to
        // another's shortened form.
        let long = format!("{base}{}", "y".repeat(16));
        let short = short_name(&long);
        let m = schema(
            "s-t",
            json!({"properties": {long.clone(): {}, short.clone(): {}}}),
            None,
        );
        let e = StreamSpec::from_message(&m, &c).unwrap_err().to_string();
        assert!(e.contains(&long) && e.contains(&short), "{e}");
    }

    fn nested() -> Value {
        json!({"properties": {
            "id": {"type": "integer"},
            "a": {"type": ["null", "object"], "properties": {
                "x": {"type": "integer"},
                "b": {"type": "object", "properties": {"y": {"type": "string"}}}}},
            "free": {"type": "object"},
            "empty": {"type": "object", "properties": {}}}})
    }

    fn names(s: &StreamSpec) -> Vec<&str> {
        s.columns.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn flattening_by_level() {
        let m = schema("s-t", nested(), Some(&["id"]));
        let spec = |level: u64| {
            let c = config(json!({"data_flattening_max_level": level}));
            StreamSpec::from_message(&m, &c).unwrap()
        };
        assert_eq!(names(&spec(0)), ["id", "a", "free", "empty"]);
        let s1 = spec(1);
        assert_eq!(names(&s1), ["id", "a__x", "a__b", "free", "empty"]);
        assert_eq!(s1.columns[1].path, ["a", "x"]);
        assert_eq!(s1.columns[2].sql_type, "jsonb");
        let s2 = spec(2);
        assert_eq!(names(&s2), ["id", "a__x", "a__b__y", "free", "empty"]);
        assert_eq!(s2.columns[2].sql_type, "text");
        assert_eq!(names(&spec(5)), names(&s2));
    }

    #[test]
    fn flattened_names_are_shortened_and_collisions_named() {
        let c = config(json!({"data_flattening_max_level": 1, "primary_key_required": false}));
        let long = "p".repeat(40);
        let m = schema(
            "s-t",
            json!({"properties": {long.clone(): {"type": "object",
                "properties": {"q".repeat(40): {"type": "integer"}}}}}),
            None,
        );
        let s = StreamSpec::from_message(&m, &c).unwrap();
        assert_eq!(
            s.columns[0].name,
            short_name(&format!("{long}__{}", "q".repeat(40)))
        );
        assert_eq!(s.columns[0].name.len(), 63);
        let m = schema(
            "s-t",
            json!({"properties": {"a__b": {"type": "integer"},
                "a": {"type": "object", "properties": {"b": {"type": "integer"}}}}}),
            None,
        );
        let e = StreamSpec::from_message(&m, &c).unwrap_err().to_string();
        assert!(
            e.contains(r#"properties "a__b" and "a" → "b" both map to column "a__b""#),
            "{e}"
        );
    }

    #[test]
    fn indices_and_grantees() {
        let c = config(json!({"data_flattening_max_level": 1,
            "default_target_schema_select_permissions": ["r"],
            "schema_mapping": {"s": {"target_schema": "tgt",
                "indices": {"t": ["id", "a__x, free", "id"]},
                "target_schema_select_permissions": "ro"}}}));
        let s = StreamSpec::from_message(&schema("s-t", nested(), Some(&["id"])), &c).unwrap();
        assert_eq!(
            s.indices,
            [
                IndexSpec {
                    name: "i_t_id".into(),
                    columns: vec!["id".into()]
                },
                IndexSpec {
                    name: "i_t_a__x_free".into(),
                    columns: vec!["a__x".into(), "free".into()]
                }
            ]
        );
        assert_eq!(s.grantees, ["ro"]);
        let s = StreamSpec::from_message(&schema("o-t", nested(), Some(&["id"])), &c).unwrap();
        assert!(s.indices.is_empty());
        assert_eq!(s.grantees, ["r"]);
        let c = config(json!({"schema_mapping": {"s": {"target_schema": "tgt",
                "indices": {"t": ["nope"]}}}}));
        let e = StreamSpec::from_message(&schema("s-t", nested(), Some(&["id"])), &c)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(r#"schema_mapping.s.indices.t: "nope" is not a column"#),
            "{e}"
        );
    }
}
