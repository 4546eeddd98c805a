#!/usr/bin/env bash
# The trainer's faults on the CPU, one row each: SIGTERM mid-run (a checkpoint of the step in flight, exit 0, then an
# exact resume); a second signal (exits at once); SIGKILL at random points of short runs that checkpoint every step
# (the newest checkpoint always resumes); a file-size limit hit mid-checkpoint (a message naming the file, the
# previous checkpoint intact, no .tmp left); -nk 2; an injected loss spike skipped (--skip-z) and too many in a row;
# a non-finite loss. A tiny model (D=64, B=4, T=32) so that the whole table takes well under a minute.
#
#   bash scripts/check_faults.sh [path/to/train_m2rnn] [cpu|gpu-nccl]      (from the repository root)
#
# cpu (the default, what `make test` runs) trains on the CPU; gpu-nccl runs the same table on the GPU as one
# process through NCCL (--world 1 --nccl-id), so the skip decisions and the signal stop go through the reduced
# values and the agreed stop that several ranks use.
#
# Prints one line per check ("[ok  ]" or "[FAIL]", with the figure it compared), then "faults: N passed, N failed";
# exits non-zero if any check failed.
source "$(dirname "$0")/check_common.sh"
# X: the signalled runs' length; KILL_AT: the SIGKILLs' delays in tenths of a second (the GPU's steps are ~100× the
# CPU's, its start-up ~10×: the signals must still land mid-run and the kills after the first checkpoints)
case ${2:-cpu} in
    cpu) ON=(--device cpu) X=10 KILL_AT="2 + RANDOM % 9" ;;
    gpu-nccl) ON=(--device gpu --world 1 --nccl-id "$W/nccl_id") X=1000 KILL_AT="10 + RANDOM % 31" ;;
    *) echo "check_faults: the second argument is cpu or gpu-nccl, not '$2'" >&2; exit 2 ;;
esac
RUN=("${ON[@]}" -t 32 -b 4 -v 0 -g 0 -u 2)                                      # every run's; -y 1 takes no more
FLAGS=("${RUN[@]}" --pattern MA --dim 64 --ffn 128 --heads 2 --m2rnn-heads 4 --key 8 --value 4)  # a fresh run's
wait_for() {  # wait_for FILE PATTERN: until a line of FILE matches (at most 60 s)
    for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
losses() { awk '$1 == "step" && $3 == "train_loss" { split($2, s, "/"); if (s[1] > '"${2:-0}"') print $2, $4, $6 }' "$1"; }

# (a) SIGTERM after step 3 of X: the step in flight is checkpointed, exit 0; -y 1 then matches an unbroken run
"$TRAIN" "${FLAGS[@]}" -x $X -o "$W/whole" > /dev/null 2>&1
"$TRAIN" "${FLAGS[@]}" -x $X -o "$W/term" > "$W/term.out" 2>&1 & pid=$!
wait_for "$W/term/train.log" "^step 3/$X "; kill -TERM $pid; wait $pid; rc=$?
stopped=$(grep -o "^step [0-9]* stopped by SIGTERM.*" "$W/term.out")
at=$(awk '{ print $2 }' <<<"$stopped")
check "SIGTERM after step 3: exit $rc, '${stopped:0:110}'" \
    [ "$rc" = 0 -a -n "$at" -a -f "$W/term/model_$at.bin" -a -f "$W/term/state_$at.bin" ]
check "the stop line says how to resume: '... ${stopped: -40}'" grep -q -- "-y 1 -o $W/term$" <<<"$stopped"
"$TRAIN" "${RUN[@]}" -x $X -o "$W/term" -y 1 > /dev/null 2>&1; rc=$?
check "resume after SIGTERM: exit $rc, steps $((at + 1))..$X's $(losses "$W/whole/train.log" "$at" | wc -l) losses and norms equal an unbroken run's" \
    [ "$rc" = 0 -a -n "$(losses "$W/whole/train.log" "$at")" -a "$(losses "$W/whole/train.log" "$at")" = "$(losses "$W/term/train.log" "$at")" ]
check "resume after SIGTERM: model_$X.bin identical to the unbroken run's, byte for byte" \
    cmp -s "$W/whole/model_$X.bin" "$W/term/model_$X.bin"

# (g) a second signal exits at once, with no checkpoint of the step in flight
"$TRAIN" "${FLAGS[@]}" -x $((5 * X)) -o "$W/twice" > "$W/twice.out" 2>&1 & pid=$!
wait_for "$W/twice/train.log" "^step 2/$((5 * X)) "; kill -INT $pid; sleep 0.01; kill -INT $pid; wait $pid; rc=$?
check "two SIGINTs: exit $rc (130), '$(grep -o 'a second signal: .*' "$W/twice.out")', no checkpoint" \
    [ "$rc" = 130 -a -z "$(ls "$W/twice" | grep '^model_')" ]

# (b) SIGKILL at random points of 20 runs checkpointing every step (-n 1): each next run resumes the newest
# checkpoint (-y 1) and must not fail; .tmp debris a kill left is removed and reported
K=$W/kill
"$TRAIN" "${FLAGS[@]}" -x 1000 -n 1 -o "$K" > "$K.out" 2>&1 & pid=$!
wait_for "$K/train.log" "^step 1 checkpoint"; kill -KILL $pid; wait $pid 2>/dev/null
bad=0 debris=0 steps=""
for i in $(seq 20); do
    "$TRAIN" "${RUN[@]}" -x 1000 -n 1 -o "$K" -y 1 > "$K.out" 2>&1 & pid=$!
    d=$((KILL_AT)); sleep "$((d / 10)).$((d % 10))"; kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null; rc=$?
    if [ "$rc" != 137 ] || grep -q "^train_m2rnn: " "$K.out"; then bad=$((bad + 1)); head -3 "$K.out" | sed 's/^/    /'; fi
    grep -q "unfinished checkpoint file" "$K.out" && debris=$((debris + 1))
    steps="$steps $(ls "$K" | sed -n 's/^model_\([0-9]*\)\.bin$/\1/p' | sort -n | tail -1)"
done
latest=$(ls "$K" | sed -n 's/^state_\([0-9]*\)\.bin$/\1/p' | sort -n | tail -1)
"$TRAIN" "${RUN[@]}" -x $((latest + 1)) -n 1 -o "$K" -y 1 > "$K.out" 2>&1; rc=$?
check "SIGKILL 20 times at random: $bad runs failed to resume, $debris removed a killed write's .tmp, newest model after each:$steps" \
    [ "$bad" = 0 ]
check "after the kills: step $latest's checkpoint resumes to step $((latest + 1)), exit $rc, no .tmp left" \
    [ "$rc" = 0 -a -z "$(ls "$K" | grep '\.tmp$')" ]

# (c) a file-size limit (ulimit -f: write fails with EFBIG) hit by step 4's checkpoint: the previous one intact
"$TRAIN" "${FLAGS[@]}" -x 2 -o "$W/full" > /dev/null 2>&1
cp "$W/full/model_2.bin" "$W/model_2.copy"
out=$( (ulimit -f 2000; "$TRAIN" "${RUN[@]}" -x 4 -o "$W/full" -y 1 2>&1) ); rc=$?
msg=$(grep "^train_m2rnn: " <<<"$out")
check "file-size limit at step 4's checkpoint: exit $rc, '${msg:0:150}...'" \
    [ "$rc" != 0 -a -n "$(grep 'model_4.bin.tmp: write failed.*File too large.*last good checkpoint is .*model_2.bin' <<<"$msg")" ]
same=$(cmp -s "$W/model_2.copy" "$W/full/model_2.bin" && echo unchanged)
check "after the failed write: model_2.bin ${same:-changed}, no model_4.bin, no .tmp: $(ls "$W/full" | tr '\n' ' ')" \
    [ -z "$(ls "$W/full" | grep -e '\.tmp$' -e '^model_4')" -a "$same" = unchanged ]

# (d) -nk 2: the newest two of five checkpoints; -nk -1 refused
"$TRAIN" "${FLAGS[@]}" -x 5 -n 1 -nk 2 -o "$W/keep" > /dev/null 2>&1; rc=$?
kept=$(cd "$W/keep" && ls model_* state_* 2>/dev/null | tr '\n' ' ')
check "-nk 2 over 5 checkpoints: exit $rc, kept: $kept" [ "$rc" = 0 -a "$kept" = "model_4.bin model_5.bin state_4.bin state_5.bin " ]
msg=$("$TRAIN" "${FLAGS[@]}" -x 5 -nk -1 -o "$W/keep_neg" 2>&1); rc=$?
check "-nk -1: exit $rc, '$msg'" [ "$rc" != 0 -a -n "$(grep -- '-nk = -1 is out of range' <<<"$msg")" ]

# (e) an injected spike at step 12 is skipped and logged; with --skip-max 1 the run stops there
"$TRAIN" "${FLAGS[@]}" -x 14 --skip-z 4 --skip-window 8 --inject-spike 12 -o "$W/spike" > "$W/spike.out" 2>&1; rc=$?
skips=$(grep "skipped:" "$W/spike/train.log")
check "spike injected at step 12: exit $rc, $(grep -c skipped: <<<"$skips") skip line(s): '${skips:0:110}...'" \
    [ "$rc" = 0 -a "$(grep -c "^step 12 skipped: .*z [0-9.]* above the last 8 updated steps" <<<"$skips")" = 1 \
      -a "$(grep -c skipped: <<<"$skips")" = 1 ]
msg=$("$TRAIN" "${FLAGS[@]}" -x 14 -n 5 --skip-z 4 --skip-window 8 --skip-max 1 --inject-spike 12 -o "$W/spike_max" 2>&1 |
      grep "^train_m2rnn: "); rc=${PIPESTATUS[0]}
check "--skip-max 1: exit $rc, '$msg'" \
    [ "$rc" != 0 -a -n "$(grep 'step 12: 1 steps in a row skipped.*last good checkpoint is .*model_10.bin' <<<"$msg")" ]

# (f) a non-finite loss stops the run, naming the step and the last good checkpoint
msg=$("$TRAIN" "${FLAGS[@]}" -x 8 -n 3 --inject-nan 5 -o "$W/nan" 2>&1 | grep "^train_m2rnn: "); rc=${PIPESTATUS[0]}
check "NaN loss at step 5: exit $rc, '$msg'" \
    [ "$rc" != 0 -a -n "$(grep 'step 5: the loss (nan).*not finite.*last good checkpoint is .*model_3.bin' <<<"$msg")" ]

echo "faults: $passed passed, $failed failed"
[ "$failed" = 0 ]
