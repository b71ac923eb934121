#!/usr/bin/env bash
# make demo: the main job end to end on a throwaway local cluster.
#
#   1. start a PostgreSQL cluster in a temporary directory (scripts/cluster.sh)
#   2. create a sample shop: customers, orders (enum, numeric, jsonb), events
#      (jsonb, awkward values), a partitioned measurements table
#   3. discover, select every stream (orders INCREMENTAL, events LOG_BASED
#      through a wal2json slot, the others FULL_TABLE), run
#      tap-postgres | target-postgres into a second database
#   4. change the source (updates, inserts, deletes), run again from the
#      saved state
#   5. print source vs target row counts and a checksum of every table
#
# It removes everything it made when it ends (DEMO_KEEP=1 keeps the cluster
# and prints where it is; `make demo-clean` removes a kept one).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
keep_file=/tmp/tap-postgres-demo.dir

if [[ "${1:-}" == clean ]]; then
    if [[ -f "$keep_file" ]]; then
        dir=$(cat "$keep_file")
        "$here/cluster.sh" stop "$dir/pg" || true
        rm -rf "$dir" "$keep_file"
        echo "demo: removed $dir"
    fi
    exit 0
fi

bin="$root/target/release"
[[ -x "$bin/tap-postgres" && -x "$bin/target-postgres" ]] || { echo "demo: run make build first" >&2; exit 1; }

work=$(mktemp -d /tmp/tap-postgres-demo.XXXXXX)
chmod 755 "$work"
cleanup() {
    if [[ "${DEMO_KEEP:-}" == 1 ]]; then
        echo "$work" >"$keep_file"
        echo "demo: kept $work (cluster env in $work/pg/env); make demo-clean removes it"
    else
        "$here/cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
        rm -rf "$work"
    fi
}
trap cleanup EXIT
set -a
eval "$("$here/cluster.sh" start "$work/pg")"
set +a
say() { printf '\n== %s\n' "$*"; }

say "creating the sample databases shop (source) and warehouse (target)"
psql -q -d postgres -c "CREATE DATABASE shop" -c "CREATE DATABASE warehouse"
psql -q -v ON_ERROR_STOP=1 -d shop <<'SQL'
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text, created_at timestamptz NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int REFERENCES customers, total numeric(12,2),
  status order_status, placed_at timestamp, items jsonb, updated_at timestamptz NOT NULL);
CREATE TABLE events (id bigserial PRIMARY KEY, kind text, payload jsonb, score double precision,
  happened date, note text);
CREATE TABLE measurements (id int, taken_at date, value numeric, tags text[],
  PRIMARY KEY (id, taken_at)) PARTITION BY RANGE (taken_at);
CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');

INSERT INTO customers SELECT i, 'Customer ' || i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'c' || i || '@example.com' END,
  '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 hour' FROM generate_series(1, 1000) i;
INSERT INTO orders SELECT i, 1 + i % 1000, (i * 7 % 100000) / 100.0, (ARRAY['new','paid','shipped'])[1 + i % 3]::order_status,
  '2024-03-01'::timestamp + i * interval '5 minutes', jsonb_build_object('sku', 'S' || i, 'qty', i % 5, 'price', 19.99),
  '2024-03-01 00:00:00+00'::timestamptz + i * interval '1 minute' FROM generate_series(1, 5000) i;
INSERT INTO events (kind, payload, score, happened, note) SELECT
  (ARRAY['click','view','buy'])[1 + i % 3], jsonb_build_object('n', i, 'nested', jsonb_build_array(i, 'x')),
  i / 3.0, '2024-01-01'::date + i % 400, 'line ' || i FROM generate_series(1, 2000) i;
-- values that other connectors lose: NaN, infinity, BC, year 10000, '', tabs and newlines, unicode
INSERT INTO events (kind, payload, score, happened, note) VALUES
  ('edge', '{"big": 123456789012345678901234567890.123456789}', 'NaN', 'infinity', ''),
  ('edge', '[1, "two", null]', '-Infinity', '0044-03-15 BC', E'tab\there\nnewline \\ backslash é ☃'),
  ('edge', '"just a string"', 1e300, '10000-01-01', NULL);
INSERT INTO measurements SELECT i, '2024-06-01'::date + (i % 500), i * 1.000001, ARRAY['t' || i % 4, NULL]
  FROM generate_series(1, 3000) i;
-- Row estimates for discovery's row-count (a never-analyzed table has none).
ANALYZE;
SQL

cat >"$work/tap.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "shop", "default_replication_method": "FULL_TABLE",
 "create_replication_slot": true}
JSON
cat >"$work/target.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "warehouse", "default_target_schema": "shop",
 "hard_delete": true}
JSON

say "discovering"
"$bin/tap-postgres" --config "$work/tap.json" --discover 2>/dev/null >"$work/discovered.json"
# Select every stream; orders replicate INCREMENTAL on updated_at, events
# LOG_BASED (the slot macrometa_shop is created on the first run), the others FULL_TABLE.
python3 - "$work/discovered.json" "$work/catalog.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for s in c["streams"]:
    md = next(m for m in s["metadata"] if m["breadcrumb"] == [])["metadata"]
    md["selected"] = True
    if s["tap_stream_id"] == "public-orders":
        md["replication-method"] = "INCREMENTAL"
        md["replication-key"] = "updated_at"
    if s["tap_stream_id"] == "public-events":
        md["replication-method"] = "LOG_BASED"
    # row-count is the planner's estimate; -1 (or none) until analyzed
    rows = md.get("row-count", -1)
    rows = f"~{rows}" if rows >= 0 else "unknown"
    print(f'  {s["tap_stream_id"]:<22} {md.get("replication-method", "FULL_TABLE"):<12} rows {rows}', file=sys.stderr)
json.dump(c, open(sys.argv[2], "w"))
PY

run() {
    local state_args=()
    [[ -s "$work/state.json" ]] && state_args=(--state "$work/state.json")
    if ! "$bin/tap-postgres" --config "$work/tap.json" --catalog "$work/catalog.json" "${state_args[@]}" 2>"$work/tap.log" \
        | "$bin/target-postgres" --config "$work/target.json" 2>"$work/target.log" >"$work/states.jsonl"; then
        echo "demo: tap | target failed; the end of their logs:" >&2
        tail -n 15 "$work/tap.log" "$work/target.log" >&2
        return 1
    fi
    tail -n 1 "$work/states.jsonl" >"$work/state.json.tmp" && mv "$work/state.json.tmp" "$work/state.json"
    grep -h "METRIC" "$work/tap.log" | sed 's/^/  tap: /' || true
}

say "first run: tap-postgres | target-postgres"
time run

say "changing the source: 200 orders updated, 100 inserted; events: 50 added, 20 updated, 10 deleted"
psql -q -d shop <<'SQL'
UPDATE orders SET status = 'shipped', total = total + 0.01, updated_at = now() WHERE id % 25 = 0;
INSERT INTO orders SELECT i, 1 + i % 1000, 1.23, 'new', now()::timestamp, '{"sku": "NEW"}', now() FROM generate_series(5001, 5100) i;
INSERT INTO events (kind, payload, score, happened, note) SELECT 'late', '{}', i, current_date, 'late ' || i FROM generate_series(1, 50) i;
UPDATE events SET note = note || ' (edited)', payload = payload || '{"edited": true}' WHERE id BETWEEN 100 AND 119;
DELETE FROM events WHERE id BETWEEN 200 AND 209;
SQL

say "second run, from the saved state"
time run
echo "  state: $(cut -c1-160 "$work/state.json")..."

say "source vs target"
status=0
printf '%-14s %10s %10s  %-32s  %s\n' table source target checksum match
cols_of() { # the source's columns: the target also has _sdc_* metadata columns
    psql -At -d shop -c "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
        WHERE attrelid = '$1'::regclass AND attnum > 0 AND NOT attisdropped"
}
for t in customers orders events measurements; do
    key=$( [[ $t == measurements ]] && echo "id, taken_at" || echo id )
    cols=$(cols_of "$t")
    q="SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY $key)), '-') FROM (SELECT $cols FROM"
    read -r sc ss < <(psql -At -F ' ' -d shop -c "$q $t) t")
    read -r tc ts < <(psql -At -F ' ' -d warehouse -c "$q shop.$t WHERE _sdc_deleted_at IS NULL) t")
    if [[ "$sc $ss" == "$tc $ts" ]]; then m=yes; else m=NO; status=1; fi
    printf '%-14s %10s %10s  %-32s  %s\n' "$t" "$sc" "$tc" "$ss" "$m"
done
echo
psql -At -d shop -c "SELECT '  replication slot ' || slot_name || ': confirmed up to ' || confirmed_flush_lsn FROM pg_replication_slots"
exit $status
