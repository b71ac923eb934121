#!/usr/bin/env bash
# setup.sh — install what the tests and the demo need: the PostgreSQL server
# binaries (Debian package `postgresql`) and the wal2json output plugin
# (`postgresql-<major>-wal2json`). Idempotent; prints one line when all is
# present. As root it installs with apt-get; otherwise it prints the sudo
# command and exits 1. Safe under CI=true with no stdin.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=pg-env.sh
. "$here/pg-env.sh"

die() { echo "setup: $*" >&2; exit 1; }

# apt_install PKG...: install, refreshing the package lists once if needed.
apt_install() {
    echo "setup: installing $*" >&2
    if ! apt-get install -y -q --no-install-recommends "$@" </dev/null; then
        echo "setup: install failed; running apt-get update and retrying" >&2
        apt-get update -q </dev/null
        apt-get install -y -q --no-install-recommends "$@" </dev/null
    fi
}

# The major version `postgresql` would bring, from apt's metadata (may be empty).
candidate_major() {
    apt-cache depends postgresql 2>/dev/null |
        sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1
}

# What is missing now: prints package names, one per line.
missing() {
    local bindir major
    if ! bindir=$(pg_bindir); then
        echo postgresql
        major=$(candidate_major)
        [[ -n "$major" ]] && echo "postgresql-$major-wal2json"
        return 0
    fi
    major=$(pg_major "$bindir") || die "cannot run $bindir/postgres --version"
    pg_wal2json "$bindir" >/dev/null || echo "postgresql-$major-wal2json"
}

mapfile -t pkgs < <(missing)
if ((${#pkgs[@]} > 0)); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing ${pkgs[*]}; run:" >&2
        echo "  sudo apt-get install -y ${pkgs[*]}" >&2
        if [[ " ${pkgs[*]} " == *" postgresql "* && ${#pkgs[@]} -eq 1 ]]; then
            echo "  (then run make setup again for postgresql-<major>-wal2json)" >&2
        fi
        exit 1
    fi
    command -v apt-get >/dev/null || die "missing ${pkgs[*]} and no apt-get; install them by hand"
    apt_install "${pkgs[@]}"
    # The server's major is known only after installing it: a second round
    # installs postgresql-<major>-wal2json if the first could not name it.
    first="${pkgs[*]}"
    mapfile -t pkgs < <(missing)
    if ((${#pkgs[@]} > 0)) && [[ "${pkgs[*]}" != "$first" ]]; then apt_install "${pkgs[@]}"; fi
fi

bindir=$(pg_bindir) ||
    die "initdb not found (looked at \$PGTEST_BINDIR, pg_config --bindir, /usr/lib/postgresql/*/bin)"
major=$(pg_major "$bindir") || die "cannot run $bindir/postgres --version"
pg_wal2json "$bindir" >/dev/null ||
    die "wal2json.so not found for PostgreSQL $major (looked in $bindir/pg_config --pkglibdir and $(dirname "$bindir")/lib); install postgresql-$major-wal2json"
echo "setup: postgresql $major and wal2json present"
