//! The SQL that moves a batch from its staging table into the target: one
//! set-based statement per batch, built from quoted names only.
//!
//! The staging table has positional columns: `seq` (the record's position
//! in the batch), `present` (NULL when the record had every column, else a
//! `bit varying` with one bit per column), then `c0 … cN` in the stream's
//! column order. Positional names cannot collide with any source name. It
//! is created in the batch's transaction `ON COMMIT DROP`, so no staging
//! table outlives its batch (see [`Staging`]).
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
//!
//! Width (issue #10): PostgreSQL allows 1,600 columns per table and 1,664
//! entries per target list, and every table it allows must load. So no
//! statement here has more than one target-list entry per column plus a
//! few: the slow path ORs the records' presence bits per key into one
//! `bit varying` (`pm`) instead of one flag per column; and a table too
//! wide for the two extra staging columns is staged in several tables of
//! at most 1,600 columns, each with `seq`, joined on it.

use pg::{quote_ident, QualifiedName};

/// What a merge needs to know about the stream.
#[derive(Debug, Clone)]
pub struct MergeShape<'a> {
    /// Target column names, in staging order.
    pub columns: &'a [String],
    /// Their types, as `format_type` spells them.
    pub types: &'a [String],
    /// Indices of the key columns.
    pub key: &'a [usize],
    /// Index of `_sdc_deleted_at` when deletes are hard.
    pub hard_delete: Option<usize>,
}

/// The most columns a PostgreSQL table may have.
pub const MAX_TABLE_COLUMNS: usize = 1600;

/// The staging tables of a batch of a stream with `n` columns: part 0 has
/// `seq`, `present` and the first columns; further parts (only for tables
/// wider than 1,598 columns) have `seq` and the next columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staging {
    parts: Vec<std::ops::Range<usize>>,
}

impl Staging {
    /// The staging layout for `n` columns.
    pub fn new(n: usize) -> Staging {
        let mut parts = Vec::new();
        let mut start = 0;
        let mut room = MAX_TABLE_COLUMNS - 2;
        loop {
            let end = (start + room).min(n);
            parts.push(start..end);
            if end == n {
                break;
            }
            start = end;
            room = MAX_TABLE_COLUMNS - 1;
        }
        Staging { parts }
    }

    /// The number of staging tables.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    fn name(part: usize) -> String {
        match part {
            0 => quote_ident("_sdc_stage"),
            p => quote_ident(&format!("_sdc_stage_{p}")),
        }
    }

    /// `CREATE TEMP TABLE … ON COMMIT DROP` for each part, in one string;
    /// run it inside the batch's transaction.
    pub fn create(&self, types: &[String]) -> String {
        let mut sql = String::new();
        for (p, cols) in self.parts.iter().enumerate() {
            sql.push_str(&format!(
                "CREATE TEMP TABLE {} (seq bigint",
                Staging::name(p)
            ));
            if p == 0 {
                sql.push_str(", present bit varying");
            }
            for i in cols.clone() {
                sql.push_str(&format!(", c{i} {}", types[i]));
            }
            sql.push_str(") ON COMMIT DROP; ");
        }
        sql
    }

    /// `COPY … FROM STDIN` into part `part`.
    pub fn copy(&self, part: usize) -> String {
        let mut cols = vec!["seq".to_owned()];
        if part == 0 {
            cols.push("present".to_owned());
        }
        cols.extend(self.parts[part].clone().map(|i| format!("c{i}")));
        format!(
            "COPY {} ({}) FROM STDIN",
            Staging::name(part),
            cols.join(", ")
        )
    }

    /// The FROM item reading the whole batch, aliased `st`.
    pub fn source(&self) -> String {
        if self.parts.len() == 1 {
            return format!("{} st", Staging::name(0));
        }
        let mut cols = vec!["p0.*".to_owned()];
        let mut from = format!("{} p0", Staging::name(0));
        for (p, range) in self.parts.iter().enumerate().skip(1) {
            cols.extend(range.clone().map(|i| format!("p{p}.c{i}")));
            from.push_str(&format!(" JOIN {} p{p} USING (seq)", Staging::name(p)));
        }
        format!("(SELECT {} FROM {from}) st", cols.join(", "))
    }

    /// Splits the batch's COPY text (`seq`, `present`, every column per
    /// line) into one text per part. Raw tabs and newlines in COPY text are
    /// always separators (values escape theirs), so fields are found by
    /// them.
    pub fn split(&self, data: Vec<u8>) -> Vec<Vec<u8>> {
        if self.parts.len() == 1 {
            return vec![data];
        }
        let mut out: Vec<Vec<u8>> = self
            .parts
            .iter()
            .map(|r| Vec::with_capacity(data.len() * r.len() / self.parts[0].len().max(1)))
            .collect();
        // Field index where each part after the first begins.
        let bounds: Vec<usize> = self.parts[1..].iter().map(|r| r.start + 2).collect();
        let mut line_start = 0;
        while line_start < data.len() {
            let line_end =
                memchr::memchr(b'\n', &data[line_start..]).map_or(data.len(), |i| line_start + i);
            let line = &data[line_start..line_end];
            let seq_end = memchr::memchr(b'\t', line).unwrap_or(line.len());
            let mut part = 0;
            let mut field = 0;
            let mut from = 0;
            for tab in memchr::memchr_iter(b'\t', line) {
                field += 1;
                if bounds.get(part) == Some(&field) {
                    out[part].extend_from_slice(&line[from..tab]);
                    out[part].push(b'\n');
                    part += 1;
                    out[part].extend_from_slice(&line[..seq_end]);
                    from = tab;
                }
            }
            out[part].extend_from_slice(&line[from..]);
            out[part].push(b'\n');
            line_start = line_end + 1;
        }
        out
    }
}

/// `COPY … FROM STDIN` straight into the target (append).
pub fn copy_target(table: &QualifiedName, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!("COPY {table} ({}) FROM STDIN", cols.join(", "))
}

/// The merge statement for a batch read from `source` (see
/// [`Staging::source`]).
pub fn upsert(
    table: &QualifiedName,
    source: &str,
    shape: &MergeShape<'_>,
    has_absent: bool,
) -> String {
    let n = shape.columns.len();
    let keys_s: Vec<String> = shape.key.iter().map(|k| format!("c{k}")).collect();
    let keys_s = keys_s.join(", ");
    let non_key: Vec<usize> = (0..n).filter(|i| !shape.key.contains(i)).collect();
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
            "s AS (SELECT DISTINCT ON ({keys_s}) *, {} AS del FROM {source} ORDER BY {keys_s}, seq DESC)",
            deleted("st")
        ));
        let cols: Vec<String> = (0..n).map(|i| format!("s.c{i}")).collect();
        format!("SELECT {} FROM s WHERE NOT s.del", cols.join(", "))
    } else {
        let last_delete = match shape.hard_delete {
            Some(d) => {
                format!("max(seq) FILTER (WHERE c{d} IS NOT NULL) OVER (PARTITION BY {keys_s})")
            }
            None => "NULL::bigint".to_owned(),
        };
        // `pm`: the record's presence bits, all ones for a complete record.
        sql.push_str(&format!(
            "s0 AS (SELECT *, {last_delete} AS ld, \
             coalesce(present, ~0::bit({n})::bit varying) AS pm FROM {source}), "
        ));
        // Per key, per column: the newest value among the records that
        // carry the column, as the last element of the array of those
        // values in `seq` order. Every column uses the same window, so
        // there is one sort and one target-list entry per column (a
        // first_value per column needs a sort key per column, and each
        // sort key is a target-list entry too). Array columns are
        // aggregated as text and cast back (array_agg of arrays would
        // build one array of a higher dimension).
        let w = format!(
            "(PARTITION BY {keys_s} ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
        );
        let mut cols = vec![
            keys_s.clone(),
            format!("last_value({}) OVER {w} AS del", deleted("s0")),
            format!("bool_or(ld IS NOT NULL) OVER {w} AS reset"),
            format!("bit_or(pm) OVER {w} AS pm"),
        ];
        let is_array = |i: usize| shape.types[i].trim_end().ends_with("[]");
        for &i in &non_key {
            let value = if is_array(i) {
                format!("c{i}::text")
            } else {
                format!("c{i}")
            };
            cols.push(format!(
                "array_agg({value}) FILTER (WHERE get_bit(pm, {i}) = 1) OVER {w} AS c{i}"
            ));
        }
        sql.push_str(&format!(
            "s AS (SELECT DISTINCT ON ({keys_s}) {} FROM s0 WHERE ld IS NULL OR seq >= ld ORDER BY {keys_s})",
            cols.join(", ")
        ));
        let cols: Vec<String> = (0..n)
            .map(|i| {
                if shape.key.contains(&i) {
                    return format!("s.c{i}");
                }
                let mut last = format!("s.c{i}[cardinality(s.c{i})]");
                if is_array(i) {
                    last = format!("({last})::{}", shape.types[i]);
                }
                format!(
                    "CASE WHEN get_bit(s.pm, {i}) = 1 THEN {last} WHEN s.reset THEN NULL ELSE t.{} END",
                    quote_ident(&shape.columns[i])
                )
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
            "\"_sdc_stage\" st",
            &MergeShape {
                columns: &cols,
                types: &[
                    "bigint".to_owned(),
                    "text".to_owned(),
                    "timestamptz".to_owned(),
                ][..cols.len()],
                key: &[0],
                hard_delete: None,
            },
            false,
        );
        assert_eq!(
            sql,
            "WITH s AS (SELECT DISTINCT ON (c0) *, false AS del FROM \"_sdc_stage\" st ORDER BY c0, seq DESC) \
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
            "\"_sdc_stage\" st",
            &MergeShape {
                columns: &cols,
                types: &[
                    "bigint".to_owned(),
                    "text".to_owned(),
                    "timestamptz".to_owned(),
                ][..cols.len()],
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

    #[test]
    fn wide_tables_are_staged_in_parts_joined_on_seq() {
        assert_eq!(Staging::new(1598).parts(), 1);
        let st = Staging::new(1600);
        assert_eq!(st.parts, [0..1598, 1598..1600]);
        assert_eq!(Staging::new(3200).parts, [0..1598, 1598..3197, 3197..3200]);
        let line = |seq: u32| {
            let mut l = format!("{seq}\t\\N");
            for i in 0..1600 {
                l.push_str(&format!("\tv{i}"));
            }
            l + "\n"
        };
        let parts = st.split(format!("{}{}", line(0), line(1)).into_bytes());
        let p1 = String::from_utf8(parts[1].clone()).unwrap();
        assert_eq!(p1, "0\tv1598\tv1599\n1\tv1598\tv1599\n");
        let p0 = String::from_utf8(parts[0].clone()).unwrap();
        assert!(p0.starts_with("0\t\\N\tv0\t"), "{p0:.20}");
        assert!(p0.ends_with("\tv1597\n"));
        assert_eq!(p0.matches('\n').count(), 2);
        assert_eq!(p0.lines().next().unwrap().split('\t').count(), 1600);
        assert!(st
            .source()
            .starts_with("(SELECT p0.*, p1.c1598, p1.c1599 FROM"));
        assert!(st
            .source()
            .ends_with("p0 JOIN \"_sdc_stage_1\" p1 USING (seq)) st"));
    }
}
