#!/usr/bin/env bash
# The default run, regenerated: `./train_m2rnn` with no flags (d12-hybrid on tinyshakespeare) and the same run
# with all-attention layers and RoPE, their logs into docs/runs/ and their curves into docs/runs/tinyshakespeare_d12.png,
# titled with the GPU; then the default with other -x, to show where the default's step count sits. Prints, per run,
# the best val loss (and its step), the final val loss and final / best, a table for the README, and each run's
# median step time. Fails when the default run ends more than 2% above its best val loss (the README's promise).
# About 2 minutes on an H200 once built (d12-hybrid ≈ 25 ms a step; 2,050 steps in all, plus start-up and
# validation), the build first when needed.
#
#   scripts/default_run.sh            (from anywhere; needs an NVIDIA GPU; builds train_m2rnn)
#   env: SWEEP (default "150 200 300 400 500"), the other step counts; SWEEP="" runs the two default runs only
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP-150 200 300 400 500}
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1) || true
[ -n "$GPU" ] || { echo "default_run: no NVIDIA GPU found (nvidia-smi); the default run is a GPU run" >&2; exit 1; }
make -s -j"$(nproc)" train_m2rnn
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# run NAME FLAGS...: trains into $W/NAME, its output in $W/NAME.out
run() {
    local name=$1; shift
    echo "== $name: ./train_m2rnn $*"
    ./train_m2rnn -o "$W/$name" "$@" > "$W/$name.out" 2>&1 || { tail -n 20 "$W/$name.out" >&2; exit 1; }
}
# summary LOG: "BEST STEP FINAL RATIO MS": the lowest val loss and its step, the last val loss, last / lowest, and
# the median ms of a training step after the tenth
summary() {
    python3 - "$1" <<'PY'
import statistics, sys
val, ms = [], []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 4 and f[0] == "step" and f[2] == "val_loss":
        val.append((float(f[3]), int(f[1])))
    elif len(f) >= 10 and f[0] == "step" and f[2] == "train_loss" and int(f[1].split("/")[0]) > 10:
        ms.append(float(f[9]))
best, at = min(val)
print(f"{best:.4f} {at} {val[-1][0]:.4f} {val[-1][0] / best:.4f} {statistics.median(ms):.1f}")
PY
}

DEFAULT_STEPS=$(./train_m2rnn -h | awk '$1 == "-x" { print $NF }')
run d12-hybrid
run d12-attention-rope --pattern AAAAAAAAAAAA --rope 1
for x in $SWEEP; do [ "$x" = "$DEFAULT_STEPS" ] || run "x$x" -x "$x" -g 0; done

cp "$W/d12-hybrid/train.log" docs/runs/tinyshakespeare_d12-hybrid.log
cp "$W/d12-attention-rope/train.log" docs/runs/tinyshakespeare_d12-attention-rope.log
python3 scripts/plot_loss.py -o docs/runs/tinyshakespeare_d12.png --title "the default run (-x $DEFAULT_STEPS), $GPU" \
    docs/runs/tinyshakespeare_d12-hybrid.log:d12-hybrid docs/runs/tinyshakespeare_d12-attention-rope.log:d12-attention-rope \
    > "$W/table.txt"

echo
echo "GPU: $GPU; logs and docs/runs/tinyshakespeare_d12.png written"
echo "| run | -x | best val loss (step) | final val loss | final / best | ms a step |"
echo "|---|---|---|---|---|---|"
for name in d12-hybrid d12-attention-rope $(for x in $SWEEP; do [ "$x" = "$DEFAULT_STEPS" ] || echo "x$x"; done); do
    read -r best at last ratio ms <<< "$(summary "$W/$name/train.log")"
    steps=$DEFAULT_STEPS label=$name
    case $name in x*) steps=${name#x} label=d12-hybrid ;; esac
    echo "| $label | $steps | $best ($at) | $last | $ratio | $ms |"
done
read -r best at last ratio ms <<< "$(summary "$W/d12-hybrid/train.log")"
echo
echo "default run (d12-hybrid, -x $DEFAULT_STEPS) on $GPU: best val loss $best at step $at, final $last, final / best $ratio"
awk -v r="$ratio" 'BEGIN { exit !(r <= 1.02) }' || {
    echo "default_run: FAIL: the default run ends more than 2% above its best val loss; choose -x from the table" >&2
    exit 1
}
echo "default_run: PASS (final within 2% of the best)"
