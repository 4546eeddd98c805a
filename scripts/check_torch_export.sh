#!/usr/bin/env bash
# The export end to end on a GPU with PyTorch (issue 20's "done when"): in each build (fp32 and bf16) train the
# d12-hybrid for 300 steps on tinyshakespeare, export the checkpoint (m2rnn_export), and check
#   - checkpoint -> model.safetensors -> checkpoint is byte-identical, and scripts/m2rnn_files.py check accepts it
#   - train_m2rnn -e model.safetensors -x 0 gives the trained run's val_loss and greedy sample exactly
#   - scripts/m2rnn_torch.py gives the val_loss of the same 160 windows (-m 20 x -b 8 at -t 512, seed 1337)
#     within 1e-5 relative in the fp32 build (torch fp32 and fp64) and 2e-3 in the bf16 build (torch with bf16
#     GEMMs, on the fp32 and on the bf16 export)
#   - its greedy continuation of a prompt (the first 16 tokens of the validation shard) is the trainer's
#     (--temperature 0) for all 32 tokens
# then prints a table: check, figures, bound, PASS/FAIL; exits 1 when any check failed.
#
#   bash scripts/check_torch_export.sh [workdir]     (from the repository root; bash, python3 with torch, nvcc)
#
# workdir (default: a fresh mktemp -d, kept) receives each build's run, exports and outputs; TORCH_DEVICE chooses
# m2rnn_torch.py's device (default cuda).
set -euo pipefail
[ -f data/tinyshakespeare/tiny_shakespeare_val.bin ] || { echo "check_torch_export: run from the repository root" >&2; exit 2; }
python3 -c "import torch" 2>/dev/null || { echo "check_torch_export: python3 cannot import torch" >&2; exit 2; }
W=${1:-$(mktemp -d)}
mkdir -p "$W"
DEVICE=${TORCH_DEVICE:-cuda}
VAL=data/tinyshakespeare/tiny_shakespeare_val.bin
JOBS=$(nproc)

echo "== build (bf16 and fp32), workdir $W"
make -j"$JOBS" train_m2rnn m2rnn_export > "$W/build.log" 2>&1 && make -j"$JOBS" train_m2rnn PRECISION=FP32 >> "$W/build.log" 2>&1 ||
    { tail -20 "$W/build.log"; echo "check_torch_export: build failed ($W/build.log)" >&2; exit 1; }

PROMPT=$(python3 -c "
import sys; sys.path.insert(0, 'scripts'); import m2rnn_files
print(','.join(map(str, m2rnn_files.read_shard('$VAL')[:16])))")
# the run's shape: the trainer's defaults (B=8, T=512, -m 20, seed 1337), validation at 0 and 300 only, one
# checkpoint at the end, a greedy sample of 32 tokens after the prompt
RUN=(-b 8 -t 512 -m 20 -v 300 -s 0 -n 0 -g 32 --temperature 0 --prompt "$PROMPT")
TORCH=(--shard "$VAL" --seq 512 --windows 160 --batch 32 --seed 1337 --prompt-tokens "$PROMPT" --generate 32
       --device "$DEVICE")

rows=() failed=0
row() {  # check, figures, bound, verdict
    rows+=("| $1 | $2 | $3 | $4 |")
    [ "${4%% *}" = PASS ] || failed=$((failed + 1))
}
# value_of FILE KEY: the first word after "KEY " on the file's line that starts with it
value_of() { awk -v k="$2" '$0 ~ "^"k" " { print substr($0, length(k) + 2); exit }' "$1"; }
# rel_check NAME GOT WANT BOUND
rel_check() {
    local rel verdict
    rel=$(python3 -c "print(f'{abs($2 - $3) / abs($3):.2e}')")
    verdict=$(python3 -c "print('PASS' if $rel <= $4 else 'FAIL')")
    row "$1" "torch $2, train_m2rnn $3: rel err $rel" "$4" "$verdict"
}
# ids_check NAME GOT WANT: how many of the first 32 ids agree, position by position
ids_check() {
    local same
    same=$(python3 -c "
a, b = '$2'.split(), '$3'.split()
n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
print(min(n, 32))")
    row "$1" "first $same of 32 tokens agree" "32" "$([ "$same" = 32 ] && echo PASS || echo FAIL)"
}

for build in fp32 bf16; do
    BIN=./train_m2rnn; [ $build = fp32 ] && BIN=./train_m2rnn_fp32
    D=$W/$build
    rm -rf "$D"; mkdir -p "$D"
    echo "== $build: train 300 steps ($BIN)"
    "$BIN" -e d12-hybrid -x 300 "${RUN[@]}" -o "$D/run" > "$D/train.out" 2>&1 ||
        { tail -20 "$D/train.out"; echo "check_torch_export: training failed ($D/train.out)" >&2; exit 1; }
    val=$(awk '$1 == "step" && $2 == 300 && $3 == "val_loss" { print $4 }' "$D/run/train.log")
    ids=$(value_of "$D/run/train.log" "step 300 sample_ids")

    echo "== $build: export, round trip, reload in train_m2rnn"
    ./m2rnn_export "$D/run/model_300.bin" "$D/fp32_export" > /dev/null
    ./m2rnn_export "$D/run/model_300.bin" "$D/bf16_export" --dtype bf16 > /dev/null
    ./m2rnn_export "$D/fp32_export/model.safetensors" "$D/back.bin" > /dev/null
    row "$build: checkpoint -> safetensors -> checkpoint" "$(stat -c %s "$D/back.bin") bytes" "identical" \
        "$(cmp -s "$D/run/model_300.bin" "$D/back.bin" && echo PASS || echo 'FAIL (differs)')"
    for dtype in fp32 bf16; do
        out=$(python3 scripts/m2rnn_files.py check "$D/${dtype}_export" | tail -1)
        row "$build: m2rnn_files.py check, $dtype export" "${out:0:90}" "OK" "$([ "${out:0:9}" = "check: OK" ] && echo PASS || echo FAIL)"
    done
    "$BIN" -e "$D/fp32_export/model.safetensors" -x 0 "${RUN[@]}" -o "$D/reload" > "$D/reload.out" 2>&1 ||
        { tail -20 "$D/reload.out"; echo "check_torch_export: train_m2rnn -e model.safetensors failed" >&2; exit 1; }
    reval=$(awk '$1 == "step" && $2 == 0 && $3 == "val_loss" { print $4 }' "$D/reload/train.log")
    reids=$(value_of "$D/reload/train.log" "step 0 sample_ids")
    row "$build: train_m2rnn -e model.safetensors -x 0" "val_loss $reval (trained run $val), sample $([ "$reids" = "$ids" ] && echo same || echo differs)" \
        "identical" "$([ "$reval" = "$val" ] && [ "$reids" = "$ids" ] && echo PASS || echo FAIL)"

    if [ $build = fp32 ]; then cases="fp32:fp32_export fp64:fp32_export"; bound=1e-5
    else cases="bf16:fp32_export bf16:bf16_export"; bound=2e-3; fi
    for c in $cases; do
        dtype=${c%%:*} export=${c#*:}
        echo "== $build: m2rnn_torch.py --dtype $dtype on the $export"
        python3 scripts/m2rnn_torch.py --model "$D/$export" --dtype "$dtype" "${TORCH[@]}" > "$D/torch_${dtype}_$export.out" 2>&1 ||
            { tail -20 "$D/torch_${dtype}_$export.out"; echo "check_torch_export: m2rnn_torch.py failed" >&2; exit 1; }
        tloss=$(value_of "$D/torch_${dtype}_$export.out" loss | awk '{ print $1 }')
        rel_check "$build: loss, torch $dtype on the $export" "$tloss" "$val" "$bound"
        ids_check "$build: greedy 32 tokens, torch $dtype on the $export" "$(value_of "$D/torch_${dtype}_$export.out" greedy_ids)" "$ids"
    done
done

echo
echo "| check | figures | bound | verdict |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "check_torch_export: $(( ${#rows[@]} - failed )) passed, $failed failed (outputs in $W)"
[ "$failed" = 0 ]
