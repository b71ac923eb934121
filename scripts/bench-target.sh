#!/usr/bin/env bash
# bench-target.sh: target-postgres load throughput against psql \copy of the
# same rows, and peak memory of a 10x larger load. Called by `make bench`.
#
#   append : 1M RECORDs (8 mixed columns) into an empty table, vs
#            psql "\copy ... from" a CSV of the same rows. Aim: ratio >= 0.5.
#   upsert : the same 1M RECORDs again over the loaded table (every key hit).
#   memory : peak RSS loading 2M small records vs 200k (aim: within 1.5x).
#
# Environment: BENCH_ROWS (default 1000000), BENCH_RUNS (default 3; best run
# reported), TARGET_BIN (default target/release/target-postgres).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
rows=${BENCH_ROWS:-1000000}
runs=${BENCH_RUNS:-3}
target=${TARGET_BIN:-$root/target/release/target-postgres}
[[ -x "$target" ]] || { echo "bench: $target is missing: run make build" >&2; exit 1; }

work=$(mktemp -d /tmp/bench-target.XXXXXX)
chmod 755 "$work"
cleanup() { "$here/cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
set -a
eval "$("$here/cluster.sh" start "$work/pg")"
set +a
export PGDATABASE=bench PGOPTIONS="-c client_min_messages=warning"
psql -q -d postgres -c "CREATE DATABASE bench"

echo "bench: writing $rows records as Singer JSON and as CSV ..." >&2
python3 - "$rows" "$work" <<'PY'
import sys
rows, work = int(sys.argv[1]), sys.argv[2]
schema = ('{"type":"SCHEMA","stream":"public-mixed","schema":{"type":"object","properties":{'
  '"id":{"type":"integer"},"name":{"type":["null","string"]},'
  '"amount":{"type":["null","number"],"x-sql-datatype":"numeric(12,2)"},'
  '"qty":{"type":["null","integer"],"x-sql-datatype":"integer"},'
  '"ratio":{"type":["null","number"],"x-sql-datatype":"double precision"},'
  '"created":{"type":["null","string"],"format":"date-time"},'
  '"flag":{"type":["null","boolean"]},'
  '"tags":{"type":["null","array"],"items":{"type":"string"},"x-sql-datatype":"text[]"}}},'
  '"key_properties":["id"]}\n')
with open(f"{work}/records.jsonl", "w") as j, open(f"{work}/records.csv", "w") as c:
    j.write(schema)
    for i in range(1, rows + 1):
        amount = f"{(i % 100000) // 100}.{(i % 100):02d}"
        ratio = repr(i / 7.0)
        h, rem = divmod(i, 3600)
        created = f"2024-01-01T{h % 24:02d}:{rem // 60:02d}:{rem % 60:02d}+00:00"
        flag = "true" if i % 2 == 0 else "false"
        j.write(f'{{"type":"RECORD","stream":"public-mixed","record":{{"id":{i},"name":"name {i}",'
                f'"amount":{amount},"qty":{i % 1000},"ratio":{ratio},"created":"{created}",'
                f'"flag":{flag},"tags":["a","b{i}"]}},"time_extracted":"2024-01-01T00:00:00.000000Z"}}\n')
        c.write(f'{i},name {i},{amount},{i % 1000},{ratio},{created},{flag},"{{a,b{i}}}"\n')
        if i % 100000 == 0:
            j.write(f'{{"type":"STATE","value":{{"bookmarks":{{"public-mixed":{{"done":{i}}}}}}}}}\n')
PY

# No key, like the table an append-only load creates.
psql -q -v ON_ERROR_STOP=1 -c "CREATE TABLE copy_target (id bigint, name text,
  amount numeric(12,2), qty int, ratio double precision, created timestamptz, flag boolean, tags text[])"

cat >"$work/append.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "bench",
 "default_target_schema": "tgt", "load_method": "append-only", "primary_key_required": false}
JSON
cat >"$work/upsert.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "bench",
 "default_target_schema": "tgt"}
JSON

# measure CMD...: one JSON line (seconds, max_rss_kib, exit) for CMD.
measure() { python3 "$here/measure.py" "$@"; }
best() { # best (lowest seconds) of $runs runs; $1 is a setup command run before each
    local setup=$1 best_line="" line
    shift
    for _ in $(seq "$runs"); do
        eval "$setup"
        line=$(measure "$@")
        if [[ -z "$best_line" ]] || python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); sys.exit(0 if a["seconds"] < b["seconds"] else 1)' "$line" "$best_line"; then
            best_line=$line
        fi
    done
    echo "$best_line"
}

reset_copy='psql -q -c "TRUNCATE copy_target"'
reset_append='psql -q -c "DROP SCHEMA IF EXISTS tgt CASCADE"'
echo "bench: psql \\copy ..." >&2
psql_line=$(best "$reset_copy" psql -q -c "\\copy copy_target FROM '$work/records.csv' WITH (FORMAT csv)")
echo "bench: target-postgres append ..." >&2
append_line=$(best "$reset_append" "$target" --config "$work/append.json" --input "$work/records.jsonl" --log-level warn)
# Upsert over the loaded table: first a load with the key, then the timed runs.
psql -q -c "DROP SCHEMA IF EXISTS tgt CASCADE"
"$target" --config "$work/upsert.json" --input "$work/records.jsonl" --log-level warn >/dev/null
echo "bench: target-postgres upsert ..." >&2
upsert_line=$(best ":" "$target" --config "$work/upsert.json" --input "$work/records.jsonl" --log-level warn)
n=$(psql -Atq -c "SELECT count(*) FROM tgt.mixed")
[[ "$n" == "$rows" ]] || { echo "bench: expected $rows rows after upsert, found $n" >&2; exit 1; }

echo "bench: memory, 200k and 2M small records ..." >&2
small() { # small N FILE: N records of a 3-column stream
    python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write('{"type":"SCHEMA","stream":"public-small","schema":{"properties":{"id":{"type":"integer"},'
            '"v":{"type":"string"},"n":{"type":"number"}}},"key_properties":["id"]}\n')
    for i in range(n):
        f.write(f'{{"type":"RECORD","stream":"public-small","record":{{"id":{i},"v":"value {i}","n":{i}.5}}}}\n')
        if i % 50000 == 0:
            f.write(f'{{"type":"STATE","value":{{"i":{i}}}}}\n')
PY
}
small 200000 "$work/small-200k.jsonl"
small 2000000 "$work/small-2m.jsonl"
psql -q -c "DROP SCHEMA IF EXISTS tgt CASCADE"
m200k=$(measure "$target" --config "$work/append.json" --input "$work/small-200k.jsonl" --log-level warn)
psql -q -c "DROP SCHEMA IF EXISTS tgt CASCADE"
m2m=$(measure "$target" --config "$work/append.json" --input "$work/small-2m.jsonl" --log-level warn)

python3 - "$rows" "$psql_line" "$append_line" "$upsert_line" "$m200k" "$m2m" <<'PY'
import json, sys
rows = int(sys.argv[1])
psql, append, upsert, m200k, m2m = (json.loads(a) for a in sys.argv[2:7])
for r in (psql, append, upsert, m200k, m2m):
    assert r["exit"] == 0, r
def line(name, r):
    return f"| {name} | {r['seconds']:.2f} | {rows / r['seconds']:,.0f} | {r['max_rss_kib'] / 1024:,.1f} |"
print(f"\ntarget load, {rows:,} records x 8 mixed columns (best of runs)\n")
print("| loader | seconds | rows/s | peak RSS MiB |")
print("|---|---|---|---|")
print(line("psql \\copy from CSV", psql))
print(line("target-postgres append (empty table)", append))
print(line("target-postgres upsert (every key exists)", upsert))
print(f"\nratio append/psql rows/s: {psql['seconds'] / append['seconds']:.2f} (aim >= 0.50)")
print(f"ratio upsert/psql rows/s: {psql['seconds'] / upsert['seconds']:.2f}")
ratio = m2m["max_rss_kib"] / m200k["max_rss_kib"]
print(f"\nmemory: peak RSS 200k records {m200k['max_rss_kib'] / 1024:.1f} MiB, "
      f"2M records {m2m['max_rss_kib'] / 1024:.1f} MiB, ratio {ratio:.2f} (aim <= 1.50)")
PY
