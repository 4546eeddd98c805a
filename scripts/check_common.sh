# Sourced by scripts/check_cpu_trainer.sh and scripts/check_faults.sh (from the repository root, with the trainer's
# path as their argument): the trainer under test ($TRAIN), a scratch directory ($W, removed at exit), and check(),
# which prints one row ("[ok  ]" or "[FAIL]", with the figure it compared) and counts it in $passed / $failed.
set -uo pipefail
unset RANK WORLD_SIZE LOCAL_RANK OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE OMPI_COMM_WORLD_LOCAL_RANK SLURM_PROCID \
      SLURM_NTASKS SLURM_LOCALID
CHECK_NAME=$(basename "$0" .sh)
TRAIN=${1:-./train_m2rnn}
[ -x "$TRAIN" ] || { echo "$CHECK_NAME: $TRAIN is not an executable (make train_m2rnn first)" >&2; exit 2; }
[ -f data/tinyshakespeare/tiny_shakespeare_train.bin ] || { echo "$CHECK_NAME: run from the repository root" >&2; exit 2; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
passed=0 failed=0
check() {  # check "what was compared, with its figure" CONDITION...
    local what=$1; shift
    if "$@"; then echo "  [ok  ] $what"; passed=$((passed + 1)); else echo "  [FAIL] $what"; failed=$((failed + 1)); fi
}
