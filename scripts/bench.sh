#!/usr/bin/env bash
# make bench: the programs against PostgreSQL's own limits, on the same data
# in the same run, on a throwaway cluster (release build).
#
# Data: `orders`, BENCH_ROWS rows (default 1M) x 11 columns (bigint key,
# integer, varchar(16), text, smallint, numeric(12,2), double precision,
# boolean, timestamptz, date, text with NULLs), indexed on created_at.
#
# Cases, each against its reference (scripts/bench.py runs them):
#   tap FULL_TABLE     vs COPY (SELECT ... ORDER BY id) TO STDOUT, text and binary
#   tap INCREMENTAL    vs COPY (SELECT ... ORDER BY created_at) TO STDOUT, text and binary
#   tap LOG_BASED      300k changes (200k updates, 50k inserts, 50k deletes of a
#                      4-column table) vs SELECT count(*) FROM
#                      pg_logical_slot_peek_changes(...) (wal2json) on a twin slot;
#                      twice: as the tap chooses for this backlog (the SQL
#                      function), and through the replication protocol
#                      (logical_peek_max_wal_mb 0), there also vs pg_recvlogical
#   target insert      the tap's FULL_TABLE output into a new table vs
#                      psql \copy ... FROM a CSV of the same rows (same table, with its key)
#   target upsert      the same records again (every key exists) vs a temp-table
#                      \copy + INSERT ... ON CONFLICT (id) DO UPDATE
#   streams            2,000 tables x 5 rows: tap alone (ms/stream, STATE bytes)
#                      and tap | target (scripts/bench-streams.sh, run last)
# Environment: BENCH_ROWS (default 1000000), BENCH_ROUNDS (default 3).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
rows=${BENCH_ROWS:-1000000}
rounds=${BENCH_ROUNDS:-3}
tap="$root/target/release/tap-postgres"
target="$root/target/release/target-postgres"
for b in "$tap" "$target"; do
    [[ -x "$b" ]] || { echo "bench: $b is missing: run make build" >&2; exit 1; }
done

work=$(mktemp -d /tmp/bench.XXXXXX)
chmod 755 "$work"
cleanup() { "$here/cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
set -a
eval "$("$here/cluster.sh" start "$work/pg")"
set +a
export PGDATABASE=bench PGOPTIONS="-c client_min_messages=warning"
psql -q -d postgres -c "CREATE DATABASE bench"
# No autovacuum: its workers would run inside timed runs and count as server CPU.
psql -q -d postgres -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
started=$(date -u '+%Y-%m-%d %H:%M UTC')

echo "bench: loading $rows orders ..." >&2
psql -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id integer, sku varchar(16),
  status text, quantity smallint, price numeric(12,2), discount double precision,
  paid boolean, created_at timestamptz, ship_date date, note text);
INSERT INTO orders SELECT i, (i::bigint * 7919) % 100000, 'SKU-' || (i % 5000),
  (ARRAY['new', 'paid', 'shipped', 'returned'])[i % 4 + 1], i % 20 + 1,
  (i % 100000) / 100.0 + 0.01, (i % 97) / 1000.0, i % 3 <> 0,
  '2024-01-01'::timestamptz + i * interval '2.5 seconds',
  '2024-01-01'::date + i / 2000,
  CASE WHEN i % 2 = 0 THEN 'please leave at the door, order ' || i END
FROM generate_series(1, $rows) i;
CREATE INDEX ON orders (created_at);
CREATE TABLE ref_orders (LIKE orders INCLUDING ALL);
VACUUM ANALYZE orders;
SQL

catalog() { # catalog CONFIG OUT [METADATA-JSON]: discover, select every stream
    local extra=${3:-}
    [[ -n "$extra" ]] || extra='{}'
    "$tap" --config "$1" --discover 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)
extra = json.loads(sys.argv[1])
for s in c["streams"]:
    s["metadata"][0]["metadata"]["selected"] = True
    s["metadata"][0]["metadata"].update(extra)
json.dump(c, sys.stdout)' "$extra" >"$2"
}
cat >"$work/tap-full.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "bench",
 "default_replication_method": "FULL_TABLE", "filter_table": "orders"}
JSON
cat >"$work/tap-incr.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "bench",
 "default_replication_method": "INCREMENTAL", "filter_table": "orders"}
JSON
catalog "$work/tap-full.json" "$work/catalog-full.json"
catalog "$work/tap-incr.json" "$work/catalog-incr.json" '{"replication-key": "created_at"}'

echo "bench: the target's input (the tap's output) and its CSV twin ..." >&2
"$tap" --config "$work/tap-full.json" --catalog "$work/catalog-full.json" 2>/dev/null >"$work/records.jsonl"
psql -q -v ON_ERROR_STOP=1 -c "\\copy (SELECT * FROM orders ORDER BY id) TO '$work/orders.csv' WITH (FORMAT csv)"
cat >"$work/target.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "bench",
 "default_target_schema": "tgt"}
JSON

echo "bench: preparing 300k changes for LOG_BASED ..." >&2
psql -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE changes (id int PRIMARY KEY, v text, n numeric(12,2), at timestamptz);
INSERT INTO changes SELECT i, 'v' || i, i / 100.0, now() FROM generate_series(1, 250000) i;
SQL
cat >"$work/tap-log.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "bench", "filter_table": "changes",
 "default_replication_method": "LOG_BASED", "replication_slot": "bench_tap", "create_replication_slot": true}
JSON
catalog "$work/tap-log.json" "$work/catalog-log.json"
# The initial copy, and its state: every drain below starts from it (the
# slot is confirmed only up to the state a run starts with, so each round
# reads the same changes).
"$tap" --config "$work/tap-log.json" --catalog "$work/catalog-log.json" 2>/dev/null | grep '"type":"STATE"' | tail -n 1 \
    | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["value"]))' >"$work/state-log.json"
psql -q -At -c "SELECT 1 FROM pg_create_logical_replication_slot('bench_peek', 'wal2json')" >/dev/null
psql -q -v ON_ERROR_STOP=1 <<SQL
UPDATE changes SET v = v || '!', n = n + 1 WHERE id <= 200000;
INSERT INTO changes SELECT i, 'new' || i, i, now() FROM generate_series(250001, 300000) i;
DELETE FROM changes WHERE id > 200000 AND id <= 250000;
CHECKPOINT;
SQL
# The same run through the replication protocol, and where pg_recvlogical stops.
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["logical_peek_max_wal_mb"] = 0; print(json.dumps(c))' \
    "$work/tap-log.json" >"$work/tap-log-stream.json"
log_end=$(psql -At -c "SELECT pg_current_wal_flush_lsn()")

BENCH_LOG_END=$log_end BENCH_STARTED=$started BENCH_ROWS=$rows BENCH_ROUNDS=$rounds BENCH_WORK=$work \
    BENCH_TAP=$tap BENCH_TARGET=$target BENCH_POSTMASTER=$(head -n 1 "$work/pg/data/postmaster.pid") \
    python3 "$here/bench.py"

# ---- thousands of streams (issue 10, item 4) --------------------------------
bash "$here/bench-streams.sh"
