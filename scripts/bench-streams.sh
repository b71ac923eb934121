#!/usr/bin/env bash
# bench-streams.sh: thousands of small streams (issue 10, item 4). Called by
# `make bench`.
#
#   tap    : tap-postgres syncing N tables of 5 rows (FULL_TABLE), alone, at
#            N/4 and at N streams: seconds per stream at both sizes (flat
#            when the two match), and the STATE messages' count and bytes
#            next to the other bytes (linear: state bytes stay below them).
#   pipe   : tap-postgres | target-postgres for the N tables, wall seconds
#            (bounded by BENCH_STREAMS_TIMEOUT; reported as a timeout past it).
#
# Environment: BENCH_STREAMS (default 2000), BENCH_STREAMS_TIMEOUT (seconds,
# default 600), TAP_BIN / TARGET_BIN (default target/release/…).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
streams=${BENCH_STREAMS:-2000}
limit=${BENCH_STREAMS_TIMEOUT:-600}
tap=${TAP_BIN:-$root/target/release/tap-postgres}
target=${TARGET_BIN:-$root/target/release/target-postgres}
for b in "$tap" "$target"; do
    [[ -x "$b" ]] || { echo "bench: $b is missing: run make build" >&2; exit 1; }
done

work=$(mktemp -d /tmp/bench-streams.XXXXXX)
chmod 755 "$work"
cleanup() { "$here/cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
set -a
eval "$("$here/cluster.sh" start "$work/pg")"
set +a
export PGOPTIONS="-c client_min_messages=warning"
psql -q -d postgres -c "CREATE DATABASE streams" -c "CREATE DATABASE sink"

echo "bench: creating $streams tables of 5 rows ..." >&2
psql -q -d streams -v ON_ERROR_STOP=1 <<SQL
DO \$\$ BEGIN FOR i IN 1..$streams LOOP
  EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)', i);
  EXECUTE format('INSERT INTO t%s SELECT g, %L || g, g / 7.0, now() FROM generate_series(1, 5) g', i, 'name ');
END LOOP; END \$\$;
SQL

cat >"$work/tap.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "streams",
 "default_replication_method": "FULL_TABLE"}
JSON
cat >"$work/target.json" <<JSON
{"host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "dbname": "sink",
 "default_target_schema": "copy"}
JSON
"$tap" --config "$work/tap.json" --discover 2>/dev/null >"$work/discovered.json"
# Catalogs of the first N/4 and of all N tables, every stream selected.
python3 - "$work" "$streams" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
c = json.load(open(f"{work}/discovered.json"))
for s in c["streams"]:
    s["metadata"][0]["metadata"]["selected"] = True
c["streams"].sort(key=lambda s: int(s["table_name"][1:]))
json.dump(c, open(f"{work}/catalog-all.json", "w"))
json.dump({"streams": c["streams"][: n // 4]}, open(f"{work}/catalog-quarter.json", "w"))
PY

run_tap() { # catalog, output file; prints seconds
    local start end
    start=$(date +%s.%N)
    "$tap" --config "$work/tap.json" --catalog "$1" >"$2" 2>/dev/null
    end=$(date +%s.%N)
    python3 -c "print($end - $start)"
}
echo "bench: tap alone, $((streams / 4)) then $streams streams ..." >&2
quarter_s=$(run_tap "$work/catalog-quarter.json" "$work/out-quarter.jsonl")
all_s=$(run_tap "$work/catalog-all.json" "$work/out-all.jsonl")

echo "bench: tap | target, $streams streams ..." >&2
start=$(date +%s.%N)
pipe_status=0
timeout "$limit" bash -c '"$1" --config "$2" --catalog "$3" 2>/dev/null | "$4" --config "$5" >/dev/null 2>&1' \
    _ "$tap" "$work/tap.json" "$work/catalog-all.json" "$target" "$work/target.json" || pipe_status=$?
end=$(date +%s.%N)
pipe_s=$(python3 -c "print($end - $start)")

python3 - "$streams" "$quarter_s" "$all_s" "$pipe_s" "$pipe_status" "$limit" "$work" <<'PY'
import sys
n, quarter_s, all_s, pipe_s, status, limit, work = (
    int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]),
    int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])

def states(path):
    count = state_bytes = other = 0
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b'{"type":"STATE"'):
                count += 1
                state_bytes += len(line)
            else:
                other += len(line)
    return count, state_bytes, other

q = states(f"{work}/out-quarter.jsonl")
a = states(f"{work}/out-all.jsonl")
print(f"\nStreams: N tables x 5 rows, FULL_TABLE\n")
print("| run | streams | seconds | ms/stream | STATE messages | STATE MB | other MB |")
print("|---|---|---|---|---|---|---|")
print(f"| tap alone | {n // 4:,} | {quarter_s:.2f} | {quarter_s * 1000 / (n // 4):.1f} | {q[0]:,} | {q[1] / 1e6:.2f} | {q[2] / 1e6:.2f} |")
print(f"| tap alone | {n:,} | {all_s:.2f} | {all_s * 1000 / n:.1f} | {a[0]:,} | {a[1] / 1e6:.2f} | {a[2] / 1e6:.2f} |")
if status == 124:
    print(f"| tap \\| target | {n:,} | > {limit} (timed out) | - | - | - | - |")
else:
    ok = "" if status == 0 else f" (exit {status})"
    print(f"| tap \\| target | {n:,} | {pipe_s:.2f}{ok} | {pipe_s * 1000 / n:.1f} | - | - | - |")
print(f"\nms/stream at {n:,} vs {n // 4:,} streams: {(all_s / n) / (quarter_s / (n // 4)):.2f}x (flat = 1); "
      f"STATE bytes per stream: {q[1] / (n // 4):,.0f} vs {a[1] / n:,.0f}")
PY
