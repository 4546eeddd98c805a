#!/usr/bin/env bash
# The CPU trainer against the GPU trainer on the same run: the default CPU run (the tiny preset on the bundled
# tinyshakespeare, the CPU's defaults spelled out so that both devices get the same flags and seed), once with
# --device cpu and once with --device gpu, then both curves in one PNG (scripts/plot_loss.py). Needs a GPU; with
# CPU_LOG=<a CPU run's train.log> the CPU run is not repeated (docs/runs/tinyshakespeare_tiny_cpu.log is one, of the
# default flags). Flags after the out dir go to both runs (e.g. --state-noise 0.5).
#   usage: scripts/compare_cpu_gpu.sh [out dir, default runs/cpu_gpu] [train flags ...]
#   env: TRAIN (default ./train_m2rnn)
# Writes <out>/cpu/train.log, <out>/gpu/train.log and <out>/tiny_cpu_gpu.png, and prints the val-loss table.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${TRAIN:-./train_m2rnn}
OUT=${1:-runs/cpu_gpu}
FLAGS=(-e tiny -t 64 -b 8 -x 200 -u 20 -v 50 -m 10 --seed 1337 "${@:2}")
mkdir -p "$OUT"
if [ -n "${CPU_LOG:-}" ]; then
    mkdir -p "$OUT/cpu" && cp "$CPU_LOG" "$OUT/cpu/train.log"
else
    "$TRAIN" --device cpu "${FLAGS[@]}" -o "$OUT/cpu"
fi
"$TRAIN" --device gpu "${FLAGS[@]}" -o "$OUT/gpu"
python3 scripts/plot_loss.py -o "$OUT/tiny_cpu_gpu.png" "$OUT/cpu/train.log:cpu" "$OUT/gpu/train.log:gpu"
