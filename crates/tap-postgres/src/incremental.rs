//! INCREMENTAL: the rows whose replication key is at or past the bookmark,
//! in key order.
//!
//! `WHERE key >= bookmark ORDER BY key`, the bookmark bound as a value of
//! the column's type (see `read`). Rows equal to the bookmark are sent
//! again (at-least-once: a row committed later with the same key value is
//! not missed; the target's upsert makes the repeat harmless). Rows whose
//! key is NULL sort last and are sent only by a run without a bookmark.
//!
//! `limit` bounds a run to the rows of the first `limit` key values past
//! the bookmark, and always finishes the last key value, so a run makes
//! progress even when more than `limit` rows share one value.
//!
//! STATE every `state_interval_rows` rows and at the end carries
//! `replication_key_value` as the record wrote it.

use std::io::Write;

use singer::catalog::ReplicationMethod;
use singer::{Metric, TimeExtracted};
use tokio_postgres::Client;

use crate::binary::copy_rows;
use crate::error::{Error, Result};
use crate::full_table::report_replaced;
use crate::output::Output;
use crate::phase::{self, Phase};
use crate::progress::Progress;
use crate::read::{bind_values, snapshot};
use crate::rows::{RowEncoder, StreamPlan};

/// Reads the rows past the bookmark.
pub async fn sync<W: Write>(
    ctx: &mut Output<'_, W>,
    client: &mut Client,
    plan: &StreamPlan,
    key: &str,
) -> Result<()> {
    let id = plan.stream.clone();
    let method = ReplicationMethod::Incremental;
    let (start, version) = match ctx.phase(&id, method) {
        Phase::Incremental { key: k, .. } if !k.is_empty() && k != key => {
            tracing::info!("stream {id}: replication key changed to {key:?}; starting over");
            ctx.remove_bookmark(&id);
            (None, phase::new_version())
        }
        Phase::Incremental { value, .. } => (
            Some(value),
            phase::version(ctx.bookmark(&id)).unwrap_or_else(phase::new_version),
        ),
        _ => (
            None,
            phase::version(ctx.bookmark(&id)).unwrap_or_else(phase::new_version),
        ),
    };
    tracing::info!(
        "stream {id}: INCREMENTAL on {key:?} from {}",
        start
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "the beginning".into())
    );

    ctx.set_currently_syncing(Some(&id));
    let b = ctx.bookmark_mut(&id);
    phase::set_method(b, method);
    phase::set_replication_key(b, key);
    phase::set_version(b, version);
    ctx.checkpoint()?;
    ctx.write_schema(plan, &[key])?;
    ctx.write_activate_version(&id, version)?;

    let tx = snapshot(client).await?;
    let table = pg::QualifiedName::new(&plan.table.schema, &plan.table.name);
    let k = pg::quote_ident(key);
    let lower = match &start {
        Some(v) => Some(
            bind_values(&tx, plan, &[key.to_string()], std::slice::from_ref(v))
                .await?
                .remove(0),
        ),
        None => None,
    };
    let mut conditions = Vec::new();
    if let Some(lower) = &lower {
        conditions.push(format!("{k} >= {lower}"));
    }
    if let Some(limit) = ctx.config().limit.filter(|l| *l > 0) {
        let past = match &lower {
            Some(lower) => format!("{k} > {lower}"),
            None => format!("{k} IS NOT NULL"),
        };
        conditions.push(format!(
            "(SELECT {k} FROM {table} WHERE {past} ORDER BY {k} OFFSET {} LIMIT 1) IS NULL \
             OR {k} <= (SELECT {k} FROM {table} WHERE {past} ORDER BY {k} OFFSET {} LIMIT 1)",
            limit - 1,
            limit - 1
        ));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(
            "WHERE {}",
            conditions
                .iter()
                .map(|c| format!("({c})"))
                .collect::<Vec<_>>()
                .join(" AND ")
        )
    };
    let query = format!(
        "SELECT {} FROM {table} {filter} ORDER BY {}",
        plan.binary_select_list(),
        plan.order_by(&[key.to_string()])
    );
    let position = plan.position(key).expect("the key is in the plan");
    let mut encoder = RowEncoder::new(plan);
    let writable = ctx.writable();
    let mut progress = Progress::new(&id, "rows", ctx.config().progress_every, None);
    let interval = ctx.config().state_interval_rows;
    let time = TimeExtracted::now();
    let mut since_state = 0u64;
    // The JSON text of the last non-null key value not yet in the state
    // (parsed only when a state takes it: a Value per row cost a third of
    // the run's CPU).
    let mut last: Vec<u8> = Vec::new();
    let past = |b: &mut singer::Bookmark, json: &[u8]| {
        let phase = Phase::Incremental {
            key: key.to_string(),
            value: serde_json::from_slice(json).expect("the encoder writes JSON"),
        };
        phase.write(b);
    };
    let total = copy_rows(&tx, &query, plan.columns.len(), &writable, |row, fields| {
        let record = encoder
            .encode_binary(row, fields)
            .map_err(Error::source_data)?;
        ctx.widen_schema(plan, &[key])?;
        ctx.write_record_raw(&id, record, Some(version), Some(&time))?;
        progress.row();
        if let Some(json) = encoder.raw(position) {
            last.clear();
            last.extend_from_slice(json);
        }
        since_state += 1;
        if since_state >= interval {
            since_state = 0;
            if !last.is_empty() {
                past(ctx.bookmark_mut(&id), &last);
                last.clear();
            }
            ctx.checkpoint()?;
        }
        Ok(())
    })
    .await?;
    if !last.is_empty() {
        past(ctx.bookmark_mut(&id), &last);
    }
    tx.commit().await?;
    report_replaced(&id, &encoder);
    ctx.checkpoint()?;
    Metric::counter("record_count", total, &[("stream", &id)]).log();
    tracing::info!("stream {id}: INCREMENTAL done, {total} rows");
    Ok(())
}
