//! The loader: takes [`Work`] in input order and applies it to the
//! database, one transaction per batch, and prints states.
//!
//! Invariants:
//! - Items are handled strictly one after another; a batch is committed
//!   before the next item is looked at. Together with the converter's
//!   ordering (see [`crate::state`]) this is why a printed state never
//!   covers an uncommitted record.
//! - A state is printed as its exact JSON text on one line, flushed at
//!   once; a state equal to the last one printed is not printed again.
//! - If the queue closes without [`Work::End`], or anything fails, the
//!   open transaction is dropped (rolled back) and nothing more is printed.
//!
//! Direct load: a keyed batch normally goes through a staging table and a
//! merge ([`crate::merge`]). When the table was empty when this load first
//! flushed into it, a batch whose records all have every column and that
//! has no delete to apply is COPYed straight into the table instead (about
//! half the server's work): inside a savepoint, so if any of its keys
//! exists already (a replay, or a key repeated in the batch: the table's
//! unique key refuses it) or any value fails, the savepoint is rolled back
//! and the batch takes the staging path, which deduplicates, merges and
//! names a bad value's line and column; the stream then stays on that path.
//! Straight into the table, each record is one new row with every column,
//! which is what the merge makes of a batch with distinct new keys and no
//! absent column; the values go through the same COPY text into columns of
//! the same types.
//!
//! `load_method: overwrite`: a stream's batches go into a shadow table
//! (`<table>__sdc_overwrite`, created `LIKE` the table), and at the end of
//! the input one transaction replaces the table's rows with the shadow's.
//! The converter holds states back until then.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::config::{LoadMethod, TargetConfig};
use crate::copy_in;
use crate::ddl;
use crate::error::{Error, Result};
use crate::merge::{self, MergeShape, Staging};
use crate::schema::{short_name, Meta, StreamSpec};
use crate::work::{Batch, Finished, Work};

struct Table {
    spec: Arc<StreamSpec>,
    names: Vec<String>,
    types: Vec<String>,
    staging: Staging,
    shadow: Option<pg::QualifiedName>,
    /// Whether batches may go straight into the table (see the module
    /// doc); `None` until the first flush looked at the table.
    direct: Option<bool>,
}

/// Applies work to the database.
pub struct Loader {
    client: Client,
    config: Arc<TargetConfig>,
    tables: Vec<Option<Table>>,
    last_printed: Option<String>,
    /// Tables granted to their stream's roles in this run.
    granted: HashSet<pg::QualifiedName>,
    /// `(table, index name)` created (or found) in this run.
    indexed: HashSet<(pg::QualifiedName, String)>,
}

impl Loader {
    /// A loader on `client`.
    pub fn new(client: Client, config: Arc<TargetConfig>) -> Loader {
        Loader {
            client,
            config,
            tables: Vec::new(),
            last_printed: None,
            granted: HashSet::new(),
            indexed: HashSet::new(),
        }
    }

    /// Handles work until [`Work::End`] or a queue closed early; an error
    /// stops it.
    pub async fn run(&mut self, mut rx: mpsc::Receiver<Work>) -> Result<Finished> {
        loop {
            let Some(work) = rx.recv().await else {
                return Ok(Finished::Abandoned);
            };
            match work {
                Work::Table {
                    stream,
                    spec,
                    line,
                    reply,
                } => {
                    let types = self
                        .table(stream, spec)
                        .await
                        .map_err(|e| e.at_line(line))?;
                    let _ = reply.send(types);
                }
                Work::Flush(batch) => self.flush(batch).await?,
                Work::Activate {
                    stream,
                    version,
                    line,
                } => self
                    .activate(stream, version)
                    .await
                    .map_err(|e| e.at_line(line))?,
                Work::Emit(state) => self.print(state)?,
                Work::End(last) => {
                    self.swap_overwritten().await?;
                    if let Some(state) = last {
                        self.print(state)?;
                    }
                    return Ok(Finished::Done);
                }
            }
        }
    }

    async fn table(&mut self, stream: usize, spec: Arc<StreamSpec>) -> Result<Vec<String>> {
        let keyed = self.config.load_method != LoadMethod::AppendOnly;
        let grant = !spec.grantees.is_empty() && !self.granted.contains(&spec.table);
        if grant {
            ddl::check_roles(&self.client, &spec.grantees)
                .await
                .map_err(|e| e.in_stream(&spec.stream))?;
        }
        let types = ddl::prepare(&self.client, &spec, keyed)
            .await
            .map_err(|e| e.in_stream(&spec.stream))?;
        if grant {
            ddl::grant_select(&self.client, &spec.table, &spec.grantees)
                .await
                .map_err(|e| e.in_stream(&spec.stream))?;
            self.granted.insert(spec.table.clone());
        }
        for index in &spec.indices {
            let done = (spec.table.clone(), index.name.clone());
            if self.indexed.contains(&done) {
                continue;
            }
            ddl::create_index(&self.client, &spec.table, index)
                .await
                .map_err(|e| e.in_stream(&spec.stream))?;
            self.indexed.insert(done);
        }
        let types: Vec<String> = types.into_iter().map(|t| t.name).collect();
        if self.tables.len() <= stream {
            self.tables.resize_with(stream + 1, || None);
        }
        let mut shadow = None;
        if let Some(old) = self.tables[stream].take() {
            if let Some(s) = old.shadow {
                let mut shadow_spec = (*spec).clone();
                shadow_spec.table = s.clone();
                ddl::prepare(&self.client, &shadow_spec, keyed).await?;
                shadow = Some(s);
            }
        }
        self.tables[stream] = Some(Table {
            names: spec.columns.iter().map(|c| c.name.clone()).collect(),
            types: types.clone(),
            staging: Staging::new(spec.columns.len()),
            spec,
            shadow,
            direct: None,
        });
        Ok(types)
    }

    async fn exec(&self, sql: &str) -> Result<()> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| Error::database("preparing a batch", &e))
    }

    async fn flush(&mut self, batch: Batch) -> Result<()> {
        let t = self.tables[batch.stream]
            .as_mut()
            .expect("a Table item precedes a stream's batches");
        let stream = t.spec.stream.clone();
        let first = batch.lines.first().copied().unwrap_or(0);
        let last = batch.lines.last().copied().unwrap_or(0);
        let rows = batch.lines.len();
        let mut prepare = Vec::new();
        if self.config.load_method == LoadMethod::Overwrite && t.shadow.is_none() {
            let s = pg::QualifiedName::new(
                t.spec.table.schema.clone(),
                short_name(&format!("{}__sdc_overwrite", t.spec.table.name)),
            );
            prepare.push(format!("DROP TABLE IF EXISTS {s}"));
            prepare.push(format!(
                "CREATE TABLE {s} (LIKE {} INCLUDING ALL)",
                t.spec.table
            ));
            t.shadow = Some(s);
        }
        let target = t.shadow.clone().unwrap_or_else(|| t.spec.table.clone());
        let t = self.tables[batch.stream].as_ref().expect("present");
        for sql in &prepare {
            self.exec(sql).await.map_err(|e| e.in_stream(&stream))?;
        }
        let started = std::time::Instant::now();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| Error::database("starting a transaction", &e).in_stream(&stream))?;
        let hard_delete = self.config.hard_delete && t.spec.meta_index(Meta::DeletedAt).is_some();
        let mut loaded_directly = false;
        if batch.upsert
            && !batch.has_absent
            && !(hard_delete && batch.has_delete)
            && t.staging.parts() == 1
        {
            let direct = match t.direct {
                Some(d) => d,
                None => tx
                    .query_one(&format!("SELECT NOT EXISTS (SELECT FROM {target})"), &[])
                    .await
                    .map_err(|e| {
                        Error::database("checking whether the table is empty", &e)
                            .in_stream(&stream)
                    })?
                    .get(0),
            };
            if direct {
                loaded_directly = copy_directly(&tx, &target, &t.names, &batch.data)
                    .await
                    .map_err(|e| Error::database("loading a batch", &e).in_stream(&stream))?;
            }
            let t = self.tables[batch.stream].as_mut().expect("present");
            t.direct = Some(direct && loaded_directly);
        }
        let t = self.tables[batch.stream].as_ref().expect("present");
        if loaded_directly {
            // Done: every record is a new row of the table.
        } else if batch.upsert {
            // Created in this transaction and dropped at its commit: no
            // staging table outlives its batch (an `ON COMMIT DELETE ROWS`
            // table per stream made every commit truncate all of them).
            tx.batch_execute(&t.staging.create(&t.types))
                .await
                .map_err(|e| {
                    Error::database("creating the staging table", &e).in_stream(&stream)
                })?;
            for (part, data) in t.staging.split(batch.data).into_iter().enumerate() {
                let sql = t.staging.copy(part);
                copy_in::copy(&tx, &sql, data, &batch.lines, &t.names, &stream).await?;
            }
            let shape = MergeShape {
                columns: &t.names,
                types: &t.types,
                key: &t.spec.key,
                hard_delete: if self.config.hard_delete {
                    t.spec.meta_index(Meta::DeletedAt)
                } else {
                    None
                },
            };
            let sql = merge::upsert(&target, &t.staging.source(), &shape, batch.has_absent);
            tx.batch_execute(&sql).await.map_err(|e| {
                Error::database(&format!("merging the records of lines {first}–{last}"), &e)
                    .in_stream(&stream)
            })?;
        } else if let Some(deleted_at) = keyless_deletes(&self.config, t, &batch) {
            let stage = "_sdc_keyless"; // ON COMMIT DROP: one name serves every batch
            let apply = keyless_statement(&self.config, t, &target, stage, deleted_at)
                .map_err(|e| e.in_stream(&stream))?;
            tx.batch_execute(&merge::create_keyless_staging(stage, &t.types))
                .await
                .map_err(|e| Error::database("preparing a batch", &e).in_stream(&stream))?;
            let sql = merge::copy_keyless_staging(stage, t.names.len());
            copy_in::copy(&tx, &sql, batch.data, &batch.lines, &t.names, &stream).await?;
            tx.batch_execute(&apply).await.map_err(|e| {
                Error::database(
                    &format!("applying the key-less records of lines {first}–{last}"),
                    &e,
                )
                .in_stream(&stream)
            })?;
        } else {
            let sql = merge::copy_target(&target, &t.names);
            copy_in::copy(&tx, &sql, batch.data, &batch.lines, &[], &stream).await?;
        }
        crate::failpoint::hit("before-commit");
        tx.commit().await.map_err(|e| {
            Error::database(
                &format!("committing the records of lines {first}–{last}"),
                &e,
            )
            .in_stream(&stream)
        })?;
        crate::failpoint::hit("committed");
        tracing::info!(
            "stream {stream}: loaded {rows} record(s) of lines {first}–{last} into {target}{} in {:.3} s",
            if loaded_directly { " (straight, no staging)" } else { "" },
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    async fn activate(&mut self, stream: usize, version: i64) -> Result<()> {
        let t = self.tables[stream].as_ref().expect("a Table item precedes");
        let (Some(_), Some(_)) = (
            t.spec.meta_index(Meta::TableVersion),
            t.spec.meta_index(Meta::DeletedAt),
        ) else {
            tracing::debug!(
                "stream {}: ACTIVATE_VERSION ignored: metadata columns are off",
                t.spec.stream
            );
            return Ok(());
        };
        let table = t.shadow.as_ref().unwrap_or(&t.spec.table);
        let sql = if self.config.hard_delete {
            format!("DELETE FROM {table} WHERE _sdc_table_version < $1")
        } else {
            format!(
                "UPDATE {table} SET _sdc_deleted_at = now() \
                 WHERE _sdc_table_version < $1 AND _sdc_deleted_at IS NULL"
            )
        };
        let n = self.client.execute(&sql, &[&version]).await.map_err(|e| {
            Error::database("applying ACTIVATE_VERSION", &e).in_stream(&t.spec.stream)
        })?;
        tracing::info!(
            "stream {}: version {version} activated; {n} row(s) of older versions {}",
            t.spec.stream,
            if self.config.hard_delete {
                "deleted"
            } else {
                "marked deleted"
            }
        );
        Ok(())
    }

    async fn swap_overwritten(&mut self) -> Result<()> {
        for t in self.tables.iter().flatten() {
            let Some(shadow) = &t.shadow else { continue };
            let cols: Vec<String> = t.names.iter().map(|c| pg::quote_ident(c)).collect();
            let cols = cols.join(", ");
            let table = &t.spec.table;
            let sql = format!(
                "BEGIN; DELETE FROM {table}; INSERT INTO {table} ({cols}) SELECT {cols} FROM {shadow}; \
                 DROP TABLE {shadow}; COMMIT"
            );
            self.client.batch_execute(&sql).await.map_err(|e| {
                Error::database(&format!("replacing the content of {table}"), &e)
                    .in_stream(&t.spec.stream)
            })?;
            tracing::info!(
                "stream {}: table {table} replaced (overwrite)",
                t.spec.stream
            );
        }
        Ok(())
    }

    fn print(&mut self, state: String) -> Result<()> {
        if self.last_printed.as_deref() == Some(state.as_str()) {
            return Ok(());
        }
        crate::failpoint::hit("state-print");
        let mut out = std::io::stdout().lock();
        out.write_all(state.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .map_err(|e| {
                Error::new(crate::error::ErrorKind::Io, format!("writing a state: {e}"))
            })?;
        self.last_printed = Some(state);
        Ok(())
    }
}

/// The `_sdc_deleted_at` column when `batch` is of a key-less stream, not
/// append-only, and has deletes: those apply one row at a time
/// ([`merge::keyless_apply`]) instead of being appended.
fn keyless_deletes(config: &TargetConfig, t: &Table, batch: &Batch) -> Option<usize> {
    (batch.has_delete && t.spec.key.is_empty() && config.load_method != LoadMethod::AppendOnly)
        .then(|| t.spec.deleted_at_index())
        .flatten()
}

fn keyless_statement(
    config: &TargetConfig,
    t: &Table,
    target: &pg::QualifiedName,
    stage: &str,
    deleted_at: usize,
) -> Result<String> {
    let data: Vec<usize> = (0..t.names.len())
        .filter(|&i| t.spec.columns[i].meta.is_none() && !t.names[i].starts_with("_sdc_"))
        .collect();
    merge::keyless_apply(target, stage, &t.names, &data, deleted_at, config.hard_delete).ok_or_else(|| {
        Error::new(
            crate::error::ErrorKind::Input,
            "a column name contains \"$sdc_keyless$\": the deletes of this key-less stream cannot be applied",
        )
    })
}

/// COPYs a keyed batch (`seq`, `present`, then the columns) straight into
/// `target` inside a savepoint. `Ok(false)` when the server refused it (a
/// key exists, or a value is bad) and the savepoint was rolled back: the
/// caller then stages and merges the batch.
async fn copy_directly(
    tx: &tokio_postgres::Transaction<'_>,
    target: &pg::QualifiedName,
    names: &[String],
    data: &[u8],
) -> std::result::Result<bool, tokio_postgres::Error> {
    let mut rows = Vec::with_capacity(data.len());
    for line in data.split_inclusive(|&b| b == b'\n') {
        // Skip `seq` and `present`: COPY text escapes tabs inside values.
        let mut tabs = line.iter().enumerate().filter(|(_, &b)| b == b'\t');
        let start = tabs.nth(1).map_or(line.len(), |(i, _)| i + 1);
        rows.extend_from_slice(&line[start..]);
    }
    tx.batch_execute("SAVEPOINT direct_load").await?;
    match copy_in::send(tx, &merge::copy_target(target, names), rows).await {
        Ok(_) => Ok(true),
        Err(e) if e.as_db_error().is_some() => {
            tracing::debug!("direct load refused ({e}); staging the batch");
            tx.batch_execute("ROLLBACK TO SAVEPOINT direct_load")
                .await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
