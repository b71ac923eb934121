#!/usr/bin/env bash
# One tap-postgres | target-postgres run for cron, resumable from the last
# committed state.
#
#   */15 * * * *  SYNC_DIR=/srv/sync /srv/sync/sync.sh >> /srv/sync/sync.log 2>&1
#
# SYNC_DIR holds tap.json, target.json, catalog.json and, after the first
# run, state.json. Each state line the target prints (it prints one only
# after the data before it is committed) replaces state.json atomically: it
# is written to a temporary file in the same directory, then renamed, so
# state.json is always one whole state even if this script is killed. A run
# in which the target printed no state leaves state.json as it was.
#
# Exit status: 0 when both programs succeeded; otherwise the failing side's
# status (the target's first: a dying target makes the tap fail too), with a
# line on stderr saying which. States the target printed before a failure
# are kept: they are committed.
#
# Environment (all optional):
#   SYNC_DIR        directory of the files above (default: this script's directory)
#   TAP_CONFIG      default $SYNC_DIR/tap.json
#   TARGET_CONFIG   default $SYNC_DIR/target.json
#   CATALOG         default $SYNC_DIR/catalog.json
#   STATE_FILE      default $SYNC_DIR/state.json
#   TAP_POSTGRES    the tap command (default: tap-postgres on PATH)
#   TARGET_POSTGRES the target command (default: target-postgres on PATH)
set -euo pipefail

SYNC_DIR=${SYNC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
TAP_CONFIG=${TAP_CONFIG:-$SYNC_DIR/tap.json}
TARGET_CONFIG=${TARGET_CONFIG:-$SYNC_DIR/target.json}
CATALOG=${CATALOG:-$SYNC_DIR/catalog.json}
STATE_FILE=${STATE_FILE:-$SYNC_DIR/state.json}
TAP_POSTGRES=${TAP_POSTGRES:-tap-postgres}
TARGET_POSTGRES=${TARGET_POSTGRES:-target-postgres}

log() { printf '%s sync.sh: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# One run at a time: a run still going when cron starts the next one wins.
if command -v flock >/dev/null; then
  exec 9>"$STATE_FILE.lock"
  if ! flock -n 9; then
    log "another run holds $STATE_FILE.lock; not starting"
    exit 75
  fi
fi

tap_args=(--config "$TAP_CONFIG" --catalog "$CATALOG")
if [[ -s $STATE_FILE ]]; then
  tap_args+=(--state "$STATE_FILE")
  log "starting from $STATE_FILE"
else
  log "no state yet: starting from the beginning"
fi

# Replaces the state file with each line read, atomically (same directory,
# then rename). Empty lines are not states.
keep_states() {
  local line tmp
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    tmp=$(mktemp "$STATE_FILE.XXXXXX")
    printf '%s\n' "$line" >"$tmp"
    mv -f "$tmp" "$STATE_FILE"
  done
}

set +e
"$TAP_POSTGRES" "${tap_args[@]}" | "$TARGET_POSTGRES" --config "$TARGET_CONFIG" | keep_states
status=("${PIPESTATUS[@]}")
set -e

# A target that dies makes the tap fail too (broken pipe), so the target's
# failure is named first.
if [[ ${status[1]} -ne 0 ]]; then
  log "target-postgres failed (exit ${status[1]}; tap-postgres exit ${status[0]}); $STATE_FILE keeps the last committed state"
  exit "${status[1]}"
fi
if [[ ${status[0]} -ne 0 ]]; then
  log "tap-postgres failed (exit ${status[0]}); $STATE_FILE keeps the last committed state"
  exit "${status[0]}"
fi
if [[ ${status[2]} -ne 0 ]]; then
  log "could not write $STATE_FILE (exit ${status[2]})"
  exit "${status[2]}"
fi
log "done"
