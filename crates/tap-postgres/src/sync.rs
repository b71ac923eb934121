//! A sync run: the selected streams of the catalog, one after the other,
//! each by its replication method, with the state carried through.
//!
//! Invariants:
//! - A STATE is written only after every RECORD it covers (the writer
//!   flushes at each STATE), so a target never commits a bookmark ahead of
//!   its rows.
//! - The states at the start and end of a stream and every
//!   `state_interval_rows` rows are checkpoints ([`Output::checkpoint`]):
//!   written only when the output since the last STATE outweighs it.
//!   Each STATE is a complete, valid place to resume (bookmarks of finished
//!   streams, the key or value reached in the current one), so a skipped
//!   checkpoint costs a rerun some repeated rows and loses nothing. The last
//!   STATE of a run is always written.
//! - `currently_syncing` names the stream in progress; a rerun starts with
//!   it. It is cleared in the final STATE.
//! - A stream's selected columns are checked against the database as it is
//!   now before anything of that stream is written: a column dropped or
//!   retyped since discovery is an error naming it; a table dropped since
//!   discovery is a warning and the other streams go on.

use std::collections::HashMap;
use std::io::Write;

use singer::catalog::ReplicationMethod;
use singer::{Catalog, CatalogEntry, MessageWriter, State, Writable};
use tokio_postgres::Client;

use crate::config::TapConfig;
use crate::discovery::{discover, Filter, Table};
use crate::encode::SESSION_SETTINGS;
use crate::error::{bail, err, Context as _, Result};
use crate::log_based::{self, LogStream};
use crate::output::Output;
use crate::rows::StreamPlan;
use crate::{full_table, incremental};

/// Opens a reading connection to `dbname` with the session settings the
/// value encoding relies on.
pub async fn connect_reader(config: &TapConfig, dbname: &str) -> Result<Client> {
    let conn = config.read_connection().for_database(dbname);
    let client = pg::connect(&conn).await?;
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .context("setting the session's date, time and number formats")?;
    Ok(client)
}

/// Syncs every selected stream of `catalog`.
pub async fn run<W: Write>(
    config: &TapConfig,
    catalog: &Catalog,
    state: State,
    writer: &mut MessageWriter<W>,
    writable: Writable,
) -> Result<()> {
    let mut streams: Vec<&CatalogEntry> = catalog.selected_streams().collect();
    if streams.is_empty() {
        tracing::warn!("no stream is selected in the catalog: nothing to sync");
    }
    // A stream interrupted in the last run goes first.
    if let Some(current) = state.currently_syncing() {
        if let Some(i) = streams.iter().position(|s| s.tap_stream_id == current) {
            let s = streams.remove(i);
            streams.insert(0, s);
        }
    }
    let mut ctx = Output::new(config, writer, state).with_writable(writable);
    let started_with = ctx.state().clone();
    let mut log_streams: Vec<(String, LogStream<'_>)> = Vec::new();
    let mut clients: HashMap<String, Client> = HashMap::new();
    let mut tables: HashMap<String, HashMap<String, Table>> = HashMap::new();
    for entry in streams {
        let id = entry.tap_stream_id.as_str();
        let dbname = entry
            .database_name()
            .unwrap_or(&config.connection.dbname)
            .to_string();
        if !clients.contains_key(&dbname) {
            let client = connect_reader(config, &dbname).await?;
            clients.insert(dbname.clone(), client);
        }
        let client = clients.get_mut(&dbname).expect("just inserted");
        if !tables.contains_key(&dbname) {
            let found = discover(client, &Filter::default())
                .await
                .with_context(|| format!("reading the catalog of database {dbname:?}"))?;
            tables.insert(
                dbname.clone(),
                found.into_iter().map(|t| (t.stream_id(), t)).collect(),
            );
        }
        let Some(table) = tables[&dbname].get(id) else {
            let schema = entry.schema_name().unwrap_or_default();
            let name = entry.table_name.as_deref().unwrap_or(entry.stream_name());
            let qualified = pg::QualifiedName::new(schema, name).to_string();
            let exists: Option<String> = client
                .query_one("SELECT to_regclass($1)::text", &[&qualified])
                .await?
                .get(0);
            if exists.is_some() {
                return Err(
                    err!("permission denied: the user may not SELECT from {qualified}")
                        .in_stream(id),
                );
            }
            tracing::warn!(
                "stream {id}: table {qualified} no longer exists; skipped, the other streams go on"
            );
            continue;
        };
        let method = resolve_method(&mut ctx, entry).map_err(|e| e.in_stream(id))?;
        if method == ReplicationMethod::LogBased {
            // Logical streams run after the others, one slot per database.
            let mut selected: Vec<String> = check_columns(entry, table)
                .map_err(|e| e.in_stream(id))?
                .iter()
                .map(|s| s.to_string())
                .collect();
            // Columns added since discovery are streamed too (and announced
            // by the SCHEMA), as the peers do: a change log has no
            // "later" in which to pick them up.
            let known = entry.schema.get("properties").and_then(|p| p.as_object());
            for c in &table.columns {
                if known.is_some_and(|k| !k.contains_key(&c.name)) {
                    tracing::info!(
                        "stream {id}: column {:?} is new since discovery; streaming it",
                        c.name
                    );
                    selected.push(c.name.clone());
                }
            }
            log_streams.push((
                dbname,
                LogStream {
                    entry,
                    table: table.clone(),
                    selected,
                },
            ));
            continue;
        }
        sync_stream(&mut ctx, client, entry, table, method)
            .await
            .map_err(crate::read::explain_lost_connection)
            .map_err(|e| e.in_stream(id))?;
    }
    for (db, streams) in by_database(log_streams) {
        ctx.set_currently_syncing(None);
        log_based::run(&mut ctx, &config.log, &db, streams, &started_with).await?;
    }
    ctx.set_currently_syncing(None);
    ctx.emit_state()?;
    Ok(())
}

/// Groups `(database, item)` pairs by database: each database once, in the
/// order of its first item, its items in their order (a catalog ordered
/// A, B, A gives one pass over A, then one over B).
pub fn by_database<T>(items: Vec<(String, T)>) -> Vec<(String, Vec<T>)> {
    let mut groups: Vec<(String, Vec<T>)> = Vec::new();
    for (db, item) in items {
        match groups.iter_mut().find(|(d, _)| *d == db) {
            Some((_, g)) => g.push(item),
            None => groups.push((db, vec![item])),
        }
    }
    groups
}

/// The stream's replication method; a change of method since the last run
/// drops the old bookmark (it means nothing to the new method).
fn resolve_method<W: Write>(
    ctx: &mut Output<'_, W>,
    entry: &CatalogEntry,
) -> Result<ReplicationMethod> {
    let id = entry.tap_stream_id.as_str();
    let method = entry
        .replication_method()?
        .or(ctx.config().default_replication_method)
        .ok_or_else(|| {
            err!(
                config,
                "no replication method: set `replication-method` in the stream's catalog metadata \
                 or `default_replication_method` in the config"
            )
        })?;
    let previous = crate::phase::method(ctx.bookmark(id)).map(str::to_string);
    if previous.as_deref().is_some_and(|p| p != method.as_str()) {
        tracing::info!(
            "stream {id}: replication method changed from {} to {}; starting over",
            previous.unwrap_or_default(),
            method.as_str()
        );
        ctx.remove_bookmark(id);
    }
    Ok(method)
}

async fn sync_stream<W: Write>(
    ctx: &mut Output<'_, W>,
    client: &mut Client,
    entry: &CatalogEntry,
    table: &Table,
    method: ReplicationMethod,
) -> Result<()> {
    let selected = check_columns(entry, table)?;
    match method {
        ReplicationMethod::FullTable => {
            let key = table.resume_key.clone();
            let plan = StreamPlan::new(table, &selected, &key, ctx.values());
            let kind = full_table::CopyKind {
                method,
                exported: None,
            };
            full_table::sync(ctx, client, &plan, &key, kind).await
        }
        ReplicationMethod::Incremental => {
            let key = entry
                .replication_key()
                .ok_or_else(|| {
                    err!(
                        config,
                        "INCREMENTAL needs a `replication-key` in the catalog metadata"
                    )
                })?
                .to_string();
            let column = table.column(&key).ok_or_else(|| {
                err!(
                    config,
                    "replication key {key:?} is not a column of {}.{}",
                    table.schema,
                    table.name
                )
            })?;
            if !crate::types::can_be_replication_key(&column.kind) {
                bail!(
                    config,
                    "replication key {key:?} has type {}, which cannot be compared as a bookmark",
                    column.sql_type
                );
            }
            let plan = StreamPlan::new(table, &selected, std::slice::from_ref(&key), ctx.values());
            incremental::sync(ctx, client, &plan, &key).await
        }
        ReplicationMethod::LogBased => unreachable!("LOG_BASED streams are run by log_based::run"),
    }
}

/// The selected columns, checked against the table as it is now.
fn check_columns<'e>(entry: &'e CatalogEntry, table: &Table) -> Result<Vec<&'e str>> {
    let mut selected = entry.selected_properties();
    // Key columns are always read, even if a catalog deselected them.
    for key in &table.primary_key {
        if let Some(name) = entry
            .schema
            .get("properties")
            .and_then(|p| p.as_object())
            .and_then(|p| p.keys().find(|k| *k == key))
        {
            if !selected.contains(&name.as_str()) {
                selected.push(name);
            }
        }
    }
    for name in &selected {
        let Some(column) = table.column(name) else {
            bail!(
                config,
                "column {name:?} is selected but no longer exists (dropped since discovery?); \
                 run discovery again"
            );
        };
        let catalog_type = entry
            .property_metadata(name)
            .and_then(|m| m.get("sql-datatype"))
            .and_then(|v| v.as_str());
        if let Some(t) = catalog_type {
            if t != column.sql_type_name {
                bail!(
                    config,
                    "column {name:?} was {t} at discovery and is {} now; run discovery again",
                    column.sql_type_name
                );
            }
        }
    }
    if selected.is_empty() {
        bail!(config, "no column is selected");
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::by_database;

    #[test]
    fn databases_a_b_a_are_two_groups_in_first_seen_order() {
        let items = vec![
            ("a".to_string(), 1),
            ("b".to_string(), 2),
            ("a".to_string(), 3),
        ];
        assert_eq!(
            by_database(items),
            [("a".to_string(), vec![1, 3]), ("b".to_string(), vec![2])]
        );
        assert!(by_database::<u8>(Vec::new()).is_empty());
    }
}
