#!/usr/bin/env bash
# One process per local GPU for data-parallel training (model/distributed.h), on this host:
#
#   scripts/launch.sh <ngpus> ./train_m2rnn [flags ...]        env: LAUNCH_GRACE (seconds, default 60)
#
# Process i runs `<program> [flags ...] --nccl-id <file>` with RANK=i, WORLD_SIZE=<ngpus>, LOCAL_RANK=i and
# CUDA_VISIBLE_DEVICES set to the i-th GPU (of the CUDA_VISIBLE_DEVICES list when one is set, else GPU i); the id
# file lies in a fresh temporary directory, removed at the end. SIGINT, SIGTERM and SIGHUP are passed on to every
# process as SIGTERM (background processes of a script ignore SIGINT). When a process exits non-zero, the others
# get LAUNCH_GRACE seconds to exit by themselves (train_m2rnn does within its --nccl-timeout), then are killed.
# Exits 0 when every process succeeded, else with the status of the first that failed. Several hosts: mpirun or
# srun start the processes instead (README, "Several GPUs").
set -uo pipefail

usage() {
    echo "usage: scripts/launch.sh <ngpus> <program> [flags ...]   env: LAUNCH_GRACE (seconds, default 60)" >&2
    exit 2
}
refuse() { echo "launch.sh: $*" >&2; exit 2; }

[ $# -ge 2 ] || usage
N=$1
PROGRAM=$2
shift 2
[[ $N =~ ^[1-9][0-9]*$ ]] || refuse "<ngpus> must be a positive integer, not '$N'"
command -v -- "$PROGRAM" >/dev/null 2>&1 || refuse "$PROGRAM is not a program that can be run"
for flag in "$@"; do
    case $flag in
        --world | --rank | --local-rank) refuse "$flag is launch.sh's to set (RANK, WORLD_SIZE, LOCAL_RANK); drop it" ;;
    esac
done
GRACE=${LAUNCH_GRACE:-60}
[[ $GRACE =~ ^[0-9]+$ ]] || refuse "LAUNCH_GRACE must be a whole number of seconds, not '$GRACE'"

# the GPU of each process
if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    IFS=, read -ra GPUS <<<"$CUDA_VISIBLE_DEVICES"
    [ ${#GPUS[@]} -ge "$N" ] ||
        refuse "$N processes, but CUDA_VISIBLE_DEVICES='$CUDA_VISIBLE_DEVICES' lists ${#GPUS[@]} GPUs"
else
    GPUS=()
    for ((i = 0; i < N; i++)); do GPUS+=("$i"); done
    if command -v nvidia-smi >/dev/null 2>&1; then
        seen=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
        [ "$seen" -ge "$N" ] || refuse "$N processes, but nvidia-smi lists $seen GPUs"
    fi
fi

ID_DIR=$(mktemp -d)
trap 'rm -rf "$ID_DIR"' EXIT
pids=()
pass_on() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done; }
trap pass_on INT TERM HUP

for ((i = 0; i < N; i++)); do
    RANK=$i WORLD_SIZE=$N LOCAL_RANK=$i CUDA_VISIBLE_DEVICES=${GPUS[i]} \
        "$PROGRAM" "$@" --nccl-id "$ID_DIR/nccl_id" &
    pids+=($!)
done

# Poll the processes: reap those that ended, note the first failure, and after the grace period kill the rest.
status=0 failed_at=0 running=("${!pids[@]}")
while [ ${#running[@]} -gt 0 ]; do
    still=()
    for rank in "${running[@]}"; do
        if kill -0 "${pids[rank]}" 2>/dev/null; then
            still+=("$rank")
            continue
        fi
        wait "${pids[rank]}"
        rc=$?
        if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
            status=$rc
            failed_at=$SECONDS
            echo "launch.sh: rank $rank exited with status $rc" >&2
        fi
    done
    running=("${still[@]}")
    if [ "$status" -ne 0 ] && [ ${#running[@]} -gt 0 ] && [ $((SECONDS - failed_at)) -ge "$GRACE" ]; then
        echo "launch.sh: killing rank(s) ${running[*]}, still running ${GRACE} s after the failure" >&2
        for rank in "${running[@]}"; do kill -KILL "${pids[rank]}" 2>/dev/null; done
        for rank in "${running[@]}"; do wait "${pids[rank]}" 2>/dev/null; done
        break
    fi
    [ ${#running[@]} -gt 0 ] && sleep 0.2
done
exit "$status"
