#!/usr/bin/env bash
# `make bench` of two trees in one run, so that a change's before and after figures come from the same GPU and
# session: BASE (another checkout, e.g. `git worktree add ../base <commit>`) first, then this tree, each with its
# own binaries; prints both outputs, BASE's under "before", this tree's under "after". Builds what is missing.
#   usage: scripts/bench_compare.sh BASE     env: as make bench (STEPS, T), JOBS (default nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] && [ -f "$1/Makefile" ] || { echo "usage: $0 BASE (a checkout of the tree to compare with)" >&2; exit 2; }
BASE=$(cd "$1" && pwd)
JOBS=${JOBS:-$(nproc)}
make -C "$BASE" -j"$JOBS" train_m2rnn bench_m2rnn_scan >/dev/null
make -j"$JOBS" train_m2rnn bench_m2rnn_scan >/dev/null
echo "== before: $BASE"
make -C "$BASE" --no-print-directory bench
echo
echo "== after: $(pwd)"
make --no-print-directory bench
