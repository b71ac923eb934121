#!/usr/bin/env python3
"""Runs a command, counts the bytes it writes to stdout, and prints one JSON
line: wall seconds, client CPU seconds (user + system of the command),
server CPU seconds, peak RSS (KiB) of the command, stdout bytes, exit code.
Used by scripts/bench.py; the stdout reader stands in for a fast consumer.

    measure.py [--server-pid PID] [--stdin FILE] -- CMD...

The peak RSS is the last VmHWM read from /proc/<pid>/status (the program's
own high-water mark, which only grows), sampled by a thread every 10 ms.
getrusage's ru_maxrss is not used: after a vfork-style spawn the kernel folds
the parent's (this Python's) memory into it. Client CPU is the command's
own rusage from wait4 (CPU times are per process and not affected).

Server CPU, with --server-pid (the postmaster): the CPU of every process of
the server from just before the command to just after it, that is the
postmaster's own and reaped children's times (utime, stime, cutime, cstime
in /proc/PID/stat) plus the times of its live children. A backend that ends
during the run is counted once the postmaster reaps it, so after the
command exits this waits (at most 5 s) until no backend started during the
run is still alive."""
import json
import os
import subprocess
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name is in parentheses and may hold spaces.
    return data[data.rindex(")") + 2 :].split()


def children(ppid):
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            f = stat_fields(int(name))
        except OSError:
            continue
        if int(f[1]) == ppid:  # field 4 (ppid) is index 1 after the name
            out[int(name)] = int(f[11]) + int(f[12])  # utime + stime
    return out


def server_ticks(pid):
    # A child reaped between the two reads would be in neither: read the
    # postmaster's times before and after the children and retry until they
    # agree.
    while True:
        f = stat_fields(pid)
        own = sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        kids = children(pid)
        again = sum(int(x) for x in stat_fields(pid)[11:15])
        if again == own:
            return own + sum(kids.values()), set(kids)


def main():
    args = sys.argv[1:]
    server_pid = None
    stdin_path = None
    while args and args[0] != "--":
        if args[0] == "--server-pid":
            server_pid = int(args[1])
            args = args[2:]
        elif args[0] == "--stdin":
            stdin_path = args[1]
            args = args[2:]
        else:
            break
    if args and args[0] == "--":
        args = args[1:]
    cmd = args

    before = server_ticks(server_pid) if server_pid else None
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=stdin)
    peak = 0
    done = False

    def sample():
        nonlocal peak
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
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    done = True
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    result = {
        "seconds": round(seconds, 3),
        "client_cpu": round(usage.ru_utime + usage.ru_stime, 3),
        "max_rss_kib": peak,
        "bytes": total,
        "exit": code,
    }
    if before is not None:
        ticks0, live0 = before
        deadline = time.monotonic() + 5
        while True:
            ticks1, live1 = server_ticks(server_pid)
            if not (live1 - live0) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        result["server_cpu"] = round((ticks1 - ticks0) / TICK, 3)
    print(json.dumps(result))


main()
