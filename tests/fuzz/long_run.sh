#!/bin/sh
# Run the fuzz suite's `long` profile over and over until MINUTES have passed.
#
#   tests/fuzz/long_run.sh [MINUTES [LOGDIR]]        (defaults: 35, /tmp/svtree-fuzz-long)
#
# LOGDIR gets stats.jsonl (one line per example), failures.log (every failing example
# with its report), run-N.log (pytest's output), db-N (run N's example database: each
# run starts afresh instead of replaying the last failure) and summary (one line per run).
# Stop it with SIGTERM to the driver, then to its pytest (each example cleans up).
# PYTHONPATH, if set, goes first (e.g. a snapshot of a revision: git archive REV svtree).
set -u
cd "$(dirname "$0")/../.."
minutes=${1:-35}
logdir=${2:-/tmp/svtree-fuzz-long}
python=${PYTHON:-python3}
mkdir -p "$logdir"
deadline=$(( $(date +%s) + minutes * 60 ))
i=0
while [ "$(date +%s)" -lt "$deadline" ]; do
    i=$((i + 1))
    SVTREE_FUZZ_PROFILE=long SVTREE_FUZZ_DEADLINE=$deadline \
    SVTREE_FUZZ_STATS="$logdir/stats.jsonl" SVTREE_FUZZ_FAILURES="$logdir/failures.log" \
    SVTREE_FUZZ_DB="$logdir/db-$i" \
        "$python" -m pytest -q -p no:cacheprovider tests/fuzz -k random_trees >"$logdir/run-$i.log" 2>&1
    rc=$?
    now=$(wc -l <"$logdir/stats.jsonl" 2>/dev/null || echo 0)
    echo "run $i: pytest exit $rc, $(date -u +%FT%TZ), $now examples so far" >>"$logdir/summary"
    if [ "$now" = "${before:-0}" ] && [ "$(date +%s)" -lt "$deadline" ]; then
        echo "run $i ran no example: stopping (see $logdir/run-$i.log)" >>"$logdir/summary"
        exit 1
    fi
    before=$now
done
