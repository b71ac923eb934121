//! Discovery: what the database holds, read from `pg_catalog` in a fixed
//! number of queries for the whole database (never one per table), and the
//! Singer catalog built from it.
//!
//! Streams are tables, partitioned tables (their partitions are folded into
//! them: reading the parent reads every partition, so partitions are not
//! streams of their own), views, materialized views and foreign tables that
//! the user may SELECT from, in `schema, name` order. Columns keep the
//! table's order; a column the user may not read is left out.
//!
//! The same [`discover`] runs at sync time for the selected tables, so a
//! sync works from the database as it is now (a column dropped or retyped
//! since discovery is an error naming it, see `sync`).

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use singer::{Catalog, CatalogEntry};
use tokio_postgres::Client;

use crate::types::{can_be_replication_key, column_schema, kind_of, Kind, TypeInfo};
use crate::values::{ValueOptions, Widen};

/// What kind of relation a stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    /// An ordinary table.
    Table,
    /// A partitioned table (with its partitions).
    Partitioned,
    /// A view.
    View,
    /// A materialized view.
    MaterializedView,
    /// A foreign table.
    Foreign,
}

impl RelKind {
    fn from_relkind(c: &str) -> Option<RelKind> {
        Some(match c {
            "r" => RelKind::Table,
            "p" => RelKind::Partitioned,
            "v" => RelKind::View,
            "m" => RelKind::MaterializedView,
            "f" => RelKind::Foreign,
            _ => return None,
        })
    }

    /// Views and materialized views (the peers' `is-view`).
    pub fn is_view(self) -> bool {
        matches!(self, RelKind::View | RelKind::MaterializedView)
    }
}

/// One column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Name.
    pub name: String,
    /// `format_type(atttypid, atttypmod)`: `numeric(12,2)`, `integer[]`.
    pub sql_type: String,
    /// `format_type(atttypid, NULL)` (the peers' `sql-datatype`).
    pub sql_type_name: String,
    /// The exact type to recreate the column with (`x-sql-datatype`):
    /// `sql_type`, or a domain's base type.
    pub create_type: String,
    /// Encoder kind.
    pub kind: Kind,
    /// `attnotnull`.
    pub not_null: bool,
}

/// One table, view or partitioned table.
#[derive(Debug, Clone)]
pub struct Table {
    /// `pg_class.oid`.
    pub oid: u32,
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub relkind: RelKind,
    /// Estimated rows (`reltuples`; partitions summed; -1 if never analyzed).
    pub row_count: i64,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Primary key columns, in key order.
    pub primary_key: Vec<String>,
    /// A unique key whose columns are all NOT NULL (the primary key when
    /// there is one): the order FULL_TABLE reads in, so it can resume.
    pub resume_key: Vec<String>,
    /// `relreplident`: d(efault), n(othing), f(ull), i(ndex).
    pub replica_identity: char,
}

impl Table {
    /// `<schema>-<table>`, case and spaces kept, as the peers.
    pub fn stream_id(&self) -> String {
        format!("{}-{}", self.schema, self.name)
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Which tables to look at.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these schemas.
    pub schemas: Option<Vec<String>>,
    /// Only these tables: `table` or `schema.table`.
    pub tables: Option<Vec<String>>,
}

impl Filter {
    fn keeps(&self, schema: &str, name: &str) -> bool {
        match &self.tables {
            None => true,
            Some(list) => list.iter().any(|t| match t.split_once('.') {
                Some((s, n)) if s == schema && n == name => true,
                _ => t == name,
            }),
        }
    }
}

const TABLES_SQL: &str = "
SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relreplident::text,
       CASE WHEN c.relkind = 'p' THEN coalesce((
            SELECT CASE WHEN bool_or(ch.reltuples < 0) THEN -1 ELSE sum(ch.reltuples)::int8 END
            FROM pg_partition_tree(c.oid) pt JOIN pg_class ch ON ch.oid = pt.relid
            WHERE pt.isleaf), 0)
       ELSE c.reltuples::int8 END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  AND ($1::text[] IS NULL OR n.nspname = ANY($1))
  AND has_any_column_privilege(c.oid, 'SELECT')
ORDER BY n.nspname, c.relname";

const COLUMNS_SQL: &str = "
SELECT a.attrelid::int8, a.attname, a.atttypid::int8, a.atttypmod,
       format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, NULL),
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END,
       a.attnotnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  AND ($1::text[] IS NULL OR n.nspname = ANY($1))
  AND has_column_privilege(c.oid, a.attnum, 'SELECT')
ORDER BY a.attrelid, a.attnum";

const KEYS_SQL: &str = "
SELECT i.indrelid::int8, i.indisprimary,
       array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       i.indexprs IS NULL AND i.indpred IS NULL AND NOT EXISTS (
             SELECT 1 FROM unnest(i.indkey) k(attnum)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE NOT a.attnotnull)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indisunique AND i.indisvalid AND i.indimmediate
  AND NOT c.relispartition
  AND ($1::text[] IS NULL OR n.nspname = ANY($1))
ORDER BY i.indrelid, NOT i.indisprimary, i.indnatts, i.indexrelid";

const TYPES_SQL: &str = "
SELECT oid::int8, typname::text, typtype::text, typbasetype::int8, typelem::int8,
       typcategory::text, typdelim::text
FROM pg_type";

fn first_byte(s: &str) -> u8 {
    s.as_bytes().first().copied().unwrap_or(0)
}

/// Reads every table, view and partitioned table that `filter` keeps.
pub async fn discover(
    client: &Client,
    filter: &Filter,
) -> Result<Vec<Table>, tokio_postgres::Error> {
    let schemas = filter.schemas.as_ref();
    let types: HashMap<u32, TypeInfo> = client
        .query(TYPES_SQL, &[])
        .await?
        .iter()
        .map(|r| {
            let info = TypeInfo {
                oid: r.get::<_, i64>(0) as u32,
                name: r.get(1),
                typtype: first_byte(r.get(2)),
                base: r.get::<_, i64>(3) as u32,
                element: r.get::<_, i64>(4) as u32,
                category: first_byte(r.get(5)),
                delimiter: first_byte(r.get(6)),
            };
            (info.oid, info)
        })
        .collect();

    let mut tables: Vec<Table> = Vec::new();
    let mut index: HashMap<u32, usize> = HashMap::new();
    for r in client.query(TABLES_SQL, &[&schemas]).await? {
        let schema: String = r.get(1);
        let name: String = r.get(2);
        if !filter.keeps(&schema, &name) {
            continue;
        }
        let Some(relkind) = RelKind::from_relkind(r.get(3)) else {
            continue;
        };
        let oid = r.get::<_, i64>(0) as u32;
        index.insert(oid, tables.len());
        tables.push(Table {
            oid,
            schema,
            name,
            relkind,
            row_count: r.get(5),
            columns: Vec::new(),
            primary_key: Vec::new(),
            resume_key: Vec::new(),
            replica_identity: r.get::<_, &str>(4).chars().next().unwrap_or('d'),
        });
    }
    for r in client.query(COLUMNS_SQL, &[&schemas]).await? {
        let Some(&i) = index.get(&(r.get::<_, i64>(0) as u32)) else {
            continue;
        };
        let type_oid = r.get::<_, i64>(2) as u32;
        let typmod: i32 = r.get(3);
        tables[i].columns.push(Column {
            name: r.get(1),
            sql_type: r.get(4),
            sql_type_name: r.get(5),
            create_type: r.get(6),
            kind: kind_of(&types, type_oid, typmod),
            not_null: r.get(7),
        });
    }
    for r in client.query(KEYS_SQL, &[&schemas]).await? {
        let Some(&i) = index.get(&(r.get::<_, i64>(0) as u32)) else {
            continue;
        };
        let table = &mut tables[i];
        let primary: bool = r.get(1);
        let columns: Vec<String> = r.get(2);
        let plain_not_null: bool = r.get(3);
        // Every key column must be readable, or it can't order the read.
        if !columns.iter().all(|c| table.column(c).is_some()) {
            continue;
        }
        if primary {
            table.primary_key = columns.clone();
        }
        if table.resume_key.is_empty() && plain_not_null {
            table.resume_key = columns;
        }
    }
    // A table whose readable columns are all hidden is not a stream.
    tables.retain(|t| !t.columns.is_empty());
    Ok(tables)
}

/// The catalog entry of `table`, as `--discover` prints it.
pub fn catalog_entry(table: &Table, database: &str, opts: &ValueOptions) -> CatalogEntry {
    let columns: Vec<&Column> = table.columns.iter().collect();
    let mut entry = CatalogEntry::new(table.stream_id(), stream_schema(table, &columns, opts));
    entry.stream = Some(table.name.clone());
    entry.table_name = Some(table.name.clone());
    let valid_keys: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| can_be_replication_key(&c.kind))
        .map(|c| c.name.as_str())
        .collect();
    let stream_md = entry.stream_metadata_mut();
    stream_md.insert("table-key-properties".into(), json!(table.primary_key));
    stream_md.insert("schema-name".into(), json!(table.schema));
    stream_md.insert("database-name".into(), json!(database));
    stream_md.insert("row-count".into(), json!(table.row_count));
    stream_md.insert("is-view".into(), json!(table.relkind.is_view()));
    stream_md.insert("valid-replication-keys".into(), json!(valid_keys));
    for column in &table.columns {
        let md = entry.property_metadata_mut(&column.name);
        md.insert("sql-datatype".into(), json!(column.sql_type_name));
        let automatic = table.primary_key.contains(&column.name);
        md.insert(
            "inclusion".into(),
            json!(if automatic { "automatic" } else { "available" }),
        );
        md.insert("selected-by-default".into(), json!(true));
    }
    entry
}

/// The (narrow) JSON Schema of a stream of `columns` of `table`, in that
/// order. Key columns are not nullable (as the peers).
pub fn stream_schema(table: &Table, columns: &[&Column], opts: &ValueOptions) -> Value {
    stream_schema_widened(table, columns, opts, |_| Widen::NONE)
}

/// [`stream_schema`] with each column widened by what `widen` says its
/// values needed (see `types::column_schema`).
pub fn stream_schema_widened(
    table: &Table,
    columns: &[&Column],
    opts: &ValueOptions,
    widen: impl Fn(&Column) -> Widen,
) -> Value {
    let mut properties = Map::new();
    for c in columns {
        let nullable = !table.primary_key.contains(&c.name);
        properties.insert(
            c.name.clone(),
            column_schema(&c.kind, &c.create_type, nullable, opts, widen(c)),
        );
    }
    json!({ "type": "object", "properties": properties })
}

/// The whole catalog.
pub fn catalog(tables: &[Table], database: &str, opts: &ValueOptions) -> Catalog {
    Catalog {
        streams: tables
            .iter()
            .map(|t| catalog_entry(t, database, opts))
            .collect(),
        ..Catalog::default()
    }
}
