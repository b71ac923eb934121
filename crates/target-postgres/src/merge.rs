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

#[cfg(test)]
mod tests {
    use super::*;

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
