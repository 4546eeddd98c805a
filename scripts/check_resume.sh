#!/usr/bin/env bash
# Resume is exact: trains STEPS steps straight (checkpointing at the midpoint), then resumes a copy of the
# midpoint checkpoint in a fresh directory and trains to STEPS again; the losses of the second half must be
# identical, digit for digit. Extra flags go to both runs.
#   usage: scripts/check_resume.sh [train flags ...]     env: TRAIN (default ./train_m2rnn), STEPS (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${TRAIN:-./train_m2rnn}
STEPS=${STEPS:-200}
HALF=$((STEPS / 2))
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$TRAIN" -x "$STEPS" -n "$HALF" -g 0 -o "$WORK/straight" "$@" >/dev/null
mkdir "$WORK/resumed"
cp "$WORK/straight/model_$HALF.bin" "$WORK/straight/state_$HALF.bin" "$WORK/resumed/"
"$TRAIN" -x "$STEPS" -n "$HALF" -g 0 -o "$WORK/resumed" -y 1 "$@" >/dev/null

# "step N/M train_loss X grad_norm Y" and "step N val_loss X" of the steps after the midpoint
losses() { awk -v h="$HALF" '$1 == "step" && ($3 == "train_loss" || $3 == "val_loss") { split($2, s, "/");
           if (s[1] > h) print $1, $2, $3, $4, $5, $6 }' "$1/train.log"; }
losses "$WORK/straight" >"$WORK/a"
losses "$WORK/resumed" >"$WORK/b"
echo "steps $((HALF + 1))-$STEPS, straight run vs resumed from step $HALF:"
paste -d'|' "$WORK/a" "$WORK/b" | awk -F'|' 'NR <= 3 || NR % 25 == 0 { printf "  %-58s | %s\n", $1, $2 }'
if cmp -s "$WORK/a" "$WORK/b"; then
    echo "resume exact: $(wc -l <"$WORK/a") loss lines identical"
else
    echo "resume NOT exact: $(diff "$WORK/a" "$WORK/b" | grep -c '^<') of $(wc -l <"$WORK/a") loss lines differ"
    exit 1
fi
