#!/usr/bin/env python3
"""Runs a command, counts the bytes it writes to stdout, and prints one JSON
line: wall seconds, peak RSS (KiB) of the command, stdout bytes, exit code.
Used by scripts/bench.sh; the stdout reader stands in for a fast consumer."""
import json
import resource
import subprocess
import sys
import time

cmd = sys.argv[1:]
start = time.monotonic()
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
total = 0
while True:
    chunk = proc.stdout.read(1 << 20)
    if not chunk:
        break
    total += len(chunk)
code = proc.wait()
seconds = time.monotonic() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": round(seconds, 3), "max_rss_kib": rss, "bytes": total, "exit": code}))
