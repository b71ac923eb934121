//! Making a stream's table match its [`StreamSpec`]: create the schema and
//! table when missing, add new columns, widen types, check the key.
//!
//! Safety of the SQL: names are quoted by [`pg::quote_ident`] /
//! [`pg::QualifiedName`]; values are bound. Types cannot be bound, so a
//! type from `x-sql-datatype` is first checked against a strict grammar
//! ([`type_syntax_ok`]: words, quoted names, numbers, `( , ) [ ] .`, commas
//! only inside parentheses), then resolved by the server (`to_regtype`);
//! the DDL then uses the server's own spelling (`format_type`) read back
//! from a probe temp table, never the input text.
//!
//! Evolution, per column (existing type E, wanted type W):
//! - E can hold every W value (same type with a wider or no modifier,
//!   `text`/`varchar` for anything, `numeric` for any number, `bigint` for
//!   smaller integers, `jsonb` for `json`): keep E, load into it.
//! - W can hold every E value: `ALTER COLUMN … TYPE W` (a safe cast).
//! - Otherwise: rename the old column to `<name>_<YYYYMMDD_HHMM>` (kept
//!   with its data, logged) and add a new one of type W.
//!
//! Select permissions: before touching a table the roles are checked (a
//! missing one is an error naming it); after, `GRANT USAGE ON SCHEMA` and
//! `GRANT SELECT ON TABLE` to them. Indexes: `CREATE INDEX IF NOT EXISTS`
//! with quoted names. The loader does each once per table per run, when the
//! stream's first SCHEMA is handled (so a table created later in the run is
//! granted and indexed on creation).
//!
//! A property that disappears from the schema leaves its column in place.
//! A key different from the existing table's primary key is an error
//! (except under `append-only`, which neither creates nor checks a key).

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::schema::{short_name, IndexSpec, StreamSpec};

/// A column type as the server spells and stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlType {
    /// `format_type(oid, typmod)`, e.g. `numeric(12,2)`.
    pub name: String,
    /// `pg_type` oid.
    pub oid: u32,
    /// Type modifier, -1 when none.
    pub typmod: i32,
}

/// Makes the table of `spec` ready; returns the actual type of each spec
/// column.
///
/// With `keyed` false (`append-only`), the key is neither created nor
/// checked: every record is inserted.
pub async fn prepare(client: &Client, spec: &StreamSpec, keyed: bool) -> Result<Vec<SqlType>> {
    let wanted = wanted_types(client, spec).await?;
    let table = &spec.table;
    let what = |doing: &str| format!("{doing} {table}");
    let schema_exists = client
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&table.schema],
        )
        .await
        .map_err(|e| Error::database(&what("looking up the schema of"), &e))?
        .is_some();
    if !schema_exists {
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            pg::quote_ident(&table.schema)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::database(&what("creating the schema of"), &e))?;
    }
    let existing = client
        .query(
            "SELECT a.attname::text, a.atttypid::oid, a.atttypmod, \
                    format_type(a.atttypid, a.atttypmod), \
                    coalesce(a.attnum = ANY(i.indkey::int2[]), false) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
             ORDER BY a.attnum",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| Error::database(&what("reading the columns of"), &e))?;
    if existing.is_empty() {
        let mut sql = format!("CREATE TABLE IF NOT EXISTS {table} (");
        for (i, (c, t)) in spec.columns.iter().zip(&wanted).enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&pg::quote_ident(&c.name));
            sql.push(' ');
            sql.push_str(&t.name);
        }
        if keyed && !spec.key.is_empty() {
            sql.push_str(", PRIMARY KEY (");
            let key: Vec<String> = spec
                .key
                .iter()
                .map(|&k| pg::quote_ident(&spec.columns[k].name))
                .collect();
            sql.push_str(&key.join(", "));
            sql.push(')');
        }
        sql.push(')');
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::database(&what("creating table"), &e))?;
        tracing::info!("created table {table} for stream {}", spec.stream);
        return Ok(wanted);
    }
    let mut have: Vec<(String, SqlType, bool)> = existing
        .iter()
        .map(|r| {
            let t = SqlType {
                oid: r.get(1),
                typmod: r.get(2),
                name: r.get(3),
            };
            (r.get::<_, String>(0), t, r.get::<_, bool>(4))
        })
        .collect();
    let mut pk: Vec<&str> = have.iter().filter(|c| c.2).map(|c| c.0.as_str()).collect();
    let mut want_key: Vec<&str> = spec
        .key
        .iter()
        .map(|&k| spec.columns[k].name.as_str())
        .collect();
    pk.sort_unstable();
    want_key.sort_unstable();
    if keyed && !want_key.is_empty() && pk != want_key {
        return Err(Error::config(format!(
            "table {table} has primary key {pk:?} but the stream's key_properties are \
             {want_key:?}; change the table's key or load into another table"
        )));
    }
    let mut actual = Vec::with_capacity(spec.columns.len());
    for (c, w) in spec.columns.iter().zip(wanted) {
        let found = have.iter().find(|h| h.0 == c.name).map(|h| h.1.clone());
        let add = match found {
            None => true,
            Some(e) if holds(&e, &w) => {
                actual.push(e);
                continue;
            }
            Some(e) if holds(&w, &e) => {
                let col = pg::quote_ident(&c.name);
                let sql = format!(
                    "ALTER TABLE {table} ALTER COLUMN {col} TYPE {t} USING {col}::{t}",
                    t = w.name
                );
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| Error::database(&what("widening a column of"), &e))?;
                tracing::info!(
                    "table {table}: column {col} widened from {} to {}",
                    e.name,
                    w.name
                );
                false
            }
            Some(e) => {
                let suffix = chrono::Utc::now().format("_%Y%m%d_%H%M").to_string();
                let mut renamed = short_name(&format!("{}{suffix}", c.name));
                while have.iter().any(|h| h.0 == renamed) {
                    renamed = short_name(&format!("{renamed}_"));
                }
                let sql = format!(
                    "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                    pg::quote_ident(&c.name),
                    pg::quote_ident(&renamed)
                );
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| Error::database(&what("renaming a column of"), &e))?;
                tracing::warn!(
                    "table {table}: column {:?} changes type from {} to {}, which cannot \
                     hold every old value; the old column is kept as {renamed:?} with its \
                     data and a new one is added",
                    c.name,
                    e.name,
                    w.name
                );
                have.push((renamed, e, false));
                true
            }
        };
        if add {
            let sql = format!(
                "ALTER TABLE {table} ADD COLUMN {} {}",
                pg::quote_ident(&c.name),
                w.name
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| Error::database(&what("adding a column to"), &e))?;
        }
        actual.push(w);
    }
    Ok(actual)
}

/// Fails with an error naming every role of `roles` that does not exist
/// (`PUBLIC`, any case, is the pseudo-role of everyone and always exists).
pub async fn check_roles(client: &Client, roles: &[String]) -> Result<()> {
    let names: Vec<&str> = roles
        .iter()
        .map(String::as_str)
        .filter(|r| !r.eq_ignore_ascii_case("public"))
        .collect();
    let rows = client
        .query(
            "SELECT r FROM unnest($1::text[]) WITH ORDINALITY AS u(r, n) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname::text = r) ORDER BY n",
            &[&names],
        )
        .await
        .map_err(|e| Error::database("looking up the roles to grant SELECT to", &e))?;
    let missing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    match missing.len() {
        0 => Ok(()),
        1 => Err(Error::config(format!(
            "role {:?} (select permissions) does not exist; create it or remove it from the \
             config",
            missing[0]
        ))),
        _ => Err(Error::config(format!(
            "roles {missing:?} (select permissions) do not exist; create them or remove them \
             from the config"
        ))),
    }
}

/// `GRANT USAGE ON SCHEMA` and `GRANT SELECT ON` `table` to `roles`.
pub async fn grant_select(
    client: &Client,
    table: &pg::QualifiedName,
    roles: &[String],
) -> Result<()> {
    let to: Vec<String> = roles
        .iter()
        .map(|r| {
            if r.eq_ignore_ascii_case("public") {
                "PUBLIC".to_owned()
            } else {
                pg::quote_ident(r)
            }
        })
        .collect();
    let to = to.join(", ");
    let sql = format!(
        "GRANT USAGE ON SCHEMA {} TO {to}; GRANT SELECT ON TABLE {table} TO {to}",
        pg::quote_ident(&table.schema)
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| Error::database(&format!("granting SELECT on {table}"), &e))?;
    tracing::info!("granted USAGE on schema and SELECT on {table} to {roles:?}");
    Ok(())
}

/// `CREATE INDEX IF NOT EXISTS` `index` on `table`.
pub async fn create_index(
    client: &Client,
    table: &pg::QualifiedName,
    index: &IndexSpec,
) -> Result<()> {
    let cols: Vec<String> = index.columns.iter().map(|c| pg::quote_ident(c)).collect();
    let sql = format!(
        "CREATE INDEX IF NOT EXISTS {} ON {table} ({})",
        pg::quote_ident(&index.name),
        cols.join(", ")
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| Error::database(&format!("creating index {:?} on {table}", index.name), &e))?;
    tracing::info!(
        "index {:?} on {table} {:?} is in place",
        index.name,
        index.columns
    );
    Ok(())
}

/// The server's spelling of each wanted type: `x-sql-datatype` when it is
/// well-formed and exists in the target, else the derived type.
async fn wanted_types(client: &Client, spec: &StreamSpec) -> Result<Vec<SqlType>> {
    // One round trip for all the `x-sql-datatype` types that pass the
    // syntax check (a stream of thousands asks once per SCHEMA, not once
    // per column).
    let asked: Vec<&str> = spec
        .columns
        .iter()
        .filter(|c| c.sql_type != c.fallback_type && type_syntax_ok(&c.sql_type))
        .map(|c| c.sql_type.as_str())
        .collect();
    let mut known = std::collections::HashSet::new();
    if !asked.is_empty() {
        let all = client
            .query(
                "SELECT t FROM unnest($1::text[]) t WHERE to_regtype(t) IS NOT NULL",
                &[&asked],
            )
            .await;
        match all {
            Ok(rows) => known.extend(rows.iter().map(|r| r.get::<_, String>(0))),
            // to_regtype raises on some malformed names: ask one by one,
            // a failure meaning "no such type".
            Err(_) => {
                for t in asked {
                    let exists = client
                        .query_one("SELECT to_regtype($1) IS NOT NULL", &[&t])
                        .await
                        .is_ok_and(|r| r.get::<_, bool>(0));
                    if exists {
                        known.insert(t.to_owned());
                    }
                }
            }
        }
    }
    let mut names = Vec::with_capacity(spec.columns.len());
    for c in &spec.columns {
        let mut t = c.sql_type.as_str();
        if t != c.fallback_type && !known.contains(t) {
            tracing::info!(
                "stream {}, column {:?}: type {t:?} does not exist in the target; using {}",
                spec.stream,
                c.name,
                c.fallback_type
            );
            t = &c.fallback_type;
        }
        names.push(t);
    }
    // The server's spelling, from a probe table created and dropped in
    // one implicit transaction (one round trip; an error rolls it back).
    let mut sql = String::from("CREATE TEMP TABLE pg_temp.\"_sdc_probe\" (");
    for (i, t) in names.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("c{i} {t}"));
    }
    sql.push_str(
        "); SELECT atttypid::oid, atttypmod, format_type(atttypid, atttypmod) \
         FROM pg_attribute WHERE attrelid = 'pg_temp._sdc_probe'::regclass \
         AND attnum > 0 ORDER BY attnum; DROP TABLE pg_temp.\"_sdc_probe\"",
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::database("resolving column types", &e).in_stream(&spec.stream))?;
    let bad = || {
        Error::new(
            crate::error::ErrorKind::Database,
            "resolving column types: bad reply",
        )
    };
    let mut types = Vec::with_capacity(names.len());
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let field = |i: usize| r.get(i).ok_or_else(bad);
            types.push(SqlType {
                oid: field(0)?.parse().map_err(|_| bad())?,
                typmod: field(1)?.parse().map_err(|_| bad())?,
                name: field(2)?.to_owned(),
            });
        }
    }
    if types.len() != names.len() {
        return Err(bad());
    }
    Ok(types)
}

/// Whether `t` looks like a type name and nothing else: bare words,
/// double-quoted names, numbers, `.`, `[]`, and parenthesised modifier
/// lists (the only place a comma may appear).
pub fn type_syntax_ok(t: &str) -> bool {
    let b = t.as_bytes();
    let (mut i, mut depth, mut brackets) = (0, 0i32, 0i32);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return false,
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => break,
                        Some(0) => return false,
                        Some(_) => i += 1,
                    }
                }
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'[' => brackets += 1,
            b']' => brackets -= 1,
            b',' if depth == 1 => {}
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b' ' || c == b'.' => {}
            _ => return false,
        }
        if !(0..=1).contains(&depth) || !(0..=1).contains(&brackets) {
            return false;
        }
        i += 1;
    }
    depth == 0 && brackets == 0 && !t.trim().is_empty()
}

const INT2: u32 = 21;
const INT4: u32 = 23;
const INT8: u32 = 20;
const NUMERIC: u32 = 1700;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const BPCHAR: u32 = 1042;
const JSON: u32 = 114;
const JSONB: u32 = 3802;

/// Whether a column of type `e` can hold every value of type `w` exactly.
pub fn holds(e: &SqlType, w: &SqlType) -> bool {
    if e.oid == w.oid {
        if e.typmod == -1 || e.typmod == w.typmod {
            return true;
        }
        if w.typmod == -1 {
            return false;
        }
        return match e.oid {
            VARCHAR | BPCHAR => w.typmod <= e.typmod,
            NUMERIC => {
                let (pe, se) = (((e.typmod - 4) >> 16) & 0xffff, (e.typmod - 4) & 0xffff);
                let (pw, sw) = (((w.typmod - 4) >> 16) & 0xffff, (w.typmod - 4) & 0xffff);
                sw <= se && pw - sw <= pe - se
            }
            _ => false,
        };
    }
    match (e.oid, e.typmod) {
        (TEXT, _) | (VARCHAR, -1) => true,
        (NUMERIC, -1) => matches!(w.oid, INT2 | INT4 | INT8 | NUMERIC),
        (INT8, _) => matches!(w.oid, INT2 | INT4),
        (INT4, _) => w.oid == INT2,
        (FLOAT8, _) => matches!(w.oid, FLOAT4 | INT2 | INT4),
        (JSONB, _) => w.oid == JSON,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(oid: u32, typmod: i32) -> SqlType {
        SqlType {
            name: String::new(),
            oid,
            typmod,
        }
    }

    #[test]
    fn type_grammar() {
        for ok in [
            "integer",
            "numeric(12,2)",
            "timestamp with time zone",
            "integer[]",
            "character varying(10)[]",
            "public.\"My Enum\"",
            "\"a\"\"b\"",
        ] {
            assert!(type_syntax_ok(ok), "{ok}");
        }
        for bad in [
            "int, evil text",
            "int); drop table x; --",
            "text default 'x'",
            "int)",
            "(int",
            "\"unterminated",
            "",
            "int -- c",
        ] {
            assert!(!type_syntax_ok(bad), "{bad}");
        }
    }

    #[test]
    fn holding() {
        let num = |p: i32, s: i32| t(NUMERIC, ((p << 16) | s) + 4);
        assert!(holds(&t(INT8, -1), &t(INT4, -1)));
        assert!(!holds(&t(INT4, -1), &t(INT8, -1)));
        assert!(holds(&t(NUMERIC, -1), &t(INT8, -1)));
        assert!(holds(&num(14, 2), &num(12, 2)));
        assert!(!holds(&num(12, 2), &num(14, 2)));
        assert!(!holds(&num(12, 4), &num(12, 2)));
        assert!(holds(&t(NUMERIC, -1), &num(12, 2)));
        assert!(!holds(&num(12, 2), &t(NUMERIC, -1)));
        assert!(holds(&t(TEXT, -1), &t(INT8, -1)));
        assert!(holds(&t(VARCHAR, 14), &t(VARCHAR, 10)));
        assert!(!holds(&t(VARCHAR, 10), &t(TEXT, -1)));
        assert!(holds(&t(TEXT, -1), &t(VARCHAR, 10)));
        assert!(!holds(&t(INT8, -1), &t(TEXT, -1)));
    }
}
