#!/usr/bin/env bash
# cluster.sh — a throwaway PostgreSQL cluster for `make demo` and `make bench`.
#
#   scripts/cluster.sh start DIR   initdb into DIR/data, start on a free port of
#                                  127.0.0.1, print PGHOST/PGPORT/PGUSER lines
#                                  (for eval; not exported) and write them to DIR/env
#   scripts/cluster.sh stop DIR    stop it (fast mode) and remove DIR
#
# Settings match crates/pg-testkit: trust auth, superuser postgres, UTF8,
# locale C, wal_level=logical, 20 slots and senders, fsync/
# full_page_writes off (never use for data you want to keep). The unix socket
# and the server log (DIR/log) live in DIR. As root, DIR is chowned to postgres
# and initdb/pg_ctl run as postgres. Everything but the env lines goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=pg-env.sh
. "$here/pg-env.sh"

die() { echo "cluster: $*" >&2; exit 1; }
usage() { die "usage: $0 start|stop DIR"; }

(($# == 2)) || usage
cmd=$1
dir=$(realpath -m -- "$2")
[[ "$dir" != / ]] || die "refusing to use /"

bindir=$(pg_bindir) || die "PostgreSQL server binaries not found; run make setup"

# as_pg CMD...: run as the postgres OS user when we are root.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() { [[ -f "$dir/data/postmaster.pid" ]] && as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }

# A port nobody listens on now; the start loop retries if it is taken by then.
pick_port() {
    local p
    for _ in $(seq 50); do
        p=$(shuf -i 20000-60000 -n 1)
        if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
    done
    return 1
}

start() {
    if running && [[ -f "$dir/env" ]]; then
        echo "cluster: already running in $dir" >&2
        cat "$dir/env"
        return 0
    fi
    if [[ -e "$dir" ]] && [[ -n "$(ls -A "$dir")" ]]; then
        die "$dir exists and is not empty; run: $0 stop $dir"
    fi
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres:postgres "$dir"
        runuser -u postgres -- test -w "$dir" ||
            die "the postgres user cannot write $dir (is a parent directory private?)"
    fi
    chmod 700 "$dir"
    cd "$dir" # the server must be able to stat its working directory

    as_pg "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C -N \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }

    local sockdir=$dir
    if ((${#dir} > 90)); then # sun_path holds 107 bytes
        echo "cluster: $dir is too long for a unix socket; TCP only" >&2
        sockdir=""
    fi
    cat >>"$dir/data/postgresql.conf" <<CONF

# cluster.sh: throwaway settings (no durability)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
fsync = off
# on: logical decoding only sees flushed WAL, so with off the newest commits
# reach a slot late (break_at_end_lsn would stop before them). fsync is off,
# so it costs nothing.
synchronous_commit = on
full_page_writes = off
CONF

    local port tries=0
    while :; do
        port=$(pick_port) || die "no free port found"
        if as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -o "-p $port" -w -t 60 start >/dev/null; then
            break
        fi
        tries=$((tries + 1))
        if grep -q 'could not bind\|Address already in use' "$dir/log" 2>/dev/null && ((tries < 5)); then
            echo "cluster: port $port was taken; retrying" >&2
            continue
        fi
        tail -n 20 "$dir/log" >&2 || true
        die "the server did not start (log: $dir/log)"
    done

    printf 'PGHOST=127.0.0.1\nPGPORT=%s\nPGUSER=postgres\n' "$port" >"$dir/env"
    echo "cluster: started PostgreSQL $(pg_major "$bindir") in $dir on 127.0.0.1:$port" >&2
    cat "$dir/env"
}

stop() {
    [[ -e "$dir" ]] || return 0
    # Only remove what looks like ours.
    if [[ -n "$(ls -A "$dir")" && ! -f "$dir/data/PG_VERSION" && ! -f "$dir/initdb.log" ]]; then
        die "$dir does not look like a cluster made by $0; not removing it"
    fi
    if running; then
        as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null ||
            die "pg_ctl stop failed (log: $dir/log)"
    fi
    rm -rf -- "$dir"
}

case $cmd in
start) start ;;
stop) stop ;;
*) usage ;;
esac
