#!/usr/bin/env bash
# Several GPUs end to end (model/distributed.h), for a machine with 2 GPUs; with 1 GPU it runs what one can.
#
# 2 GPUs:
#   losses  d12-hybrid, one GPU with 2x gradient accumulation against 2 GPUs (scripts/launch.sh) at the same global
#           batch and seed, without and with ZeRO-1, in fp32 and bf16: the largest relative difference of the train
#           and val losses, PASS at 1e-5 in fp32 and 2e-2 in bf16 (rounding differs, so bf16 drifts within noise);
#           then the 2-GPU ZeRO-1 fp32 run's mid-run checkpoint resumed on one GPU must continue with the same losses
#   speed   tokens/s of one GPU and of 2 (bf16, d12-hybrid, and paper-410M-hybrid at B=8 T=4096), PASS at a ratio
#           >= 1.9; the memory in use per GPU without and with ZeRO-1 and ZeRO-1's start-up line
#   kill    two ranks started by hand, rank 1 killed with SIGKILL after STEP 3: how long rank 0 takes to exit, its
#           exit status and its message, PASS within 60 s
# 1 GPU (the same code paths through NCCL with one rank):
#   losses  the plain run against world 1 through NCCL (launch.sh 1) without and with ZeRO-1, fp32 and bf16, the
#           resume of the ZeRO-1 checkpoint in a plain run
#   speed   tokens/s of the plain run and through NCCL
#   kill    rank 0 of a world of 2 whose rank 1 never starts, and rank 1 whose rank 0 never writes the id file: each
#           must exit non-zero with its message within --nccl-timeout 5 (plus start-up)
#
#   usage: scripts/check_multi_gpu.sh [losses] [speed] [kill]     (default: all three)
#   env: TRAIN (default ./train_m2rnn), TRAIN_FP32 (./train_m2rnn_fp32), NGPU (1 or 2; default nvidia-smi's count,
#        at most 2), STEPS (d12-hybrid steps, default 10), STEPS_410M (default 6)
set -uo pipefail
cd "$(dirname "$0")/.."
TRAIN=${TRAIN:-./train_m2rnn}
TRAIN_FP32=${TRAIN_FP32:-./train_m2rnn_fp32}
STEPS=${STEPS:-10}
STEPS_410M=${STEPS_410M:-6}
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
[ "$NGPU" -gt 2 ] && NGPU=2
[ "$NGPU" -ge 1 ] || { echo "check_multi_gpu: no GPU found (nvidia-smi -L)" >&2; exit 2; }
for bin in "$TRAIN" "$TRAIN_FP32"; do
    [ -x "$bin" ] || {
        echo "check_multi_gpu: $bin missing: make train_m2rnn && make train_m2rnn PRECISION=FP32" >&2
        exit 2
    }
done
PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(losses speed kill)
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}  # no NVLink multicast unless asked for
SHARD=data/tinyshakespeare/tiny_shakespeare_train.bin
W=$(mktemp -d)
STARTED=()  # processes started here by hand, killed at exit if still running
trap 'for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$W"' EXIT
RESULTS=()
failed=0
result() {  # result LINE: print it now and in the summary; a line with FAIL counts as a failure
    echo "$1"
    RESULTS+=("$1")
    case $1 in *FAIL*) failed=$((failed + 1)) ;; esac
}

# train NAME PROCS BINARY FLAGS...: PROCS 0 = one plain process (no NCCL), n = scripts/launch.sh n; log dir $W/NAME
train() {
    local name=$1 procs=$2 bin=$3
    shift 3
    echo "  run $name: $([ "$procs" = 0 ] && echo "1 process, no NCCL" || echo "launch.sh $procs") $bin $*"
    if [ "$procs" = 0 ]; then "$bin" -o "$W/$name" "$@" >"$W/$name.out" 2>&1
    else scripts/launch.sh "$procs" "$bin" -o "$W/$name" "$@" >"$W/$name.out" 2>&1; fi
    local rc=$?
    [ $rc -eq 0 ] || result "$name: FAIL (exit $rc): $(grep -v '^step\|^#' "$W/$name.out" | tail -n 2 | tr '\n' ' ')"
    return $rc
}

# compare A B TOLERANCE LABEL: every train/val loss of run B against the same step's in run A (B may start later)
compare() {
    result "$(python3 - "$W/$1/train.log" "$W/$2/train.log" "$3" "$4" <<'PY'
import re, sys
def losses(path):
    found = {}
    for line in open(path):
        m = re.match(r"step (\d+)(?:/\d+)? (train_loss|val_loss) (\S+)", line)
        if m: found[(m.group(2), int(m.group(1)))] = float(m.group(3))
    return found
a, b = losses(sys.argv[1]), losses(sys.argv[2])
tol, label = float(sys.argv[3]), sys.argv[4]
missing = [k for k in b if k not in a]
if not b or missing:
    print(f"{label}: FAIL ({len(b)} losses, {len(missing)} of them at steps the other run lacks)")
else:
    worst = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-30) for k in b)
    print(f"{label}: {len(b)} losses, max relative difference {worst:.2e} -> {'PASS' if worst <= tol else 'FAIL'} "
          f"(bound {tol:g})")
PY
)"
}

# speed NAME: the median tok/s and the largest mem_gib over a run's steps after the first two
speed() {
    python3 - "$W/$1/train.log" <<'PY'
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if re.match(r"step \d+/\d+ train_loss", l)][2:]
field = lambda r, name: float(r[r.index(name) + 1])
print("%.0f %.2f" % (statistics.median(field(r, "tok/s") for r in rows), max(field(r, "mem_gib") for r in rows)))
PY
}

# ratio LABEL ONE MANY: tokens/s of run MANY over run ONE, PASS at >= 1.9 with 2 GPUs
ratio() {
    local one one_mem many many_mem r
    read -r one one_mem <<<"$(speed "$2")"
    read -r many many_mem <<<"$(speed "$3")"
    r=$(awk -v a="$one" -v b="$many" 'BEGIN { printf "%.3f", b / a }')
    if [ "$NGPU" = 2 ]; then
        result "$1: $one tok/s on 1 GPU, $many on 2 ($one_mem / $many_mem GiB per GPU): ratio $r ->\
 $(at_most 1.9 "$r" PASS FAIL) (bound 1.9)"
    else
        result "$1: $one tok/s plain, $many through NCCL with one rank ($one_mem / $many_mem GiB): ratio $r"
    fi
}

D12=(-e d12-hybrid -b 8 -t 512 -d 8192 -x "$STEPS" -u 2 -v "$STEPS" -m 4 -g 16 -s 0)
HALF=$((STEPS / 2))
has() { local p; for p in "${PARTS[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
at_most() { awk -v a="$1" -v b="$2" -v yes="$3" -v no="$4" 'BEGIN { print (a <= b) ? yes : no }'; }  # A <= B ? YES : NO
seconds_since() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | sed 's/^/device: /'
echo "using $NGPU GPU(s); NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE"

if has losses; then
    echo "== losses: one GPU with 2x accumulation against $NGPU process(es), same global batch (-d 8192) and seed"
    for precision in fp32 bf16; do
        bin=$TRAIN; tol=2e-2
        [ $precision = fp32 ] && bin=$TRAIN_FP32 && tol=1e-5
        train "one_$precision" 0 "$bin" "${D12[@]}" || continue
        train "dp_$precision" "$NGPU" "$bin" "${D12[@]}" &&
            compare "one_$precision" "dp_$precision" "$tol" "d12-hybrid $precision, $NGPU GPU(s) through NCCL vs one"
        train "zero_$precision" "$NGPU" "$bin" "${D12[@]}" --zero 1 -n "$HALF" &&
            compare "one_$precision" "zero_$precision" "$tol" "d12-hybrid $precision, $NGPU GPU(s) ZeRO-1 vs one"
        grep -h "ZeRO-1:" "$W/zero_$precision/train.log" 2>/dev/null | sed "s/^# /  $precision: /"
    done
    if [ -f "$W/zero_fp32/state_$HALF.bin" ]; then
        mkdir -p "$W/resumed"
        cp "$W/zero_fp32/model_$HALF.bin" "$W/zero_fp32/state_$HALF.bin" "$W/resumed/"
        train resumed 0 "$TRAIN_FP32" "${D12[@]}" -y 1 &&
            compare zero_fp32 resumed 1e-5 "d12-hybrid fp32, step-$HALF checkpoint of $NGPU-GPU ZeRO-1 resumed on 1 GPU"
    fi
    rm -f "$W"/*/model_*.bin "$W"/*/state_*.bin
fi

if has speed; then
    echo "== speed (bf16)"
    [ -f "$W/one_bf16/train.log" ] || train one_bf16 0 "$TRAIN" "${D12[@]}"
    [ -f "$W/dp_bf16/train.log" ] || train dp_bf16 "$NGPU" "$TRAIN" "${D12[@]}"
    [ -f "$W/one_bf16/train.log" ] && [ -f "$W/dp_bf16/train.log" ] &&
        ratio "d12-hybrid B=8 T=512 -d 8192" one_bf16 dp_bf16
    P410=(-e paper-410M-hybrid -b 8 -t 4096 -d 65536 -x "$STEPS_410M" -u 0 -v 0 -g 0 -i "$SHARD" -j "$SHARD")
    if [ "$NGPU" = 2 ]; then
        train one_410m 0 "$TRAIN" "${P410[@]}" && train dp_410m 2 "$TRAIN" "${P410[@]}" &&
            ratio "paper-410M-hybrid B=8 T=4096 -d 65536" one_410m dp_410m
        train zero_410m 2 "$TRAIN" "${P410[@]}" --zero 1 && {
            read -r _ mem_dp <<<"$(speed dp_410m)"
            read -r _ mem_zero <<<"$(speed zero_410m)"
            zero_line=$(grep -h 'ZeRO-1:' "$W/zero_410m/train.log" | sed 's/^#//')
            result "paper-410M-hybrid memory per GPU: $mem_dp GiB all-reduce, $mem_zero GiB ZeRO-1;$zero_line"
        }
        rm -f "$W"/*/model_*.bin "$W"/*/state_*.bin
    fi
fi

if has kill; then
    if [ "$NGPU" = 2 ]; then
        echo "== kill: rank 1 killed with SIGKILL after step 3 of a 2-rank run"
        pids=()
        for r in 0 1; do
            RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r "$TRAIN" -e d12-hybrid -x 100000 -v 0 -g 0 --nccl-id "$W/kill_id" \
                -o "$W/kill" >"$W/kill$r.out" 2>&1 &
            pids+=($!)
            STARTED+=($!)
        done
        for ((i = 0; i < 600; i++)); do grep -q "^step 3/" "$W/kill0.out" && break; sleep 0.5; done
        kill -KILL "${pids[1]}"
        t0=$(date +%s.%N)
        for ((i = 0; i < 1200; i++)); do kill -0 "${pids[0]}" 2>/dev/null || break; sleep 0.1; done
        took=$(seconds_since "$t0")
        if kill -0 "${pids[0]}" 2>/dev/null; then
            result "kill: FAIL: rank 0 still running $took s after rank 1 was killed"
        else
            wait "${pids[0]}"
            rc=$?
            msg=$(grep -m1 "^rank 0:" "$W/kill0.out")
            verdict=$(at_most "$took" 60 PASS FAIL)
            { [ $rc -eq 0 ] || [ -z "$msg" ]; } && verdict=FAIL
            result "kill: rank 0 exited with status $rc $took s after rank 1's SIGKILL -> $verdict (bound 60 s): $msg"
        fi
    else
        echo "== stalls on one GPU: a world of 2 whose other rank never comes (--nccl-timeout 5)"
        for r in 0 1; do
            t0=$(date +%s.%N)
            RANK=$r WORLD_SIZE=2 "$TRAIN" -e d12-hybrid -x 10 -v 0 -g 0 --nccl-timeout 5 --nccl-id "$W/lonely_id_$r" \
                -o "$W/lonely$r" >"$W/lonely$r.out" 2>&1
            rc=$?
            took=$(seconds_since "$t0")
            msg=$(grep -m1 "rank $r:" "$W/lonely$r.out")
            verdict=PASS
            { [ $rc -eq 0 ] || [ -z "$msg" ]; } && verdict=FAIL
            result "rank $r alone: exit $rc after $took s (start-up included) -> $verdict: $msg"
        done
    fi
fi

echo
echo "== summary ($NGPU GPU(s))"
printf '%s\n' "${RESULTS[@]}"
echo "multi-GPU checks: $((${#RESULTS[@]} - failed)) passed, $failed failed"
[ "$failed" = 0 ]
