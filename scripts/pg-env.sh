# shellcheck shell=bash
# pg-env.sh — sourced by setup.sh and cluster.sh: where the PostgreSQL server
# binaries and wal2json live. Defines functions only; changes nothing.
#
# The lookup order matches crates/pg-testkit (src/install.rs):
#   1. $PGTEST_BINDIR, if set;
#   2. `pg_config --bindir`, if that directory holds initdb;
#   3. the highest /usr/lib/postgresql/<major>/bin holding initdb.

# pg_bindir: print the server bin directory, or nothing (status 1).
pg_bindir() {
    if [[ -n "${PGTEST_BINDIR:-}" ]]; then
        [[ -x "$PGTEST_BINDIR/initdb" ]] && { echo "$PGTEST_BINDIR"; return 0; }
        return 1
    fi
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return 0; fi
    fi
    local best="" bestv=0 v
    for d in /usr/lib/postgresql/*/bin; do
        v=${d#/usr/lib/postgresql/}
        v=${v%/bin}
        [[ "$v" =~ ^[0-9]+$ && -x "$d/initdb" ]] || continue
        if ((v > bestv)); then best=$d bestv=$v; fi
    done
    [[ -n "$best" ]] && { echo "$best"; return 0; }
    return 1
}

# pg_major BINDIR: print the major version of the server in BINDIR (e.g. 15).
pg_major() {
    local out
    out=$("$1/postgres" --version 2>/dev/null) || return 1
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> 15
    out=${out#*) }
    echo "${out%%.*}" | tr -dc '0-9'
}

# pg_wal2json BINDIR: print the path of wal2json.so for the server in BINDIR,
# or nothing (status 1).
pg_wal2json() {
    local bindir=$1 lib
    local -a candidates=()
    if [[ -x "$bindir/pg_config" ]]; then
        lib=$("$bindir/pg_config" --pkglibdir 2>/dev/null || true)
        [[ -n "$lib" ]] && candidates+=("$lib/wal2json.so")
    fi
    candidates+=("$(dirname "$bindir")/lib/wal2json.so")
    for lib in "${candidates[@]}"; do
        [[ -f "$lib" ]] && { echo "$lib"; return 0; }
    done
    return 1
}
