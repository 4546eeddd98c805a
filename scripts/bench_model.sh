#!/usr/bin/env bash
# Whole-model training throughput (`make bench`): the paper-410M presets at B=8, T=4096 on this GPU, a few
# optimizer steps each on the bundled tinyshakespeare tokens (ids < 50257, valid in the cl100k vocabulary).
# A preset that does not fit prints what the trainer says it needs, then runs at the largest batch that fits
# (B halved until it does). Prints, per preset: the median step time over the steps after the third (two warm
# up, the third is timed by kernel family with --profile 1), the tokens/s and MFU of that median (the trainer's
# FLOPs per token against the datasheet peak it names), and memory two ways: the three arenas the trainer
# allocates (parameters, gradients + AdamW, activations with the cuBLASLt workspace), and the GPU memory in use
# from cudaMemGetInfo (the arenas plus the CUDA context and cuBLASLt's own: the peak, since nothing is allocated
# after start-up), and, where build/libgpu_trace.so is built (make bench builds it), how busy the GPU is: the median
# over the steps of the time it runs anything against the step's wall time (scripts/gpu_trace.py, from a CUPTI
# timeline of the same run). Then each preset's profiled step: GPU time by kernel family.
#   usage: scripts/bench_model.sh [preset ...]      env: TRAIN (default ./train_m2rnn), STEPS (default 12), T (4096)
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${TRAIN:-./train_m2rnn}
STEPS=${STEPS:-12}
T=${T:-4096}
PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(paper-410M-hybrid paper-410M-attention)
[ "$STEPS" -ge 4 ] || { echo "STEPS must be at least 4 (two warm-up steps, one profiled, one timed)" >&2; exit 1; }
SHARD=data/tinyshakespeare/tiny_shakespeare_train.bin
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TRACER=$PWD/build/libgpu_trace.so
[ -f "$TRACER" ] || TRACER=""
# the tracer must load with its CUPTI (the toolkit's) before the trainer is run under it; else no busy column
if [ -n "$TRACER" ] && ! python3 -c "import ctypes, sys; ctypes.CDLL(sys.argv[1])" "$TRACER" 2>"$WORK/tracer.err"; then
    echo "GPU busy not measured: $TRACER does not load ($(tail -n 1 "$WORK/tracer.err"))"
    TRACER=""
fi
trace=()  # the trainer's command prefix: under the tracer, or none
[ -n "$TRACER" ] && trace=(env CUDA_INJECTION64_PATH="$TRACER" GPU_TRACE="$WORK/trace.tsv")

# median step ms, median tok/s, median mfu, arena GiB, max mem_gib over the steps after the third of a train.log
summarise() {
    python3 - "$1" <<'PY'
import re, statistics, sys
lines = open(sys.argv[1]).readlines()
rows = [l.split() for l in lines if re.match(r"step \d+/\d+ train_loss", l)]
rows = rows[3:]
field = lambda r, name: r[r.index(name) + 1]
ms = statistics.median(float(field(r, "ms")) for r in rows)
tok = statistics.median(float(field(r, "tok/s")) for r in rows)
mfu = field(rows[0], "mfu")
mfu = "%.1f%%" % statistics.median(float(field(r, "mfu").rstrip("%")) for r in rows) if mfu != "n/a" else mfu
arenas = next(l for l in lines if l.startswith("# parameters "))
arena_gib = sum(float(x) for x in re.findall(r"([\d.]+) GiB", arenas))
mem = max(float(field(r, "mem_gib")) for r in rows)
print("%9.1f %9.0f %6s %10.2f %11.2f" % (ms, tok, mfu, arena_gib, mem))
PY
}

RESULTS=()
PROFILES=()
for preset in "${PRESETS[@]}"; do
    B=8
    note=""
    while :; do
        out="$WORK/$preset-$B"
        if "${trace[@]}" "$TRAIN" -e "$preset" -b "$B" -t "$T" -x "$STEPS" -u 0 -v 0 -g 0 --profile 1 -i "$SHARD" -j "$SHARD" \
            -o "$out" >"$WORK/stdout" 2>"$WORK/stderr"; then
            break
        fi
        if grep -q "of GPU memory" "$WORK/stderr" && [ "$B" -gt 1 ]; then
            echo "$preset B=$B T=$T: $(sed 's/^train_m2rnn: //' "$WORK/stderr")"
            note="B=$B does not fit"
            B=$((B / 2))
            continue
        fi
        echo "$preset B=$B T=$T failed:" >&2
        cat "$WORK/stderr" >&2
        exit 1
    done
    grep -m1 "training FLOPs per token" "$out/train.log" | sed "s/^# /$preset: /"
    busy="n/a"
    if [ -n "$TRACER" ]; then
        busy=$(python3 scripts/gpu_trace.py "$WORK/trace.tsv" | sed -n 's/.*GPU busy //p') || busy="n/a"
    fi
    RESULTS+=("$(printf '%-22s %2d %5d %s %8s  %s' "$preset" "$B" "$T" "$(summarise "$out/train.log")" "$busy" "$note")")
    PROFILES+=("$preset B=$B T=$T, $(sed -n '/^step [0-9]* profile:/,/^  total/p' "$out/train.log")")
done
echo
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/device: /' || true
echo "memory: arenas = the trainer's three arenas; GPU mem = in use on the GPU (cudaMemGetInfo), the peak of the run"
echo "GPU busy: the median step's time with the GPU running anything (kernels, memsets, copies), of its wall time"
printf '%-22s %2s %5s %9s %9s %6s %10s %11s %8s  %s\n' preset B T "step ms" "tok/s" MFU "arenas GiB" "GPU mem GiB" \
    "GPU busy" note
printf '%s\n' "${RESULTS[@]}"
for profile in "${PROFILES[@]}"; do
    echo
    printf '%s\n' "$profile"
done
