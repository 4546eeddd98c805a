#!/usr/bin/env bash
# The trainer end to end on the CPU (--device cpu: the reference in float, model/cpu_model.h), so that CI, which
# has no GPU, runs the driver itself: training with validation, checkpoints and a decoded sample; exact resume;
# the same bits for any thread count; a start from a checkpoint; auto mode's one line where no GPU is visible, and
# --device gpu's message there, a short tiny-preset run (B=4, T=32) each; --eval 1 of a small model trained on
# parity; scripts/state_tracking.sh end to end at a tiny size (its runs, labels and files); and --state-noise
# (random initial M2RNN states in training: validation untouched, runs repeatable, resume exact, 0 the default's
# bits). `make test` runs it.
#
#   bash scripts/check_cpu_trainer.sh [path/to/train_m2rnn]      (from the repository root)
#
# Prints one line per check ("[ok  ]" or "[FAIL]", with the figure it compared), then "cpu trainer: N passed,
# N failed"; exits non-zero if any check failed.
source "$(dirname "$0")/check_common.sh"
FLAGS=(--device cpu -e tiny -t 32 -b 4 -m 2 -l 3e-3 -u 2)
field() { awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' "$1"; }  # every value after k

# 1. train 8 steps: validation every 4, checkpoints every 4, a 16-token sample at the end
"$TRAIN" "${FLAGS[@]}" -x 8 -v 4 -n 4 -g 16 -o "$W/run" > "$W/run.out" 2>&1; rc=$?
grep "^step [0-9]*/8 train_loss" "$W/run/train.log" > "$W/steps" 2>/dev/null
first=$(field "$W/steps" train_loss | head -1) last=$(field "$W/steps" train_loss | tail -1)
check "train 8 steps: exit $rc, $(wc -l < "$W/steps") step lines in train.log" [ "$rc" = 0 -a "$(wc -l < "$W/steps")" = 8 ]
check "training loss falls: step 1 ${first:-none}, step 8 ${last:-none} (must drop by > 0.2)" \
    python3 -c "import sys; sys.exit(not float('${first:-0}') - float('${last:-0}') > 0.2)"
check "validation at steps 0, 4, 8: $(grep -c 'val_loss' "$W/run/train.log") val_loss lines" \
    [ "$(grep -c '^step [048] val_loss' "$W/run/train.log")" = 3 ]
check "checkpoints of steps 4 and 8: $(cd "$W/run" && ls model_*.bin state_*.bin 2>/dev/null | tr '\n' ' ')" \
    [ -f "$W/run/model_4.bin" -a -f "$W/run/state_4.bin" -a -f "$W/run/model_8.bin" -a -f "$W/run/state_8.bin" ]
sample=$(awk '/sample \(16 tokens/ { getline; print; exit }' "$W/run/train.log")
check "a sample decoded at the end: '${sample:0:60}'" [ -n "$sample" ]
check "the banner names the CPU: '$(grep -m1 '^# device' "$W/run/train.log")'" grep -q "^# device CPU" "$W/run/train.log"

# 2. exact resume: run 1's step-4 checkpoint resumed in a fresh directory to step 8, as run 1 went on
mkdir "$W/resumed" && cp "$W/run/model_4.bin" "$W/run/state_4.bin" "$W/resumed/"
"$TRAIN" "${FLAGS[@]}" -x 8 -v 4 -n 4 -g 16 -o "$W/resumed" -y 1 > /dev/null 2>&1; rc=$?
# after N DIR: DIR's lines after step N: each step line's step, loss and norm (not its timing), the val losses, the
# sample's text
after() { awk -v n="$1" '$1 == "step" { split($2, s, "/"); keep = s[1] > n && $3 != "checkpoint"; if (keep) print $1,
          $2, $3, $4, $5, $6; next } keep' "$2/train.log"; }
same_files() { cmp -s "$1" "$2" && cmp -s "$3" "$4"; }
step_losses() { grep "train_loss" "$1/train.log" 2>/dev/null | awk '{ print $2, $4, $6 }'; }  # step, loss, grad norm
check "resume from step 4: exit $rc, $(after 4 "$W/run" | wc -l) lines after step 4 (losses, norms, sample) identical" \
    [ "$rc" = 0 -a -n "$(after 4 "$W/run")" -a "$(after 4 "$W/run")" = "$(after 4 "$W/resumed" 2>/dev/null)" ]
check "resume from step 4: model_8.bin and state_8.bin identical to run 1's, byte for byte" \
    same_files "$W/run/model_8.bin" "$W/resumed/model_8.bin" "$W/run/state_8.bin" "$W/resumed/state_8.bin"

# 3. the same losses, bit for bit, with 1 and 3 threads
for n in 1 3; do
    "$TRAIN" "${FLAGS[@]}" -x 3 -v 0 -g 0 --threads "$n" -o "$W/threads$n" > /dev/null 2>&1
    step_losses "$W/threads$n" > "$W/losses$n"
done
check "1 thread and 3 threads: $(wc -l < "$W/losses1") step lines (loss, grad norm) identical" \
    cmp -s "$W/losses1" "$W/losses3"
check "1 thread and 3 threads: model_3.bin identical, byte for byte" \
    cmp -s "$W/threads1/model_3.bin" "$W/threads3/model_3.bin"
check "the banner says 3 threads: '$(grep -m1 '^# device' "$W/threads3/train.log")'" \
    grep -q "^# device CPU, 3 threads" "$W/threads3/train.log"

# 4. a start from a CPU checkpoint (-e model file), as a GPU run's checkpoint would be
"$TRAIN" --device cpu -e "$W/run/model_8.bin" -t 32 -b 4 -x 2 -v 0 -g 0 -o "$W/from_ckpt" > /dev/null 2>&1; rc=$?
loss=$(field "$W/from_ckpt/train.log" train_loss | head -1)
check "start from model_8.bin: exit $rc, first loss ${loss:-none} (below the fresh model's ${first:-none})" \
    python3 -c "import sys; sys.exit(not ($rc == 0 and float('${loss:-99}') < float('${first:-0}')))"

# 5. no GPU visible: auto mode trains on the CPU and says so in one line; --device gpu says what still works
line=$(CUDA_VISIBLE_DEVICES="" "$TRAIN" -x 1 -v 0 -g 0 -o "$W/auto" 2>&1 | head -1)
check "auto mode, no GPU visible: '$line'" grep -q "^no NVIDIA GPU or driver found: training on the CPU (tiny preset, [0-9]* threads)$" <<<"$line"
out=$(CUDA_VISIBLE_DEVICES="" "$TRAIN" --device gpu -x 1 -v 0 -g 0 -o "$W/gpu" 2>&1); rc=$?
check "--device gpu, no GPU visible: exit $rc, '${out:0:90}...'" \
    [ "$rc" != 0 -a -n "$(grep 'no NVIDIA GPU or driver found (--device gpu).*training and --eval 1 on the CPU' <<<"$out")" ]

# 6. --eval 1 on the CPU: a small all-M model trained 300 steps on parity at L = 8 gets the states right at L = 8
# and 16; its first step's checkpoint does not, and its error line counts what the accuracy line implies; another
# split of the same sequences into batches scores the same
TASKS=./make_tasks
[ -x "$TASKS" ] || TASKS=$(dirname "$TRAIN")/make_tasks
for spec in "8 4000 1 train" "8 64 2 L8" "16 64 3 L16"; do
    read -r len n seed name <<<"$spec"
    "$TASKS" --task parity --length "$len" --sequences "$n" --seed "$seed" -o "$W/parity_$name.bin" > /dev/null
done
MODEL=(--vocab 5 --pattern MM --dim 32 --ffn 64 --heads 2 --m2rnn-heads 4 --key 8 --value 8 --q-heads 1 --k-heads 1)
for steps in 1 300; do
    "$TRAIN" --device cpu -i "$W/parity_train.bin" -j "$W/parity_L8.bin" -t 17 -b 32 -x "$steps" -l 3e-3 -u 20 -v 0 \
        -g 0 -n "$steps" -o "$W/parity$steps" "${MODEL[@]}" > /dev/null 2>&1; rc=$?
done
evaluate() {  # evaluate STEPS L B M: the two eval lines of that run's checkpoint on the L test shard, M batches of B
    "$TRAIN" --device cpu -e "$W/parity$1/model_$1.bin" --eval 1 -j "$W/parity_L$2.bin" -t $((2 * $2 + 1)) -b "$3" \
        -m "$4" 2>&1 | grep -E "^eval(_errors)? "
}
at8=$(evaluate 300 8 16 4) at16=$(evaluate 300 16 16 4) split16=$(evaluate 300 16 8 8) untrained=$(evaluate 1 16 16 4)
value() { awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$1"; }  # the value after k
accuracy() { value "$1" state_accuracy; }
check "train parity on the CPU: exit $rc; --eval 1 at L = 8: '$(head -1 <<<"$at8")'" \
    python3 -c "import sys; sys.exit(not ($rc == 0 and float('$(accuracy "$at8")' or 0) >= 99))"
check "--eval 1 at L = 16 (twice the training length): '$(head -1 <<<"$at16")'" \
    python3 -c "import sys; sys.exit(not float('$(accuracy "$at16")' or 0) >= 99)"
check "--eval 1 of the step-1 checkpoint at L = 16 scores far lower: '$(head -1 <<<"$untrained")'" \
    python3 -c "import sys; sys.exit(not float('$(accuracy "$untrained")' or 100) < 60)"
check "--eval 1 at L = 16 in 8 batches of 8 instead of 4 of 16: the same lines" [ -n "$at16" -a "$at16" = "$split16" ]
check "the trained model's error line: '$(grep eval_errors <<<"$at16")'" \
    [ "$(value "$at16" wrong_states)" = 0 -a "$(value "$at16" failing_sequences)" = 0 ]
wrong=$(value "$untrained" wrong_states) failing=$(value "$untrained" failing_sequences)
check "the step-1 checkpoint's error line: $wrong wrong states of 64 × 16 at $(accuracy "$untrained")%, $failing failing \
sequences at $(value "$untrained" sequence_accuracy)% whole" python3 -c "import sys; sys.exit(not (
    int('${wrong:-x}') == round(1024 * (100 - float('$(accuracy "$untrained")')) / 100) and
    int('${failing:-x}') == round(64 * (100 - float('$(value "$untrained" sequence_accuracy)')) / 100)))"

# 7. scripts/state_tracking.sh end to end at a tiny size: 2 models × 2 seeds, 2 steps each, 2 test lengths; an
# unknown model and an empty seed list are refused before anything runs
ST=(env TRAIN="$TRAIN" TASKS=parity STEPS=2 SEQUENCES=128 TEST_LENS="4 8" SEEDS="1 2" MODELS="all-M hybrid-rope"
    SHAPE="--dim 32 --ffn 64 --heads 2 --m2rnn-heads 2 --key 8 --value 8 --q-heads 1 --k-heads 1")
"${ST[@]}" DIR="$W/st" bash scripts/state_tracking.sh > "$W/st.out" 2>&1; rc=$?
labels=$(tail -n +2 "$W/st/results.tsv" 2>/dev/null | cut -f 2,3 | tr '\t\n' '@ ')
check "state_tracking.sh: exit $rc, results.tsv rows (model@length) '$labels'" \
    [ "$rc" = 0 -a "$labels" = "all-M/seed1@4 all-M/seed1@8 all-M/seed2@4 all-M/seed2@8 hybrid-rope/seed1@4 \
hybrid-rope/seed1@8 hybrid-rope/seed2@4 hybrid-rope/seed2@8 " ]
check "state_tracking.sh: $(grep -c ' eval_errors ' "$W/st/errors.txt" 2>/dev/null) eval_errors lines, \
$(grep -c '^| parity |' "$W/st/results.md" 2>/dev/null) table rows, accuracy.png, a run directory per seed" \
    [ "$(grep -c ' eval_errors ' "$W/st/errors.txt")" = 8 -a "$(grep -c '^| parity |' "$W/st/results.md")" = 4 \
      -a -s "$W/st/accuracy.png" -a -f "$W/st/runs/parity-hybrid-rope-seed2/model_2.bin" ]
out=$("${ST[@]}" MODELS="all-M hybrd" DIR="$W/st_bad" bash scripts/state_tracking.sh 2>&1); rc=$?
check "state_tracking.sh MODELS='all-M hybrd': exit $rc, '${out:0:70}...', nothing trained" \
    [ "$rc" != 0 -a -n "$(grep "unknown model 'hybrd'" <<<"$out")" -a ! -e "$W/st_bad/runs" ]
out=$("${ST[@]}" SEEDS=" " DIR="$W/st_none" bash scripts/state_tracking.sh 2>&1); rc=$?
check "state_tracking.sh SEEDS=' ': exit $rc, '$out'" \
    [ "$rc" != 0 -a -n "$(grep "SEEDS must each name at least one" <<<"$out")" -a ! -e "$W/st_none" ]

# 8. --state-noise 0.5: training starts every M2RNN scan from random states, validation from zero. Run 1's flags at
# 4 steps (step 1's loss and the step-0 validation come before any update, so they compare with run 1's), twice, and
# resumed from its step 2; --state-noise 0 against section 3's run without the flag
NOISE=("${FLAGS[@]}" -x 4 -v 2 -n 2 -g 0 --state-noise 0.5)
"$TRAIN" "${NOISE[@]}" -o "$W/noise" > /dev/null 2>&1; rc=$?
"$TRAIN" "${NOISE[@]}" -o "$W/noise_again" > /dev/null 2>&1
mkdir "$W/noise_resumed" && cp "$W/noise/model_2.bin" "$W/noise/state_2.bin" "$W/noise_resumed/" 2>/dev/null
"$TRAIN" "${NOISE[@]}" -y 1 -o "$W/noise_resumed" > /dev/null 2>&1; rc_resume=$?
first_noise=$(field "$W/noise/train.log" train_loss | head -1)
val0=$(grep -m1 '^step 0 val_loss' "$W/run/train.log") val0_noise=$(grep -m1 '^step 0 val_loss' "$W/noise/train.log")
check "--state-noise 0.5: exit $rc, step 1 train_loss ${first_noise:-none} differs from run 1's ${first:-none}" \
    [ "$rc" = 0 -a -n "$first_noise" -a "$first_noise" != "$first" ]
check "--state-noise 0.5: validation from the zero state, '$val0_noise' as run 1's '$val0'; the banner says \
'$(grep -m1 '^# state noise' "$W/noise/train.log" | cut -c1-50)...'" \
    [ -n "$val0" -a "$val0" = "$val0_noise" -a -n "$(grep '^# state noise: .*\[-0.5, 0.5\]' "$W/noise/train.log")" ]
same_run() {  # same_run A B AFTER: the lines after step AFTER (-1: all) of run A and its step-4 checkpoint are B's
    [ -n "$(after "$3" "$1")" ] && [ "$(after "$3" "$1")" = "$(after "$3" "$2" 2>/dev/null)" ] &&
        same_files "$1/model_4.bin" "$2/model_4.bin" "$1/state_4.bin" "$2/state_4.bin"
}
check "--state-noise 0.5 twice: $(after -1 "$W/noise" | wc -l) loss lines and model_4.bin, state_4.bin identical" \
    same_run "$W/noise" "$W/noise_again" -1
check "--state-noise 0.5 resumed from step 2: exit $rc_resume, $(after 2 "$W/noise" | wc -l) lines after step 2 and \
model_4.bin, state_4.bin identical" same_run "$W/noise" "$W/noise_resumed" 2
"$TRAIN" "${FLAGS[@]}" -x 3 -v 0 -g 0 --threads 1 --state-noise 0 -o "$W/noise0" > /dev/null 2>&1; rc=$?
step_losses "$W/noise0" > "$W/losses_noise0"
check "--state-noise 0: exit $rc, $(wc -l < "$W/losses_noise0") step lines and model_3.bin identical to the run \
without the flag" same_files "$W/losses1" "$W/losses_noise0" "$W/threads1/model_3.bin" "$W/noise0/model_3.bin"

# scripts/ncu_step.py (the GPU's busy fraction from ncu) on a made-up ncu CSV of two steps: init, then per step a
# kernel of 2 ms, one of 3 ms and two AdamW launches of 1 ms; the second step is 4 launches, 7 ms
{
    echo '"ID","Kernel Name","Metric Name","Metric Unit","Metric Value","x"'
    id=0
    for k in init:500000 a:2000000 b:3000000 adamw_kernel:1000000 adamw_kernel:1000000 a:2000000 b:3000000 \
             adamw_kernel:1000000 adamw_kernel:1000000; do
        echo "\"$id\",\"${k%%:*}\",\"gpu__time_duration.sum\",\"ns\",\"${k##*:}\",\"\""; id=$((id + 1))
    done
} > "$W/ncu.csv"
ncu_out=$(python3 scripts/ncu_step.py "$W/ncu.csv" 2>&1 | sed -n 1p)
check "ncu_step.py on a made-up two-step ncu CSV: '$ncu_out'" \
    [ "$ncu_out" = "second step: 4 launches, kernel time 7.00 ms" ]

# scripts/gpu_trace.py (busy and idle time per step from a gpu_trace timeline) on a made-up trace of three steps of
# 3 ms, each: a 0.1 ms memset, a 1 ms kernel, the loss wait, a 1 ms kernel, a 0.1 ms AdamW launch, the update wait;
# the GPU idles 0.8 ms a step, 0.25 of it while the host waits in cudaStreamSynchronize
for s in 0 3000 6000; do
    printf 'gpu\t%d\t%d\t7\t%s\n' $((s + 100))000 $((s + 200))000 "memset 64 bytes" \
        $((s + 300))000 $((s + 1300))000 "void matmul_kernel<1>(float*)" \
        $((s + 1500))000 $((s + 2500))000 "void attention_forward<64>(float*)" \
        $((s + 2600))000 $((s + 2700))000 "void adamw_kernel<float>(float*)"
    printf 'host\t%d\t%d\t-1\tcudaStreamSynchronize_v3020\n' $((s + 1250))000 $((s + 1400))000 \
        $((s + 2000))000 $((s + 2750))000
done > "$W/trace.tsv"
trace_out=$(python3 scripts/gpu_trace.py "$W/trace.tsv" 2>&1 | sed -n 2p | tr -s ' ')
check "gpu_trace.py on a made-up three-step trace: '$trace_out'" \
    [ "$trace_out" = "2 3.00 2.20 73.3% 2.10 0.80 host code 0.55, cudaStreamSynchronize 0.25" ]

echo "cpu trainer: $passed passed, $failed failed"
[ "$failed" = 0 ]
