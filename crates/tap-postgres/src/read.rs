//! Reading rows: `COPY (SELECT …) TO STDOUT` in text format, line by line,
//! inside the caller's REPEATABLE READ transaction.
//!
//! COPY cannot take bind parameters, so a value that bounds a read (the key
//! a FULL_TABLE read resumes after, the INCREMENTAL bookmark) is bound with
//! `set_config('tap_postgres.kN', $1, true)` — a transaction-local setting —
//! and the query reads it back with `current_setting('tap_postgres.kN')::type`.
//! No value is ever pasted into SQL text, and the planner still uses the
//! key's index (`current_setting` is stable). Identifiers come quoted from
//! `pg::quote_ident`; type names are `format_type` output, quoted by the
//! server.

use bytes::Bytes;
use futures_util::{pin_mut, TryStreamExt};
use serde_json::Value;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::error::{bail, Error, Result};
use crate::rows::{bookmark_input, StreamPlan};

/// Binds `values` of the plan's `columns` as `tap_postgres.k0…` and returns
/// the SQL expressions that read them back, typed.
pub async fn bind_values(
    tx: &Transaction<'_>,
    plan: &StreamPlan,
    columns: &[String],
    values: &[Value],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut exprs = Vec::with_capacity(columns.len());
    for (i, (name, value)) in columns.iter().zip(values).enumerate() {
        let column = plan
            .table
            .column(name)
            .expect("bound columns are in the table");
        let setting = format!("tap_postgres.k{i}");
        let input = bookmark_input(&column.kind, value);
        tx.execute(
            "SELECT set_config($1, $2, true)",
            &[&setting, &input.unwrap_or_default()],
        )
        .await?;
        exprs.push(format!("current_setting('{setting}')::{}", column.sql_type));
    }
    Ok(exprs)
}

/// Runs `COPY (<query>) TO STDOUT` and calls `on_line` with each row's
/// line (without its newline). Returns the number of rows.
pub async fn copy_lines<F>(tx: &Transaction<'_>, query: &str, mut on_line: F) -> Result<u64>
where
    F: FnMut(&[u8]) -> Result<()>,
{
    let sql = format!("COPY ({query}) TO STDOUT");
    let stream = tx.copy_out(sql.as_str()).await?;
    pin_mut!(stream);
    let mut pending: Vec<u8> = Vec::new();
    let mut rows = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        rows += split_lines(&chunk, &mut pending, &mut on_line)?;
    }
    if !pending.is_empty() {
        bail!("COPY output ended in the middle of a row");
    }
    Ok(rows)
}

/// Says what a failure means when its cause is a lost connection (the
/// server restarted, the backend was terminated, the network dropped): a
/// rerun resumes from the last state. Other errors are returned as they are.
pub fn explain_lost_connection(e: Error) -> Error {
    let Some(pg) = e.find::<tokio_postgres::Error>() else {
        return e;
    };
    // A stall (pg::stall) already says what happened and that a rerun
    // resumes.
    if let Some(d) = pg
        .as_db_error()
        .filter(|d| d.code().code() == pg::stall::STALL_SQLSTATE)
    {
        return Error::connection(d.message());
    }
    if !crate::error::connection_lost(pg) {
        return e;
    }
    let cause = pg
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| pg.to_string());
    Error::connection(format!(
        "the connection to the server was lost ({cause}); a rerun from the last state resumes"
    ))
}

/// The server sends one row per CopyData message; this still copes with
/// rows split across messages.
fn split_lines<F>(chunk: &Bytes, pending: &mut Vec<u8>, on_line: &mut F) -> Result<u64>
where
    F: FnMut(&[u8]) -> Result<()>,
{
    let mut rows = 0;
    let mut rest: &[u8] = chunk;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        if pending.is_empty() {
            on_line(&rest[..nl])?;
        } else {
            pending.extend_from_slice(&rest[..nl]);
            on_line(pending)?;
            pending.clear();
        }
        rows += 1;
        rest = &rest[nl + 1..];
    }
    pending.extend_from_slice(rest);
    Ok(rows)
}

/// Starts the read-only REPEATABLE READ transaction a stream is read in:
/// one snapshot for the whole read.
pub async fn snapshot(client: &mut Client) -> Result<Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}
