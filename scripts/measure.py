#!/usr/bin/env python3
"""Runs a command, counts the bytes it writes to stdout, and prints one JSON
line: wall seconds, peak RSS (KiB) of the command, stdout bytes, exit code.
Used by scripts/bench.sh; the stdout reader stands in for a fast consumer.

The peak RSS is the last VmHWM read from /proc/<pid>/status (the program's
own high-water mark, which only grows), sampled by a thread every 10 ms.
getrusage's ru_maxrss is not used: after a vfork-style spawn the kernel folds
the parent's (this Python's) memory into it."""
import json
import subprocess
import sys
import threading
import time

cmd = sys.argv[1:]
start = time.monotonic()
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
peak = 0
done = False


def sample():
    global peak
    path = f"/proc/{proc.pid}/status"
    while not done:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.01)


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
total = 0
while True:
    chunk = proc.stdout.read(1 << 20)
    if not chunk:
        break
    total += len(chunk)
code = proc.wait()
done = True
sampler.join()
seconds = time.monotonic() - start
print(json.dumps({"seconds": round(seconds, 3), "max_rss_kib": peak, "bytes": total, "exit": code}))
