#!/usr/bin/env bash
# Every GPU check in one go, for a machine with a GPU: builds both precisions, runs `make test` in
# each, then compute-sanitizer memcheck and racecheck over the GPU checks. Logs go to $LOG_DIR
# (default ./log/check_gpu); a summary table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${LOG_DIR:-log/check_gpu}
mkdir -p "$LOG_DIR"
JOBS=$(nproc)
SANITIZER=${SANITIZER:-compute-sanitizer}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOG_DIR/device.txt"

summary=()
run() {  # run NAME COMMAND...: log to $LOG_DIR/NAME.log, remember its last line and exit status
    local name=$1; shift
    local t0=$SECONDS
    "$@" > "$LOG_DIR/$name.log" 2>&1
    local rc=$?
    summary+=("$(printf '%-22s rc=%-3d %4ds  %s' "$name" "$rc" $((SECONDS - t0)) "$(tail -n 1 "$LOG_DIR/$name.log")")")
}
run build_bf16 make -j"$JOBS" test_m2rnn
run build_fp32 make -j"$JOBS" test_m2rnn PRECISION=FP32
run test_bf16 make test
run test_fp32 make test PRECISION=FP32
run memcheck_bf16 "$SANITIZER" --tool memcheck --error-exitcode 1 ./test_m2rnn --gpu-only
run racecheck_bf16 "$SANITIZER" --tool racecheck --error-exitcode 1 ./test_m2rnn --gpu-only
run memcheck_fp32 "$SANITIZER" --tool memcheck --error-exitcode 1 ./test_m2rnn_fp32 --gpu-only
run racecheck_fp32 "$SANITIZER" --tool racecheck --error-exitcode 1 ./test_m2rnn_fp32 --gpu-only
printf '%s\n' "${summary[@]}"
