#!/usr/bin/env bash
# make bench: throughput of tap and target against psql \copy on the same data.
# The measured cases arrive with the issues that build them:
#   #3 FULL_TABLE read of a 1M-row mixed-type table vs psql \copy ... to /dev/null
#   #4 LOG_BASED drain of 300k changes vs pg_logical_slot_peek_changes
#   #5 target load of 1M records (append, upsert) vs psql \copy ... from
set -euo pipefail
echo "make bench: no case is measured yet: the tap and target data paths (issues #3, #4, #5) are not built."
