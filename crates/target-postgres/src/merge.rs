//! The SQL that moves a batch from its staging table into the target: one
//! set-based statement per batch, built from quoted names only.
//!
//! The staging table has positional columns: `seq` (the record's position
//! in the batch), `present` (NULL when the record had every column, else
//! one `0`/`1` per column), then `c0 … cN` in the stream's column order.
//! Positional names cannot collide with any source name.
//!
//! Semantics, per key, as if the batch's records were applied one by one:
//! - The last record of a key wins, column by column: a column takes the
//!   value of the newest record that *has* it. A column no record of the
//!   batch has keeps the table's value (unchanged TOASTed columns of a
//!   LOG_BASED update are absent, and must not become NULL).
//! - With `hard_delete`, a key whose last record has `_sdc_deleted_at`
//!   is deleted. A key with a delete followed by newer records is
//!   re-created from the records after the delete only (columns none of
//!   them has become NULL, as a fresh insert would).
//! - Without `hard_delete`, a delete record is an ordinary record: it sets
//!   `_sdc_deleted_at` (and `_sdc_lsn`) and, having no other columns,
//!   leaves every other column as it was.
//!
//! Fast path: when no record of the batch lacks a column, the newest
//! record per key is the whole answer (`DISTINCT ON`), and `INSERT … ON
//! CONFLICT DO UPDATE` applies it.

use pg::{quote_ident, QualifiedName};

/// What a merge needs to know about the stream.
#[derive(Debug, Clone)]
pub struct MergeShape<'a> {
    /// Target column names, in staging order.
    pub columns: &'a [String],
    /// Indices of the key columns.
    pub key: &'a [usize],
    /// Index of `_sdc_deleted_at` when deletes are hard.
    pub hard_delete: Option<usize>,
}

/// `CREATE TEMP TABLE` for a staging table with these column types.
pub fn create_staging(name: &str, types: &[String]) -> String {
    let mut sql = format!(
        "CREATE TEMP TABLE {} (seq bigint, present text",
        quote_ident(name)
    );
    for (i, t) in types.iter().enumerate() {
        sql.push_str(&format!(", c{i} {t}"));
    }
    sql.push_str(") ON COMMIT DELETE ROWS");
    sql
}

/// `COPY … FROM STDIN` into the staging table.
pub fn copy_staging(name: &str, n: usize) -> String {
    let cols: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    format!(
        "COPY {} (seq, present, {}) FROM STDIN",
        quote_ident(name),
        cols.join(", ")
    )
}

/// `COPY … FROM STDIN` straight into the target (append).
pub fn copy_target(table: &QualifiedName, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!("COPY {table} ({}) FROM STDIN", cols.join(", "))
}

/// The merge statement for a batch staged in `stage`.
pub fn upsert(
    table: &QualifiedName,
    stage: &str,
    shape: &MergeShape<'_>,
    has_absent: bool,
) -> String {
    let stage = quote_ident(stage);
    let keys_s: Vec<String> = shape.key.iter().map(|k| format!("c{k}")).collect();
    let keys_s = keys_s.join(", ");
    let non_key: Vec<usize> = (0..shape.columns.len())
        .filter(|i| !shape.key.contains(i))
        .collect();
    let key_match = |t: &str, s: &str| {
        let parts: Vec<String> = shape
            .key
            .iter()
            .map(|&k| format!("{t}.{} = {s}.c{k}", quote_ident(&shape.columns[k])))
            .collect();
        parts.join(" AND ")
    };
    let mut sql = String::from("WITH ");
    let deleted = |alias: &str| match shape.hard_delete {
        Some(d) => format!("{alias}.c{d} IS NOT NULL"),
        None => "false".to_owned(),
    };
    let select = if !has_absent {
        sql.push_str(&format!(
            "s AS (SELECT DISTINCT ON ({keys_s}) *, {} AS del FROM {stage} ORDER BY {keys_s}, seq DESC)",
            deleted(stage.as_str())
        ));
        let cols: Vec<String> = (0..shape.columns.len())
            .map(|i| format!("s.c{i}"))
            .collect();
        format!("SELECT {} FROM s WHERE NOT s.del", cols.join(", "))
    } else {
        let present =
            |i: usize| format!("(present IS NULL OR substr(present, {}, 1) = '1')", i + 1);
        let last_delete = match shape.hard_delete {
            Some(d) => {
                format!("max(seq) FILTER (WHERE c{d} IS NOT NULL) OVER (PARTITION BY {keys_s})")
            }
            None => "NULL::bigint".to_owned(),
        };
        sql.push_str(&format!(
            "s0 AS (SELECT *, {last_delete} AS ld FROM {stage}), "
        ));
        // Per key, per column: the newest value among the records that
        // carry the column. A window's first_value works for every type
        // (array_agg(...)[1] would take an array column's first element).
        let by_key = format!("PARTITION BY {keys_s}");
        let mut cols = vec![
            keys_s.clone(),
            format!(
                "first_value({}) OVER ({by_key} ORDER BY seq DESC) AS del",
                deleted("s0")
            ),
            format!("bool_or(ld IS NOT NULL) OVER ({by_key}) AS reset"),
        ];
        for &i in &non_key {
            cols.push(format!(
                "first_value(c{i}) OVER ({by_key} ORDER BY {p} DESC, seq DESC) AS c{i}, \
                 bool_or({p}) OVER ({by_key}) AS p{i}",
                p = present(i)
            ));
        }
        sql.push_str(&format!(
            "s AS (SELECT DISTINCT ON ({keys_s}) {} FROM s0 WHERE ld IS NULL OR seq >= ld ORDER BY {keys_s})",
            cols.join(", ")
        ));
        let cols: Vec<String> = (0..shape.columns.len())
            .map(|i| {
                if shape.key.contains(&i) {
                    format!("s.c{i}")
                } else {
                    format!(
                        "CASE WHEN s.p{i} THEN s.c{i} WHEN s.reset THEN NULL ELSE t.{} END",
                        quote_ident(&shape.columns[i])
                    )
                }
            })
            .collect();
        format!(
            "SELECT {} FROM s LEFT JOIN {table} t ON {} WHERE NOT s.del",
            cols.join(", "),
            key_match("t", "s")
        )
    };
    if shape.hard_delete.is_some() {
        sql.push_str(&format!(
            ", d AS (DELETE FROM {table} t USING s WHERE {} AND s.del)",
            key_match("t", "s")
        ));
    }
    let target_cols: Vec<String> = shape.columns.iter().map(|c| quote_ident(c)).collect();
    let key_cols: Vec<String> = shape
        .key
        .iter()
        .map(|&k| quote_ident(&shape.columns[k]))
        .collect();
    sql.push_str(&format!(
        " INSERT INTO {table} ({}) {select} ON CONFLICT ({}) ",
        target_cols.join(", "),
        key_cols.join(", ")
    ));
    if non_key.is_empty() {
        sql.push_str("DO NOTHING");
    } else {
        let sets: Vec<String> = non_key
            .iter()
            .map(|&i| {
                let c = quote_ident(&shape.columns[i]);
                format!("{c} = EXCLUDED.{c}")
            })
            .collect();
        sql.push_str(&format!("DO UPDATE SET {}", sets.join(", ")));
    }
    sql
}

/// A key-less batch that has deletes: its staging table (created in the
/// loading transaction, dropped at its end), `seq` numbering the rows in
/// COPY order, then `c0 … cN`.
pub fn create_keyless_staging(name: &str, types: &[String]) -> String {
    let mut sql = format!(
        "CREATE TEMP TABLE {} (seq bigint GENERATED ALWAYS AS IDENTITY",
        quote_ident(name)
    );
    for (i, t) in types.iter().enumerate() {
        sql.push_str(&format!(", c{i} {t}"));
    }
    sql.push_str(") ON COMMIT DROP");
    sql
}

/// `COPY … FROM STDIN` into a key-less staging table.
pub fn copy_keyless_staging(name: &str, n: usize) -> String {
    let cols: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    format!(
        "COPY {} ({}) FROM STDIN",
        quote_ident(name),
        cols.join(", ")
    )
}

/// Applies a key-less batch with deletes, record by record in order.
///
/// A key-less table may hold identical rows, so a delete record (its
/// `_sdc_deleted_at` column `deleted_at` not null; under REPLICA IDENTITY
/// FULL it carries the whole old row, and an update arrives as such a
/// delete plus the new row) removes exactly **one** row equal to it in
/// every data column (`data`: the columns that are not `_sdc_…`; compared
/// by their text forms with `IS NOT DISTINCT FROM`, so NULLs match and
/// types without an equality operator work). With `hard`, that row is
/// deleted; without, one such row not yet marked is marked: every
/// non-data column takes the delete record's value. A delete matching no
/// row changes nothing. Other records are inserted. Applied in batch
/// order, so a delete sees the inserts before it: the table keeps the
/// source's multiset of rows.
///
/// One statement (a `DO` block) of quoted names only; `None` when a name
/// contains the block's dollar-quote tag (it cannot be embedded safely).
pub fn keyless_apply(
    table: &QualifiedName,
    stage: &str,
    columns: &[String],
    data: &[usize],
    deleted_at: usize,
    hard: bool,
) -> Option<String> {
    const TAG: &str = "$sdc_keyless$";
    let col = |i: usize| quote_ident(&columns[i]);
    let all: Vec<String> = (0..columns.len()).map(col).collect();
    let values: Vec<String> = (0..columns.len()).map(|i| format!("r.c{i}")).collect();
    let mut matching: Vec<String> = data
        .iter()
        .map(|&i| format!("x.{}::text IS NOT DISTINCT FROM r.c{i}::text", col(i)))
        .collect();
    let change = if hard {
        format!("DELETE FROM {table}")
    } else {
        matching.push(format!("x.{} IS NULL", col(deleted_at)));
        let sets: Vec<String> = (0..columns.len())
            .filter(|i| !data.contains(i))
            .map(|i| format!("{} = r.c{i}", col(i)))
            .collect();
        format!("UPDATE {table} SET {}", sets.join(", "))
    };
    if matching.is_empty() {
        matching.push("true".into());
    }
    let sql = format!(
        "DO {TAG} DECLARE r record; BEGIN \
         FOR r IN SELECT * FROM {stage} ORDER BY seq LOOP \
         IF r.c{deleted_at} IS NULL THEN INSERT INTO {table} ({}) VALUES ({}); \
         ELSE {change} WHERE ctid = (SELECT x.ctid FROM {table} x WHERE {} LIMIT 1); \
         END IF; END LOOP; END {TAG}",
        all.join(", "),
        values.join(", "),
        matching.join(" AND "),
        stage = quote_ident(stage),
    );
    (sql.matches(TAG).count() == 2).then_some(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_deletes_one_matching_row_in_order() {
        let cols = vec!["a".to_owned(), "b".to_owned(), "_sdc_deleted_at".to_owned()];
        let t = QualifiedName::new("s", "t");
        let hard = keyless_apply(&t, "k", &cols, &[0, 1], 2, true).unwrap();
        assert_eq!(
            hard,
            "DO $sdc_keyless$ DECLARE r record; BEGIN \
             FOR r IN SELECT * FROM \"k\" ORDER BY seq LOOP \
             IF r.c2 IS NULL THEN INSERT INTO \"s\".\"t\" (\"a\", \"b\", \"_sdc_deleted_at\") VALUES (r.c0, r.c1, r.c2); \
             ELSE DELETE FROM \"s\".\"t\" WHERE ctid = (SELECT x.ctid FROM \"s\".\"t\" x WHERE \
             x.\"a\"::text IS NOT DISTINCT FROM r.c0::text AND x.\"b\"::text IS NOT DISTINCT FROM r.c1::text LIMIT 1); \
             END IF; END LOOP; END $sdc_keyless$"
        );
        let soft = keyless_apply(&t, "k", &cols, &[0, 1], 2, false).unwrap();
        assert!(
            soft.contains("ELSE UPDATE \"s\".\"t\" SET \"_sdc_deleted_at\" = r.c2 WHERE ctid")
                && soft.contains("AND x.\"_sdc_deleted_at\" IS NULL LIMIT 1"),
            "{soft}"
        );
        let evil = vec!["a$sdc_keyless$".to_owned(), "_sdc_deleted_at".to_owned()];
        assert_eq!(keyless_apply(&t, "k", &evil, &[0], 1, true), None);
    }

    #[test]
    fn fast_path_shape() {
        let cols = vec!["id".to_owned(), "Name".to_owned()];
        let sql = upsert(
            &QualifiedName::new("s", "t"),
            "stage",
            &MergeShape {
                columns: &cols,
                key: &[0],
                hard_delete: None,
            },
            false,
        );
        assert_eq!(
            sql,
            "WITH s AS (SELECT DISTINCT ON (c0) *, false AS del FROM \"stage\" ORDER BY c0, seq DESC) \
             INSERT INTO \"s\".\"t\" (\"id\", \"Name\") SELECT s.c0, s.c1 FROM s WHERE NOT s.del \
             ON CONFLICT (\"id\") DO UPDATE SET \"Name\" = EXCLUDED.\"Name\""
        );
    }

    #[test]
    fn slow_path_keeps_absent_columns() {
        let cols = vec![
            "id".to_owned(),
            "big".to_owned(),
            "_sdc_deleted_at".to_owned(),
        ];
        let sql = upsert(
            &QualifiedName::new("s", "t"),
            "stage",
            &MergeShape {
                columns: &cols,
                key: &[0],
                hard_delete: Some(2),
            },
            true,
        );
        assert!(sql.contains("ELSE t.\"big\" END"), "{sql}");
        assert!(
            sql.contains("d AS (DELETE FROM \"s\".\"t\" t USING s"),
            "{sql}"
        );
    }
}
