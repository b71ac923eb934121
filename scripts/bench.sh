#!/usr/bin/env bash
# make bench: throughput of the programs against PostgreSQL's own COPY
# (psql \copy) on the same data in the same run, reported as ratios.
#
#   FULL_TABLE (issue #3): tap-postgres reading a 1M-row, 8-column mixed-type
#   table vs psql "\copy (select ...) to /dev/null". Aim: ratio >= 0.5.
#
# Cases of issue #4 (LOG_BASED drain) and #5 (target load) are added with them.
# Environment: BENCH_ROWS (default 1000000), BENCH_RUNS (default 3; the best
# run of each side is reported).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
rows=${BENCH_ROWS:-1000000}
runs=${BENCH_RUNS:-3}
tap="$root/target/release/tap-postgres"
[[ -x "$tap" ]] || { echo "bench: $tap is missing: run make build" >&2; exit 1; }

work=$(mktemp -d /tmp/bench.XXXXXX)
chmod 755 "$work"
cleanup() { "$here/cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
set -a
eval "$("$here/cluster.sh" start "$work/pg")"
set +a
export PGDATABASE=bench
psql -q -d postgres -c "CREATE DATABASE bench"
echo "bench: loading $rows rows into a mixed-type table ..." >&2
psql -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE mixed (id bigint PRIMARY KEY, name text, amount numeric(12,2), qty int,
  ratio double precision, created timestamptz, flag boolean, tags text[]);
INSERT INTO mixed SELECT i, 'name ' || i, (i % 100000) / 100.0, i % 1000, i / 7.0,
  '2024-01-01'::timestamptz + i * interval '1 second', i % 2 = 0, ARRAY['a', 'b' || i]
FROM generate_series(1, $rows) i;
VACUUM ANALYZE mixed;
SQL

cat >"$work/tap.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "bench",
 "default_replication_method": "FULL_TABLE", "filter_table": "mixed"}
JSON
"$tap" --config "$work/tap.json" --discover 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)
for s in c["streams"]:
    s["metadata"][0]["metadata"]["selected"] = True
json.dump(c, sys.stdout)' >"$work/catalog.json"

best() { # best (lowest seconds) of N measure.py runs of "$@"
    local best_line="" line
    for _ in $(seq "$runs"); do
        line=$(python3 "$here/measure.py" "$@")
        if [[ -z "$best_line" ]] || python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); sys.exit(0 if a["seconds"] < b["seconds"] else 1)' "$line" "$best_line"; then
            best_line=$line
        fi
    done
    echo "$best_line"
}

psql_line=$(best psql -q -c "\\copy (SELECT * FROM mixed ORDER BY id) TO STDOUT")
tap_line=$(best "$tap" --config "$work/tap.json" --catalog "$work/catalog.json")

python3 - "$rows" "$psql_line" "$tap_line" <<'PY'
import json, sys
rows = int(sys.argv[1])
psql, tap = json.loads(sys.argv[2]), json.loads(sys.argv[3])
assert tap["exit"] == 0 and psql["exit"] == 0, (psql, tap)
def line(name, r):
    return (f"| {name} | {r['seconds']:.2f} | {rows / r['seconds']:,.0f} | "
            f"{r['bytes'] / r['seconds'] / 1e6:,.1f} | {r['max_rss_kib'] / 1024:,.1f} |")
print(f"\nFULL_TABLE, {rows:,} rows x 8 mixed columns (best of runs)\n")
print("| reader | seconds | rows/s | MB/s out | peak RSS MiB |")
print("|---|---|---|---|---|")
print(line("psql \\copy (text)", psql))
print(line("tap-postgres (Singer JSON)", tap))
print(f"\nratio tap/psql rows/s: {psql['seconds'] / tap['seconds']:.2f} (aim >= 0.50)")
PY
