#!/usr/bin/env bash
# State tracking that generalises to unseen lengths (the M²RNN paper's central claim), end to end with the
# ordinary trainer: for each task (parity, the S3 and S5 word problems; data/tasks.h), make_tasks writes token
# shards of sequences [BOS g1 s1 … gL sL] with s_i = g1∘…∘g_i; small models of similar size are trained on L = 64
# (all positions of every sequence, so every prefix length up to 64 is seen), by default on fresh sequences (each
# seen once: 64 × STEPS of them), and each final checkpoint is evaluated at L = 64, 128, 256, 512 and 1024
# (`train_m2rnn --eval 1`: argmax accuracy of every s_i, and of whole sequences). Every (task, model, seed) run
# shares the GPU at once. Writes $DIR/results.tsv, $DIR/results.md, $DIR/accuracy.png and $DIR/errors.txt (each
# evaluation's eval_errors line: where the wrong states are). docs/state_tracking.md has the results.
#   models: all-M (MM, N=8 K=16 V=16; all-M-1 and all-M-3 have one and three layers), all-A (AA, RoPE, 4 heads),
#           hybrid (MA, NoPE), hybrid-rope (MA, RoPE), hybrid-AM (AM, NoPE: attention first); D=128, F=256
# Checkpoints every 1000 steps; a run stopped early (TRAIN_TIMEOUT seconds, 0 = none) is evaluated at its last.
#   usage: scripts/state_tracking.sh   env: DIR (default log/state_tracking), STEPS (10000), TASKS, LR (1e-3),
#            MODELS ("all-M all-A hybrid hybrid-rope"), SEEDS (1337: the trainer's --seed; with several, each run's
#            model is labelled model/seedS), SEQUENCES (training sequences; 64 × STEPS), TRAIN_FLAGS (more trainer
#            flags, e.g. "-q 0.01"), SHAPE (the layers' shape flags; the default below), TEST_LENS ("64 128 256 512
#            1024"), TRAIN_TIMEOUT (0), MIN_LENGTH (64: the training sequences' shortest; below 64, lengths mix,
#            make_tasks --min-length), PACK (0; 1: training rows of sequences back to back, make_tasks --pack)
#   the best S5 recipes: TASKS=s5 MODELS=all-M SEEDS="1 2 3" TRAIN_FLAGS="--state-noise 0.3" scripts/state_tracking.sh
#   (every seed perfect at 16x), and TASKS=s5 MODELS=hybrid-rope SEEDS="1 2 3" scripts/state_tracking.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-log/state_tracking}
STEPS=${STEPS:-10000}
LR=${LR:-1e-3}
TASKS=${TASKS:-parity s3 s5}
TRAIN=${TRAIN:-./train_m2rnn}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-0}
TRAIN_LEN=64
MIN_LENGTH=${MIN_LENGTH:-$TRAIN_LEN}
PACK=${PACK:-0}
TEST_LENS=${TEST_LENS:-64 128 256 512 1024}
MODELS=${MODELS:-all-M all-A hybrid hybrid-rope}
SEEDS=${SEEDS:-1337}
TRAIN_FLAGS=${TRAIN_FLAGS:-}
declare -A MODEL_FLAGS=(
    [all-M]="--pattern MM"
    [all-M-1]="--pattern M"
    [all-M-3]="--pattern MMM"
    [all-A]="--pattern AA --rope 1"
    [hybrid]="--pattern MA"
    [hybrid-rope]="--pattern MA --rope 1"
    [hybrid-AM]="--pattern AM"
)
[ -n "${MODELS// /}" ] && [ -n "${SEEDS// /}" ] ||
    { echo "state_tracking: MODELS and SEEDS must each name at least one" >&2; exit 1; }
for model in $MODELS; do
    [ -n "${MODEL_FLAGS[$model]:-}" ] ||
        { echo "state_tracking: unknown model '$model' in MODELS (known: ${!MODEL_FLAGS[*]})" >&2; exit 1; }
done
# label_of MODEL SEED: the run's label in the results, model/seedS when several seeds are run;
# name_of TASK MODEL SEED: its directory under $DIR/runs and its log $DIR/NAME.out
label_of() { if [ "$(wc -w <<<"$SEEDS")" -gt 1 ]; then echo "$1/seed$2"; else echo "$1"; fi; }
name_of() { echo "$1-$(label_of "$2" "$3" | tr / -)"; }
SHAPE=${SHAPE:---dim 128 --ffn 256 --heads 4 --m2rnn-heads 8 --key 16 --value 16 --q-heads 1 --k-heads 1}
SEQUENCES=${SEQUENCES:-$((64 * STEPS))}
mkdir -p "$DIR/data" "$DIR/runs"

# ---- data: train and val at L = 64, test shards at every length
for task in $TASKS; do
    ./make_tasks --task "$task" --length $TRAIN_LEN --min-length "$MIN_LENGTH" --pack "$PACK" --sequences "$SEQUENCES" \
        --seed 1 -o "$DIR/data/${task}_train.bin"
    ./make_tasks --task "$task" --length $TRAIN_LEN --sequences 1024 --seed 2 -o "$DIR/data/${task}_val.bin"
    for L in $TEST_LENS; do
        ./make_tasks --task "$task" --length "$L" --sequences 256 --seed 3 -o "$DIR/data/${task}_test_L$L.bin"
    done
done
vocab_of() { case $1 in parity) echo 5 ;; s3) echo 13 ;; s5) echo 241 ;; esac; }

# ---- training: every (task, model, seed) at once
pids=()
for task in $TASKS; do
    for model in $MODELS; do
        for seed in $SEEDS; do
            name=$(name_of "$task" "$model" "$seed")
            run=$DIR/runs/$name
            rm -rf "$run"
            # shellcheck disable=SC2086
            timeout "$TRAIN_TIMEOUT" "$TRAIN" -i "$DIR/data/${task}_train.bin" -j "$DIR/data/${task}_val.bin" \
                -t $((2 * TRAIN_LEN + 1)) -b 64 -x "$STEPS" -l "$LR" -u 200 -v 500 -m 4 -g 0 -n 1000 -o "$run" \
                --vocab "$(vocab_of "$task")" --seed "$seed" \
                $SHAPE ${MODEL_FLAGS[$model]} $TRAIN_FLAGS > "$DIR/$name.out" 2>&1 &
            pids+=($!)
        done
    done
done
for pid in "${pids[@]}"; do wait "$pid" || echo "state_tracking: a run stopped early (exit $?); see $DIR/*.out" >&2; done

# ---- evaluation of every final checkpoint at every length
printf 'task\tmodel\tlength\tstate_accuracy\tsequence_accuracy\n' > "$DIR/results.tsv"
: > "$DIR/errors.txt"
echo "| task | model | parameters | steps | last val loss | accuracy % by length (state / whole sequence) |" \
    > "$DIR/results.md"
echo "|---|---|---|---|---|---|" >> "$DIR/results.md"
for task in $TASKS; do
    for model in $MODELS; do
        for seed in $SEEDS; do
            label=$(label_of "$model" "$seed") name=$(name_of "$task" "$model" "$seed")
            run=$DIR/runs/$name
            step=$(ls "$run" | sed -n 's/^model_\([0-9]*\)\.bin$/\1/p' | sort -n | tail -n 1)
            [ -n "$step" ] || { echo "state_tracking: $run has no checkpoint; see $DIR/$name.out" >&2; continue; }
            cells=""
            for L in $TEST_LENS; do
                out=$("$TRAIN" -e "$run/model_$step.bin" --eval 1 -j "$DIR/data/${task}_test_L$L.bin" \
                      -t $((2 * L + 1)) -b 16 -m 16)
                line=$(grep "^eval " <<<"$out")
                printf '%s %s L=%s %s\n' "$task" "$label" "$L" "$(grep "^eval_errors " <<<"$out")" >> "$DIR/errors.txt"
                state=$(awk '{for (i = 1; i < NF; i++) if ($i == "state_accuracy") print $(i + 1)}' <<<"$line")
                whole=$(awk '{for (i = 1; i < NF; i++) if ($i == "sequence_accuracy") print $(i + 1)}' <<<"$line")
                printf '%s\t%s\t%s\t%s\t%s\n' "$task" "$label" "$L" "$state" "$whole" >> "$DIR/results.tsv"
                echo "$task $label $line"
                cells="$cells L=$L: $state / $whole;"
            done
            params=$(grep -m1 "^# parameters" "$run/train.log" | awk '{print $3}' | tr -d ,)
            val=$(grep "val_loss" "$run/train.log" | tail -n 1 | awk '{print $4}')
            echo "| $task | $label | $params | $step | $val | ${cells%;} |" >> "$DIR/results.md"
        done
    done
done
python3 scripts/plot_accuracy.py -o "$DIR/accuracy.png" "$DIR/results.tsv" --train-length $TRAIN_LEN \
    --title "state tracking: trained at L=$TRAIN_LEN, $STEPS steps" > /dev/null
cat "$DIR/results.md"
