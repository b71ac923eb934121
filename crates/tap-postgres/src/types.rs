//! PostgreSQL column types as the tap sees them: what JSON Schema a column
//! gets in the catalog, and which [`Kind`] of encoder turns its text output
//! into JSON.
//!
//! Every type gets a schema; nothing is dropped as unsupported. Types
//! without a natural JSON form (interval, money, ranges, geometric, enums,
//! composites, bit strings, network types, xml, tsvector, …) are strings
//! holding PostgreSQL's own text output, which PostgreSQL reads back
//! exactly. Each property schema also carries `x-sql-datatype`, the exact
//! column type (`numeric(12,2)`, `timestamp with time zone`, `integer[]`),
//! so a PostgreSQL target can recreate it.
//!
//! Types are recognised by their built-in OIDs (stable across versions), or
//! by name for extension types (`hstore`, `citext`). Domains resolve to their
//! base type; arrays to their element type.

use serde_json::{json, Map, Value};

use crate::values::{ValueOptions, Widen};

/// How a column's text output becomes JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// smallint, integer, bigint, oid: the digits as a JSON number.
    Int {
        /// Smallest value.
        min: i128,
        /// Largest value.
        max: i128,
    },
    /// numeric: exact digits as a JSON number; NaN/±Infinity per option.
    Numeric,
    /// real, double precision: shortest exact digits; NaN/±Infinity per option.
    Float,
    /// boolean.
    Bool,
    /// A string type with an optional length limit (varchar(n), char(n)).
    Text {
        /// `maxLength` in characters.
        max_length: Option<u32>,
    },
    /// uuid.
    Uuid,
    /// json, jsonb: embedded as JSON.
    Json,
    /// hstore: an object of strings (or null).
    Hstore,
    /// bytea: hex or base64 per option.
    Bytea,
    /// date.
    Date,
    /// timestamp without time zone.
    Timestamp,
    /// timestamp with time zone.
    TimestampTz,
    /// time without time zone.
    Time,
    /// time with time zone.
    TimeTz,
    /// Anything else: PostgreSQL's text output as a string.
    Other,
    /// An array (any number of dimensions) of `element`, whose text form
    /// separates elements with `delimiter`.
    Array {
        /// The element kind.
        element: Box<Kind>,
        /// The element type's `typdelim` (`,` except `box`'s `;`).
        delimiter: u8,
    },
}

/// One row of `pg_type`, as discovery reads it.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    /// `pg_type.oid`.
    pub oid: u32,
    /// `typname`.
    pub name: String,
    /// `typtype`: b(ase), c(omposite), d(omain), e(num), p(seudo), r(ange), m(ultirange).
    pub typtype: u8,
    /// `typbasetype` (domains).
    pub base: u32,
    /// `typelem` (arrays).
    pub element: u32,
    /// `typcategory`.
    pub category: u8,
    /// `typdelim`.
    pub delimiter: u8,
}

/// Built-in type OIDs (`pg_type.dat`); they never change between versions.
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Looks a type up by OID (discovery loads all of `pg_type` once).
pub trait TypeLookup {
    /// The type with this OID, if known.
    fn type_info(&self, oid: u32) -> Option<&TypeInfo>;
}

impl<S: std::hash::BuildHasher> TypeLookup for std::collections::HashMap<u32, TypeInfo, S> {
    fn type_info(&self, oid: u32) -> Option<&TypeInfo> {
        self.get(&oid)
    }
}

/// The encoder kind of a column of type `type_oid` whose `atttypmod` is
/// `typmod` (for varchar/char lengths).
pub fn kind_of(types: &dyn TypeLookup, type_oid: u32, typmod: i32) -> Kind {
    let mut oid = type_oid;
    // Domains over domains: follow to the base type (bounded, catalogs can't loop).
    for _ in 0..32 {
        match types.type_info(oid) {
            Some(t) if t.typtype == b'd' && t.base != 0 => oid = t.base,
            _ => break,
        }
    }
    match oid {
        oid::INT2 => Kind::Int {
            min: i16::MIN.into(),
            max: i16::MAX.into(),
        },
        oid::INT4 => Kind::Int {
            min: i32::MIN.into(),
            max: i32::MAX.into(),
        },
        oid::INT8 => Kind::Int {
            min: i64::MIN.into(),
            max: i64::MAX.into(),
        },
        oid::OID => Kind::Int {
            min: 0,
            max: u32::MAX.into(),
        },
        oid::NUMERIC => Kind::Numeric,
        oid::FLOAT4 | oid::FLOAT8 => Kind::Float,
        oid::BOOL => Kind::Bool,
        oid::TEXT | oid::NAME | oid::CHAR => Kind::Text { max_length: None },
        oid::VARCHAR | oid::BPCHAR => Kind::Text {
            // typmod = length + 4 (VARHDRSZ); -1 means unlimited.
            max_length: (typmod >= 4).then(|| (typmod - 4) as u32),
        },
        oid::UUID => Kind::Uuid,
        oid::JSON | oid::JSONB => Kind::Json,
        oid::BYTEA => Kind::Bytea,
        oid::DATE => Kind::Date,
        oid::TIMESTAMP => Kind::Timestamp,
        oid::TIMESTAMPTZ => Kind::TimestampTz,
        oid::TIME => Kind::Time,
        oid::TIMETZ => Kind::TimeTz,
        _ => match types.type_info(oid) {
            Some(t) if t.category == b'A' && t.element != 0 => {
                let delimiter = types
                    .type_info(t.element)
                    .map(|e| e.delimiter)
                    .unwrap_or(b',');
                Kind::Array {
                    element: Box::new(kind_of(types, t.element, -1)),
                    delimiter,
                }
            }
            Some(t) if t.typtype == b'b' && t.name == "hstore" => Kind::Hstore,
            Some(t) if t.typtype == b'b' && t.name == "citext" => Kind::Text { max_length: None },
            _ => Kind::Other,
        },
    }
}

/// The JSON Schema of a column: nullable unless `nullable` is false (key
/// columns), with `x-sql-datatype` set to `sql_type`; narrow, plus what
/// `widen` says the values so far needed.
///
/// Narrow means what every common Singer target and validator takes
/// natively: numbers are `number` only, `format: date`/`date-time` only
/// for values RFC 3339 carries (time has none), array items are the element's schema
/// (no nested arrays), json is any JSON with `items: {}` (singer-python's
/// Transformer needs `items` for `array`). A value that needs more widens
/// the column ([`Widen`]): `number` + `string` for NaN/±Infinity, no
/// `format` for `infinity`/BC/year > 9999, items that may be
/// arrays, and for json, JSON text in strings (`contentMediaType:
/// application/json`) once a value is the JSON literal `null`.
pub fn column_schema(
    kind: &Kind,
    sql_type: &str,
    nullable: bool,
    opts: &ValueOptions,
    widen: Widen,
) -> Value {
    let mut schema = kind_schema(kind, nullable, opts, widen);
    if let Value::Object(map) = &mut schema {
        map.insert("x-sql-datatype".into(), Value::String(sql_type.into()));
    }
    schema
}

fn types(nullable: bool, names: &[&str]) -> Value {
    let mut v: Vec<Value> = Vec::with_capacity(names.len() + 1);
    if nullable {
        v.push("null".into());
    }
    v.extend(names.iter().map(|n| Value::String((*n).into())));
    Value::Array(v)
}

fn kind_schema(kind: &Kind, nullable: bool, opts: &ValueOptions, widen: Widen) -> Value {
    let number_types: &[&str] = if widen.contains(Widen::SPECIAL_NUMBER) {
        &["number", "string"]
    } else {
        &["number"]
    };
    let formatted = |format: &str| {
        if widen.contains(Widen::NO_FORMAT) {
            json!({ "type": types(nullable, &["string"]) })
        } else {
            json!({ "type": types(nullable, &["string"]), "format": format })
        }
    };
    match kind {
        Kind::Int { min, max } => {
            let mut m = Map::new();
            m.insert("type".into(), types(nullable, &["integer"]));
            m.insert("minimum".into(), json_int(*min));
            m.insert("maximum".into(), json_int(*max));
            Value::Object(m)
        }
        Kind::Numeric if opts.decimal_as_string => json!({
            "type": types(nullable, &["string"]),
            "format": "x-singer.decimal",
        }),
        Kind::Numeric | Kind::Float => json!({ "type": types(nullable, number_types) }),
        Kind::Bool => json!({ "type": types(nullable, &["boolean"]) }),
        Kind::Text { max_length } => {
            let mut m = Map::new();
            m.insert("type".into(), types(nullable, &["string"]));
            if let Some(n) = max_length {
                m.insert("maxLength".into(), json!(n));
            }
            Value::Object(m)
        }
        Kind::Uuid => json!({ "type": types(nullable, &["string"]), "format": "uuid" }),
        Kind::Json if widen.contains(Widen::JSON_TEXT) => json!({
            "type": types(nullable, &["string"]),
            "contentMediaType": "application/json",
        }),
        Kind::Json => json!({
            "type": types(nullable, &["object", "array", "string", "number", "boolean"]),
            "items": {},
        }),
        Kind::Hstore => json!({
            "type": types(nullable, &["object"]),
            "additionalProperties": { "type": ["null", "string"] },
        }),
        Kind::Bytea => json!({
            "type": types(nullable, &["string"]),
            "contentEncoding": opts.bytea.content_encoding(),
        }),
        Kind::Date => formatted("date"),
        Kind::Timestamp | Kind::TimestampTz => formatted("date-time"),
        // No `format: time`: RFC 3339 validators want an offset, which
        // singer-check-tap (`%H:%M:%S`) rejects, as it rejects fractions.
        Kind::Time | Kind::TimeTz => json!({ "type": types(nullable, &["string"]) }),
        Kind::Other => json!({ "type": types(nullable, &["string"]) }),
        Kind::Array { element, .. } => {
            // More than one dimension seen: an item is an element or a nested array.
            let mut item = kind_schema(element, true, opts, widen);
            if widen.contains(Widen::NESTED_ARRAY) {
                if let Some(Value::Array(t)) = item.get_mut("type") {
                    t.push("array".into());
                }
                // singer-python's Transformer needs `items` wherever `array` is.
                if let Value::Object(m) = &mut item {
                    m.insert("items".into(), json!({}));
                }
            }
            json!({ "type": types(nullable, &["array"]), "items": item })
        }
    }
}

fn json_int(n: i128) -> Value {
    // i128 → JSON number via text keeps every digit (arbitrary_precision).
    serde_json::from_str(&n.to_string()).expect("an integer is JSON")
}

/// Whether a column of this kind can be a replication key (ordered, and its
/// JSON form reads back as the same value).
pub fn can_be_replication_key(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Int { .. }
            | Kind::Numeric
            | Kind::Float
            | Kind::Text { .. }
            | Kind::Uuid
            | Kind::Date
            | Kind::Timestamp
            | Kind::TimestampTz
            | Kind::Time
    )
}
