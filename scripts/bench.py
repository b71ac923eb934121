#!/usr/bin/env python3
"""The rounds of `make bench` (scripts/bench.sh prepares the cluster and the
data, and passes paths in BENCH_* variables).

Every case is run next to its reference in each of BENCH_ROUNDS rounds, the
order of the two alternating between rounds, so a neighbour's load on this
shared machine hits both sides of a round alike. Reported per program: the median of
wall seconds, rows/s, MB/s, client CPU (the program's own user + system
time), server CPU (every server process, see measure.py) and peak RSS
(VmHWM); per case the ratio, our seconds / the reference's seconds, as the
median of the per-round ratios (1.00 = as fast as PostgreSQL itself;
lower is better)."""
import json
import os
import statistics
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
env = os.environ
rows = int(env["BENCH_ROWS"])
rounds = int(env["BENCH_ROUNDS"])
work = env["BENCH_WORK"]
tap = env["BENCH_TAP"]
target = env["BENCH_TARGET"]
postmaster = env["BENCH_POSTMASTER"]
CHANGES = 300_000


def psql(sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def measure(cmd, stdin=None):
    args = [sys.executable, f"{here}/measure.py", "--server-pid", postmaster]
    if stdin:
        args += ["--stdin", stdin]
    out = subprocess.run(args + ["--", *cmd], check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    if r["exit"] != 0:
        sys.exit(f"bench: {' '.join(cmd)} exited with {r['exit']}")
    return r


class Side:
    """One program of a case: its command, an untimed setup before each
    run, and how its MB/s is counted (stdout, or the size of its input)."""

    def __init__(self, name, cmd, setup=None, input_file=None):
        self.name, self.cmd, self.setup, self.input_file = name, cmd, setup, input_file
        self.runs = []

    def run(self):
        for sql in [self.setup] if isinstance(self.setup, str) else self.setup or []:
            psql(sql)
        psql("CHECKPOINT")  # no checkpoint of the previous run's writes inside this one
        r = measure(self.cmd)
        r["mb"] = (os.path.getsize(self.input_file) if self.input_file else r["bytes"]) / 1e6
        self.runs.append(r)
        return r


class Case:
    def __init__(self, title, unit, count, ours, refs):
        self.title, self.unit, self.count, self.ours, self.refs = title, unit, count, ours, refs
        self.ratios = {ref.name: [] for ref in refs}

    def round(self, n):
        sides = [*self.refs, self.ours] if n % 2 == 0 else [self.ours, *self.refs]
        done = {side.name: side.run() for side in sides}
        for ref in self.refs:
            self.ratios[ref.name].append(done[self.ours.name]["seconds"] / done[ref.name]["seconds"])

    def report(self):
        med = statistics.median
        print(f"\n{self.title}\n")
        print(f"| program | seconds | {self.unit}/s | MB/s | client CPU s | server CPU s | peak RSS MiB |")
        print("|---|---|---|---|---|---|---|")
        for side in [*self.refs, self.ours]:
            secs = med(r["seconds"] for r in side.runs)
            print(f"| {side.name} | {secs:.2f} | {med(self.count / r['seconds'] for r in side.runs):,.0f} | "
                  f"{med(r['mb'] / r['seconds'] for r in side.runs):,.1f} | "
                  f"{med(r['client_cpu'] for r in side.runs):.2f} | "
                  f"{med(r['server_cpu'] for r in side.runs):.2f} | "
                  f"{max(r['max_rss_kib'] for r in side.runs) / 1024:,.1f} |")
        for ref in self.refs:
            rs = self.ratios[ref.name]
            print(f"\nratio vs {ref.name}: {med(rs):.2f}x  (rounds: {', '.join(f'{x:.2f}' for x in rs)})")


cols = "id, customer_id, sku, status, quantity, price, discount, paid, created_at, ship_date, note"


def copy_refs(order):
    q = f"COPY (SELECT {cols} FROM orders ORDER BY {order}) TO STDOUT"
    return [Side("COPY text", ["psql", "-q", "-c", q]),
            Side("COPY binary", ["psql", "-q", "-c", q + " (FORMAT binary)"])]


# The tap's wal2json options (log_based/slot.rs), but the one Debian's
# wal2json 2.5 refuses.
WAL2JSON = [("format-version", "2"), ("include-transaction", "1"), ("include-xids", "1"),
            ("include-timestamp", "1"), ("include-lsn", "1"), ("include-types", "0"),
            ("add-tables", "public.changes")]


def peek_ref():
    return Side("count(*) of pg_logical_slot_peek_changes",
                ["psql", "-At", "-c", "SELECT count(*) FROM pg_logical_slot_peek_changes('bench_peek', "
                 "NULL, NULL, 'format-version', '2', 'add-tables', 'public.changes')"])


def tap_cmd(kind):
    return [tap, "--config", f"{work}/tap-{kind}.json", "--catalog", f"{work}/catalog-{kind}.json"]


csv = f"{work}/orders.csv"
records = f"{work}/records.jsonl"
target_cmd = [target, "--config", f"{work}/target.json", "--input", records, "--log-level", "warn"]
set_list = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols.split(", ")[1:])
cases = [
    Case(f"tap FULL_TABLE, {rows:,} rows x 11 columns", "rows", rows,
         Side("tap-postgres FULL_TABLE", tap_cmd("full")), copy_refs("id")),
    Case(f"tap INCREMENTAL (replication key created_at, from the start), {rows:,} rows", "rows", rows,
         Side("tap-postgres INCREMENTAL", tap_cmd("incr")), copy_refs("created_at")),
    Case(f"tap LOG_BASED, {CHANGES:,} changes (200k updates, 50k inserts, 50k deletes): "
         "the tap's choice for this backlog, pg_logical_slot_peek_changes", "changes", CHANGES,
         Side("tap-postgres LOG_BASED", tap_cmd("log") + ["--state", f"{work}/state-log.json"]),
         [peek_ref()]),
    Case(f"tap LOG_BASED, the same changes through the replication protocol "
         "(logical_peek_max_wal_mb 0)", "changes", CHANGES,
         Side("tap-postgres LOG_BASED, replication protocol",
              [tap, "--config", f"{work}/tap-log-stream.json", "--catalog", f"{work}/catalog-log.json",
               "--state", f"{work}/state-log.json"]),
         [peek_ref(),
          # PostgreSQL's own client of the replication protocol, which
          # only writes what it receives: that protocol's limit. On a copy
          # of the peek's twin slot, as it confirms what it receives.
          Side("pg_recvlogical (same options) to stdout",
               ["pg_recvlogical", "-d", "bench", "-S", "bench_rl", "--start", "-f", "-",
                "-E", env["BENCH_LOG_END"]] + [a for k, v in WAL2JSON for a in ("-o", f"{k}={v}")],
               setup=["SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name = 'bench_rl'",
                      "SELECT pg_copy_logical_replication_slot('bench_peek', 'bench_rl')"])]),
    Case(f"target insert into a new table, {rows:,} records", "rows", rows,
         Side("target-postgres", target_cmd, setup="DROP SCHEMA IF EXISTS tgt CASCADE",
              input_file=records),
         [Side("psql \\copy FROM CSV", ["psql", "-q", "-c", f"\\copy ref_orders FROM '{csv}' WITH (FORMAT csv)"],
               setup="TRUNCATE ref_orders", input_file=csv)]),
    Case(f"target upsert, every key exists, {rows:,} records", "rows", rows,
         Side("target-postgres", target_cmd, input_file=records),
         [Side("temp \\copy + INSERT ... ON CONFLICT DO UPDATE",
               ["psql", "-q", "-v", "ON_ERROR_STOP=1",
                "-c", "CREATE TEMP TABLE s (LIKE ref_orders)",
                "-c", f"\\copy s FROM '{csv}' WITH (FORMAT csv)",
                "-c", f"INSERT INTO ref_orders SELECT * FROM s ON CONFLICT (id) DO UPDATE SET {set_list}"],
               input_file=csv)]),
]

# Case by case (each round runs a case next to its reference): the target's
# loads write WAL that every later logical decoding would have to read
# through, so LOG_BASED runs before them.
for case in cases:
    print(f"bench: {case.title} ...", file=sys.stderr)
    for n in range(rounds):
        case.round(n)

n = subprocess.run(["psql", "-Atq", "-c", "SELECT count(*) FROM tgt.orders"], check=True,
                   capture_output=True, text=True).stdout.strip()
if n != str(rows):
    sys.exit(f"bench: expected {rows} rows in tgt.orders after the upsert, found {n}")

# Memory of the target is set by its batch settings, not by the input.
def small(n, path):
    with open(path, "w") as f:
        f.write('{"type":"SCHEMA","stream":"public-small","schema":{"properties":{"id":{"type":"integer"},'
                '"v":{"type":"string"},"n":{"type":"number"}}},"key_properties":["id"]}\n')
        for i in range(n):
            f.write(f'{{"type":"RECORD","stream":"public-small","record":{{"id":{i},"v":"value {i}","n":{i}.5}}}}\n')
            if i % 50000 == 0:
                f.write(f'{{"type":"STATE","value":{{"i":{i}}}}}\n')


print("bench: target memory, 200k and 2M small records ...", file=sys.stderr)
peaks = {}
for n in (200_000, 2_000_000):
    path = f"{work}/small-{n}.jsonl"
    small(n, path)
    psql("DROP SCHEMA IF EXISTS tgt CASCADE")
    peaks[n] = measure([target, "--config", f"{work}/target.json", "--input", path, "--log-level", "warn"])["max_rss_kib"]
    os.remove(path)

print(f"\nmake bench, started {env['BENCH_STARTED']}: {rounds} interleaved rounds, medians; "
      "ratio = our seconds / the reference's (median of per-round ratios)")
for case in cases:
    case.report()
print(f"\ntarget memory: peak RSS loading 200k small records {peaks[200_000] / 1024:.1f} MiB, "
      f"2M records {peaks[2_000_000] / 1024:.1f} MiB (ratio {peaks[2_000_000] / peaks[200_000]:.2f})")
