//! FULL_TABLE: a complete copy of a table, read in one REPEATABLE READ
//! snapshot, resumable.
//!
//! A table with a primary key (or a unique key whose columns are all NOT
//! NULL) is read in key order, in chunks of `itersize` rows (`ORDER BY key
//! LIMIT n`, so the planner walks the key's index instead of sorting the
//! table). Every `state_interval_rows` rows a STATE carries the last key
//! written (`last_pk_fetched`; a checkpoint, see `sync`); a run started from that state reads the
//! rows after that key, so the two runs together cover every row (the peers
//! order by `xmin::text` and resume by `age(xmin)`, which skips rows). A
//! table without such a key (and every view) is read in one statement and
//! restarts from the beginning; the log says so.
//!
//! Versions, as the peers: a `version` (epoch ms) per complete copy, kept
//! when resuming, on every RECORD; ACTIVATE_VERSION after the last record,
//! and also before the first one on the first copy ever.

use std::io::Write;

use serde_json::{Map, Value};
use singer::catalog::ReplicationMethod;
use singer::{Metric, TimeExtracted};
use tokio_postgres::Client;

use crate::binary::copy_rows;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::phase::{self, Phase};
use crate::progress::Progress;
use crate::read::{bind_values, snapshot};
use crate::rows::{RowEncoder, StreamPlan};

/// What kind of copy [`sync`] makes.
#[derive(Debug, Clone, Copy)]
pub struct CopyKind<'a> {
    /// The stream's method: FULL_TABLE, or LOG_BASED for the initial copy of
    /// a LOG_BASED stream.
    pub method: ReplicationMethod,
    /// The snapshot to read in, exported by a replication slot (see
    /// `log_based::snapshot`); `None`: a snapshot of its own.
    pub exported: Option<&'a str>,
}

/// Copies `plan`'s table, resuming after the bookmarked key ([`Phase`]).
/// At the end the phase becomes [`Phase::Fresh`] (FULL_TABLE: the next run
/// copies again) or [`Phase::Streaming`] from the copy's position
/// (LOG_BASED).
pub async fn sync<W: Write>(
    ctx: &mut Output<'_, W>,
    client: &mut Client,
    plan: &StreamPlan,
    key: &[String],
    kind: CopyKind<'_>,
) -> Result<()> {
    let id = plan.stream.clone();
    let bookmark = ctx.bookmark(&id);
    let old_version = phase::version(bookmark);
    let first_ever = old_version.is_none();
    let start = Phase::read(bookmark, kind.method);
    let resume: Option<Vec<Value>> = match &start {
        Phase::Copying { after: Some(m), .. }
            if !key.is_empty() && key.iter().all(|k| m.contains_key(k)) =>
        {
            Some(key.iter().map(|k| m[k].clone()).collect())
        }
        _ => None,
    };
    let version = match (&resume, old_version) {
        (Some(_), Some(v)) => v,
        _ => phase::new_version(),
    };
    if key.is_empty() {
        tracing::info!("stream {id}: FULL_TABLE without a primary or unique not-null key: an interrupted copy restarts from the beginning");
    } else if let Some(r) = &resume {
        tracing::info!(
            "stream {id}: FULL_TABLE resuming after key {}",
            serde_json::Value::Array(r.clone())
        );
    } else {
        tracing::info!("stream {id}: FULL_TABLE");
    }

    ctx.set_currently_syncing(Some(&id));
    let b = ctx.bookmark_mut(&id);
    phase::set_method(b, kind.method);
    phase::set_version(b, version);
    ctx.checkpoint()?;
    ctx.write_schema(plan, &[])?;
    if first_ever {
        ctx.write_activate_version(&id, version)?;
    }

    let tx = snapshot(client).await?;
    if let Some(name) = kind.exported {
        tx.batch_execute(&format!(
            "SET TRANSACTION SNAPSHOT {}",
            pg::quote_literal(name)?
        ))
        .await?;
    }
    let table = pg::QualifiedName::new(&plan.table.schema, &plan.table.name);
    let select = plan.binary_select_list();
    let key_positions: Vec<usize> = key
        .iter()
        .map(|k| plan.position(k).expect("key columns are in the plan"))
        .collect();
    let mut encoder = RowEncoder::new(plan);
    let writable = ctx.writable();
    let mut progress = Progress::new(
        &id,
        "rows",
        ctx.config().progress_every,
        u64::try_from(plan.table.row_count).ok(),
    );
    let interval = ctx.config().state_interval_rows;
    let chunk = ctx.config().itersize;
    let mut total = 0u64;
    let mut since_state = 0u64;
    let mut last = resume;
    loop {
        let time = TimeExtracted::now();
        let query = if key.is_empty() {
            format!("SELECT {select} FROM {table}")
        } else {
            let order = plan.order_by(key);
            let filter = match &last {
                Some(values) => {
                    let exprs = bind_values(&tx, plan, key, values).await?;
                    format!("WHERE ({order}) > ({})", exprs.join(", "))
                }
                None => String::new(),
            };
            format!("SELECT {select} FROM {table} {filter} ORDER BY {order} LIMIT {chunk}")
        };
        let rows = copy_rows(&tx, &query, plan.columns.len(), &writable, |row, fields| {
            let record = encoder
                .encode_binary(row, fields)
                .map_err(Error::source_data)?;
            ctx.widen_schema(plan, &[])?;
            ctx.write_record_raw(&id, record, Some(version), Some(&time))?;
            progress.row();
            since_state += 1;
            if since_state >= interval && !key.is_empty() {
                since_state = 0;
                let mut m = Map::new();
                for (k, &p) in key.iter().zip(&key_positions) {
                    m.insert(k.clone(), encoder.value(p));
                }
                let copying = Phase::Copying {
                    after: Some(m),
                    lsn: None,
                };
                ctx.set_phase(&id, &copying);
                ctx.checkpoint()?;
            }
            Ok(())
        })
        .await?;
        total += rows;
        if key.is_empty() || rows < chunk {
            break;
        }
        last = Some(key_positions.iter().map(|&p| encoder.value(p)).collect());
    }
    tx.commit().await?;
    report_replaced(&id, &encoder);

    ctx.write_activate_version(&id, version)?;
    let done = match start.lsn() {
        Some(lsn) => Phase::Streaming { lsn },
        None => Phase::Fresh,
    };
    ctx.set_phase(&id, &done);
    ctx.checkpoint()?;
    Metric::counter("record_count", total, &[("stream", &id)]).log();
    tracing::info!("stream {id}: FULL_TABLE done, {total} rows");
    Ok(())
}

/// Logs how many values a `null` policy replaced.
pub fn report_replaced(id: &str, encoder: &RowEncoder<'_>) {
    let r = encoder.replaced;
    if r.special_numbers > 0 {
        tracing::warn!(
            "stream {id}: {} NaN/Infinity values written as null (special_numbers: null)",
            r.special_numbers
        );
    }
    if r.json_null > 0 {
        tracing::warn!(
            "stream {id}: {} json/jsonb array elements were the JSON literal null; written as null, a target reads them as SQL NULL",
            r.json_null
        );
    }
    if r.out_of_range > 0 {
        tracing::warn!(
            "stream {id}: {} out-of-range dates written as null (out_of_range_dates: null)",
            r.out_of_range
        );
    }
}
