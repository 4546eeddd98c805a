#!/usr/bin/env bash
# Throughput of ./tokenize against the npm tiktoken package (tiktoken compiled to WebAssembly) on the
# same text: SOURCE (default tinyshakespeare) repeated to SIZE_MB, for gpt2 and cl100k_base. SOURCE
# `fixtures` is the inputs of tests/tokenizer/fixtures.tsv (88 KB of many scripts, emoji, digits,
# whitespace runs, control characters and invalid UTF-8) concatenated. Prints MB/s for tiktoken on
# one core, ours on one core (-t 1) and ours on every core, and checks that both give the same ids.
# tiktoken is timed on encode_ordinary alone (file read excluded); ours on the whole run (rank file
# load, read, encode, shard write). Needs node and tiktoken installed outside the repository:
#
#   npm install --prefix /tmp/tiktoken-js tiktoken
#   scripts/bench_tokenize.sh [SIZE_MB (default 64)] [SOURCE (default data/tinyshakespeare/input.txt)]
#                             [TIKTOKEN_NODE_MODULES (default /tmp/tiktoken-js/node_modules)]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-64}
SOURCE=${2:-data/tinyshakespeare/input.txt}
MODULES=${3:-/tmp/tiktoken-js/node_modules}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

make -s tokenize
if [ "$SOURCE" = fixtures ]; then
    SOURCE=$WORK/fixtures.txt
    python3 -c 'import sys; sys.stdout.buffer.write(b"".join(bytes.fromhex(l.split("\t")[0]) for l in open(sys.argv[1])))' \
        tests/tokenizer/fixtures.tsv > "$SOURCE"
fi
TEXT=$WORK/text.txt
while [ "$(stat -c %s "$TEXT" 2>/dev/null || echo 0)" -lt $((SIZE_MB * 1000000)) ]; do
    cat "$SOURCE" >> "$TEXT"
done
BYTES=$(stat -c %s "$TEXT")
echo "text: $SOURCE x $((BYTES / $(stat -c %s "$SOURCE"))), $BYTES bytes; $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
for ENC in gpt2 cl100k_base; do
    read -r TT_S TT_N < <(NODE_PATH=$MODULES taskset -c 0 node -e '
        const fs = require("fs");
        const { get_encoding } = require("tiktoken");
        const enc = get_encoding(process.argv[1]);
        const text = fs.readFileSync(process.argv[2], "utf8");
        const t0 = process.hrtime.bigint();
        const ids = enc.encode_ordinary(text);
        const t1 = process.hrtime.bigint();
        const narrow = process.argv[1] === "gpt2" ? Uint16Array.from(ids) : ids;
        fs.writeFileSync(process.argv[3], Buffer.from(narrow.buffer, narrow.byteOffset, narrow.byteLength));
        console.log(Number(t1 - t0) / 1e9, ids.length);' "$ENC" "$TEXT" "$WORK/tiktoken.ids")
    ONE_S=$(seconds taskset -c 0 ./tokenize -q -t 1 -e "$ENC" -o "$WORK/one" "$TEXT")
    ALL_S=$(seconds ./tokenize -q -e "$ENC" -o "$WORK/all" "$TEXT")
    # our shard: a 1024-byte header, then 2 (gpt2) or 4 (cl100k_base) bytes per token, <|endoftext|> first
    WIDTH=$([ "$ENC" = gpt2 ] && echo 2 || echo 4)
    cmp -s "$WORK/one_train.bin" "$WORK/all_train.bin" || { echo "one-thread and all-thread shards differ"; exit 1; }
    tail -c +$((1024 + WIDTH + 1)) "$WORK/all_train.bin" | cmp -s - "$WORK/tiktoken.ids" ||
        { echo "$ENC: our ids differ from tiktoken's"; exit 1; }
    printf '%-12s tiktoken (1 core) %6.2f MB/s | ours 1 core %6.2f MB/s | ours %d cores %6.2f MB/s | %.1fx | %d tokens, identical\n' \
        "$ENC" "$(echo "$BYTES / 1000000 / $TT_S" | bc -l)" "$(echo "$BYTES / 1000000 / $ONE_S" | bc -l)" "$(nproc)" \
        "$(echo "$BYTES / 1000000 / $ALL_S" | bc -l)" "$(echo "$TT_S / $ALL_S" | bc -l)" "$TT_N"
done
