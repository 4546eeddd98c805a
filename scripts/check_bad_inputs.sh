#!/usr/bin/env bash
# Bad input to train_m2rnn must fail fast, before the device, with "train_m2rnn: <what is wrong>" and a
# non-zero exit: no crash, no hang, no files left in the log directory. The binary runs with no GPU
# visible (CUDA_VISIBLE_DEVICES=""), so the cases run on the CPU unless they say --device gpu. Kinds: bad (must
# fail before the device); good (given --device gpu, must get as far as the GPU and stop with "no NVIDIA GPU or
# driver found": how accepted input shows up on any machine); cpu (must train on the CPU to the end, exit 0, and
# leave only train.log and checkpoints); eval (must print --eval 1's line on the CPU and leave nothing); help (must
# print the usage). Then the other programs' bad inputs and rough edges: m2rnn_export, tokenize, make_tasks,
# bench_m2rnn_scan and bench_attention, from the trainer's directory (a row is skipped for a program not built).
# `make test` runs it.
#
#   bash scripts/check_bad_inputs.sh [path/to/train_m2rnn]      (from the repository root; bash + python3)
#
# Fixtures (shards, checkpoints of a tiny config and their safetensors exports, made with the m2rnn_export beside
# the binary and then damaged one way each) are written to a fresh mktemp -d directory, removed at
# the end; every case gets its own log directory there (-o), listed before and after the run. Prints a
# markdown table, then "bad inputs: N passed, N failed"; exits non-zero if any case failed.
set -uo pipefail
export CUDA_VISIBLE_DEVICES=""
# a launcher's variables around `make test` (an sbatch script sets SLURM_NTASKS) would change the baselines
unset RANK WORLD_SIZE LOCAL_RANK OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE OMPI_COMM_WORLD_LOCAL_RANK SLURM_PROCID \
      SLURM_NTASKS SLURM_LOCALID

BIN=${1:-./train_m2rnn}
[ -x "$BIN" ] || { echo "check_bad_inputs: $BIN is not an executable (make train_m2rnn first)" >&2; exit 2; }
TRAIN_SHARD=data/tinyshakespeare/tiny_shakespeare_train.bin
[ -f "$TRAIN_SHARD" ] || { echo "check_bad_inputs: run from the repository root" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
EXPORT=$(dirname "$BIN")/m2rnn_export
[ -x "$EXPORT" ] || { echo "check_bad_inputs: $EXPORT is not an executable (make m2rnn_export first)" >&2; exit 2; }
T=$(mktemp -d)
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
F=$T/f      # fixtures
mkdir -p "$F"

# ---- fixtures: token shards (llm.c format) and checkpoints (model/checkpoint.h) of a tiny config
TINY=(--pattern MA --dim 64 --ffn 128 --heads 2 --m2rnn-heads 4 --key 8 --value 4)
python3 - "$F" <<'PY' || { echo "check_bad_inputs: writing fixtures failed" >&2; exit 2; }
import os, random, struct, sys
F = sys.argv[1]

def shard(name, tokens, magic=20240520, version=1, ntok=None, extra=b""):
    header = [0] * 256
    header[0], header[1], header[2] = magic, version, len(tokens) if ntok is None else ntok
    with open(os.path.join(F, name), "wb") as f:
        f.write(struct.pack("<256i", *header) + struct.pack("<%dH" % len(tokens), *tokens) + extra)

good = [(i * 7919) % 50257 for i in range(4096)]
shard("good.bin", good)
shard("bad_magic.bin", good, magic=12345678)
shard("bad_version.bin", good, version=2)
shard("truncated.bin", good, ntok=8192)            # header says more tokens than present
shard("count_small.bin", good, ntok=1000)          # header says fewer tokens than present
shard("stray_byte.bin", good, extra=b"\x00")
shard("big_token.bin", good[:100] + [60000] + good[101:])  # 60000 >= gpt2 vocab 50257
open(os.path.join(F, "empty.bin"), "wb").close()
open(os.path.join(F, "short.txt"), "w").write("First Citizen:\nBefore we proceed any further, hear me speak.\n")
os.makedirs(os.path.join(F, "a_dir.bin"))
# the layout of a state-tracking shard (data/tasks.h) for the fixture model's vocabulary 50257: groups of n = 25128
# elements, sequences [BOS 0, g 1..n, s n+1..2n] of L = 4 (T = 9), then one BOS
rng = random.Random(1)
task_like = []
for _ in range(64):
    task_like += [0] + [x for _ in range(4) for x in (rng.randint(1, 25128), rng.randint(25129, 50256))]
shard("task_like.bin", task_like + [0])
for pair, bad in (("pair1", "1.bin"), ("pair2", "2.bin")):  # two shards, one with a token >= vocab
    os.makedirs(os.path.join(F, pair))
    for n in ("1.bin", "2.bin"):
        shard(os.path.join(pair, n), good[:2000] + [60000] + good[2001:] if n == bad else good)

# Parameter count of model/parameters.cpp's table.
def count(pattern, D, F_, heads, N, K, V, Nq, Nk, Vp):
    t = Vp * D                                                   # wte
    for mixer in pattern:
        t += D                                                   # ln1
        if mixer == "M":
            t += (Nq * K + Nk * K + 2 * N * V + N) * D           # in_proj
            t += (Nq * K + Nk * K + N * V) * 4                   # conv
            t += N + N + N * V * V + N * V + N * V + D * N * V   # A_log dt_bias W D gnorm out_proj
        else:
            t += 3 * D * D + D * D                               # qkv attn_out
        t += D + 2 * F_ * D + D * F_                             # ln2 up down
    return t + D + Vp * D                                        # lnf lm_head

def model(name, pattern="MA", D=64, F_=128, heads=2, rope=0, N=4, K=8, V=4, Nq=1, Nk=1, vocab=50257, Vp=50304,
          T=64, clip=1.0, step=5, magic=20261123, version=1, n=None, header_only=False):
    n_ok = count(pattern, D, F_, heads, N, K, V, Nq, Nk, Vp)
    n = n_ok if n is None else n
    h = [magic, version, step, len(pattern), D, F_, heads, rope, N, K, V, Nq, Nk, vocab, Vp, T,
         struct.unpack("<i", struct.pack("<f", clip))[0], n & 0xFFFFFFFF, n >> 32] + [0] * 237
    raw = bytearray(struct.pack("<256I", *[x & 0xFFFFFFFF for x in h]))  # two's complement, any int
    raw[256:256 + len(pattern)] = pattern.encode()
    with open(os.path.join(F, name), "wb") as f:
        f.write(raw + (b"" if header_only else struct.pack("<f", 0.01) * n_ok))
    return n_ok

def state(name, n, step=5, epoch=0, shard=0, window=0, seed=1337, count_field=None, magic=20261124):
    h = [magic, 1, step, n if count_field is None else count_field, epoch, shard, window, seed] + [0] * 8
    with open(os.path.join(F, name), "wb") as f:
        f.write(struct.pack("<16q", *h) + bytes(8 * n))

n = model("model_good.bin")
state("state_good.bin", n)
model("model_bad_magic.bin", magic=20240520)
model("model_huge_dims.bin", D=1 << 30, F_=1 << 30, heads=1, K=1 << 30, V=1 << 30, header_only=True)  # int overflow
model("model_step3.bin", step=3)                     # header step differs from its name/state (5)
n_other = model("model_other.bin", D=32, F_=64)      # another config (D=32)
model("model_attention.bin", pattern="AA")           # no M2RNN layer
state("state_other.bin", n_other)
state("state_wrong_count.bin", n, count_field=n + 1) # right size, header count of another model
state("state_bad_magic.bin", n, magic=20261123)
state("state_step7.bin", n, step=7)                  # step differs from model_5.bin
state("state_step_neg.bin", n, step=-3)
state("state_bad_pos.bin", n, shard=99)              # data position outside the shards
good_model = open(os.path.join(F, "model_good.bin"), "rb").read()
open(os.path.join(F, "model_truncated.bin"), "wb").write(good_model[:len(good_model) // 2])
open(os.path.join(F, "model_header_only.bin"), "wb").write(good_model[:1000])
open(os.path.join(F, "model_garbage.bin"), "wb").write(random.Random(0).randbytes(len(good_model)))
PY

# safetensors exports of model_good.bin (model/safetensors.h), then copies damaged one way each: st_<what>/
{ "$EXPORT" "$F/model_good.bin" "$F/st_good" && "$EXPORT" "$F/model_good.bin" "$F/st_bf16" --dtype bf16; } >/dev/null ||
    { echo "check_bad_inputs: m2rnn_export of the fixture checkpoint failed" >&2; exit 2; }
python3 - "$F" <<'PY' || { echo "check_bad_inputs: writing safetensors fixtures failed" >&2; exit 2; }
import json, os, shutil, struct, sys
F = sys.argv[1]
good = os.path.join(F, "st_good")
raw = open(os.path.join(good, "model.safetensors"), "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
config = json.load(open(os.path.join(good, "config.json")))

def fixture(name, model_bytes=None, config_text=None):
    d = os.path.join(F, "st_" + name)
    os.makedirs(d)
    open(os.path.join(d, "model.safetensors"), "wb").write(raw if model_bytes is None else model_bytes)
    if config_text is not False:
        open(os.path.join(d, "config.json"), "w").write(json.dumps(config) if config_text is None else config_text)

def pack(entries):
    """A safetensors file of {name: (dtype, shape, bytes)} (and the metadata), the tensors back to back."""
    head, blob = {"__metadata__": header["__metadata__"]}, b""
    for name, (dtype, shape, b) in entries.items():
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(b)]}
        blob += b
    text = json.dumps(head).encode()
    return struct.pack("<Q", len(text)) + text + blob

def entries():
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}

def with_header(edit):
    h = json.loads(json.dumps(header))
    edit(h)
    text = json.dumps(h).encode()
    return struct.pack("<Q", len(text)) + text + data

A, DT = "model.layers.0.mixer.A_log", "model.layers.0.mixer.dt_bias"
fixture("overlap", with_header(lambda h: h[DT].update(data_offsets=h[A]["data_offsets"])))
fixture("offset_size", with_header(lambda h: h[A]["data_offsets"].__setitem__(1, h[A]["data_offsets"][1] + 4)))
fixture("truncated", raw[:-4])
fixture("header_length", struct.pack("<Q", 1 << 40) + raw[8:])
fixture("header_json", raw[:8] + raw[8:8 + n].replace(b"{", b"[", 1) + data)
e = entries(); del e["model.layers.1.mlp.up_proj.weight"]; fixture("missing", pack(e))
e = entries(); e["extra.weight"] = ("F32", [1], b"\0\0\0\0"); fixture("extra", pack(e))
e = entries(); dt, shape, b = e["model.layers.1.mlp.up_proj.weight"]; e["model.layers.1.mlp.up_proj.weight"] = (dt, shape[::-1], b)
fixture("shape", pack(e))
e = entries(); e[A] = ("F16", [8], e[A][2]); fixture("dtype_f16", pack(e))
e = entries(); e[A] = ("BF16", [4], e[A][2][:8]); fixture("dtype_mixed", pack(e))
fixture("no_config", config_text=False)
fixture("config_json", config_text=json.dumps(config)[:-2])
fixture("config_dim", config_text=json.dumps(dict(config, hidden_size=32)))
fixture("config_pattern", config_text=json.dumps(dict(config, layer_pattern="MM")))
fixture("config_missing_field", config_text=json.dumps({k: v for k, v in config.items() if k != "m2rnn_heads"}))
fixture("config_unknown_field", config_text=json.dumps(dict(config, hidden_sise=64)))
fixture("config_tied", config_text=json.dumps(dict(config, tie_word_embeddings=True)))
fixture("config_eps", config_text=json.dumps(dict(config, rms_norm_eps=1e-6)))
fixture("config_string_dim", config_text=json.dumps(dict(config, hidden_size="64")))
fixture("config_deep", config_text="[" * 100000 + "]" * 100000)
PY

# ---- the cases
rows=() passed=0 failed=0 skipped=0 n=0 L=
fresh() { L=$T/run$((n + 1)); mkdir -p "$L"; }                  # a new, empty log directory for the next case
ckpt() { ln "$F/$1" "$L/model_5.bin"; [ -z "${2:-}" ] || ln "$F/$2" "$L/state_5.bin"; }  # model_5 (+ state_5) in $L
short() { local s="$*"; s=${s//$T\/f\//}; s=${s//$T/\$T}; s=${s//$PWD/<repo>}; s=${s//|/\\|}; printf '%s' "$s"; }
row() { rows+=("| $n | $1 | \`$(short "$2")\` | $3 | $(short "$4") | $5 |"); }

# check KIND "what a new user tried" ARGS...: runs the binary with ARGS, and -o $L in front unless ARGS give -o
# (good cases get --device gpu first), in the directory $CWD (default: here). KIND: bad, good, cpu or help, as
# above. With EXPECT set, the output must also contain that text. Nothing may be left behind: no new file in an
# existing -o directory (but a cpu case's log and checkpoints), no -o directory (or missing parent) that did not
# exist.
check() {
    local kind=$1 what=$2; shift 2
    n=$((n + 1))
    local args=("$@") dir="" i
    for ((i = 0; i < ${#args[@]} - 1; i++)); do [ "${args[i]}" = -o ] && dir=${args[i + 1]}; done
    [ -n "$dir" ] || { dir=$L; args=(-o "$L" "${args[@]}"); }
    [ "$kind" = good ] && args=(--device gpu "${args[@]}")
    local top=$dir   # the outermost missing directory of the -o path, if any
    while [ ! -e "$top" ] && [ ! -e "$(dirname "$top")" ]; do top=$(dirname "$top"); done
    local existed=0 before="" after out rc msg verdict
    [ -e "$dir" ] && existed=1
    [ -d "$dir" ] && before=$(ls -A "$dir" 2>/dev/null)
    out=$(cd "${CWD:-.}" && timeout 20 "$BIN" "${args[@]}" 2>&1 < /dev/null); rc=$?
    after=$( [ -d "$dir" ] && ls -A "$dir" 2>/dev/null)
    local new=$(comm -13 <(printf '%s\n' "$before" | sort) <(printf '%s\n' "$after" | sort) | grep . | tr '\n' ' ')
    msg=$(printf '%s\n' "$out" | grep -m1 . | cut -c1-220)
    if [ "$kind" = help ]; then
        if [ $rc = 0 ] && grep -q "^usage: " <<<"$out"; then verdict="PASS (printed the usage)"
        else verdict="FAIL (no usage, or exit $rc)"; fi
    elif [ "$kind" = cpu ]; then
        new=$(tr ' ' '\n' <<<"$new" | grep -v -E '^(train\.log|(model|state)_[0-9]+\.bin)$' | grep . | tr '\n' ' ')
        if [ $rc -eq 0 ] && grep -q "^step [0-9]*/[0-9]* train_loss" "$dir/train.log" 2>/dev/null; then
            verdict="PASS (trained on the CPU)"
        else verdict="FAIL (did not train on the CPU: exit $rc)"; fi
    elif [ "$kind" = eval ]; then
        if [ $rc -eq 0 ] && grep -q "^eval L [0-9]* sequences [0-9]* state_accuracy" <<<"$out"; then
            verdict="PASS (evaluated on the CPU)"
        else verdict="FAIL (no eval line: exit $rc)"; fi
    elif [ "$kind" = good ]; then
        if [ $rc -lt 124 ] && grep -q "no NVIDIA GPU or driver found" <<<"$out" && [ -z "$new" ]; then verdict="PASS (accepted: reached the GPU)"
        else verdict="FAIL (good input rejected)"; fi
    elif [ $rc -eq 0 ]; then verdict="FAIL (exit 0 on bad input)"
    elif [ $rc -ge 124 ]; then verdict="FAIL (timeout or signal, exit $rc)"
    elif grep -q "no NVIDIA GPU or driver found" <<<"$out"; then verdict="FAIL (accepted: got as far as the GPU)"
    elif ! grep -q "^train_m2rnn: " <<<"$out"; then verdict="FAIL (no 'train_m2rnn:' message)"
    else verdict=PASS; fi
    if [ -n "${EXPECT:-}" ] && ! grep -qF -- "$EXPECT" <<<"$out"; then verdict="FAIL (the message does not say '$EXPECT')"; fi
    if [ -n "$new" ]; then verdict="FAIL (left in the log dir: $new)"
    elif [ $existed = 0 ] && [ -e "$top" ]; then verdict="FAIL (left $(short "$top") behind)"; fi
    case $verdict in PASS*) passed=$((passed + 1)) ;; *) failed=$((failed + 1)) ;; esac
    local shown=() a; for a in "$@"; do shown+=("${a:-''}"); done   # show an empty argument as ''
    row "$what" "${shown[*]}" "$rc" "$msg" "$verdict"
}
skip() { n=$((n + 1)); skipped=$((skipped + 1)); row "$1" "$2" - - "SKIP ($3)"; }

G=$F/good.bin
# baselines: accepted input reaches the GPU
fresh; check good "baseline: no flags (d12-hybrid on tinyshakespeare)"
fresh; check good "baseline: tiny preset on a small shard" -e tiny -t 64 -i "$G" -j "$G"
fresh; check good "baseline: start from a checkpoint (-e model file)" -e "$F/model_good.bin" -t 64
fresh; ckpt model_good.bin state_good.bin; check good "baseline: good resume (-y 1, model_5 + state_5)" -y 1 -t 64 -x 10
# flags
fresh; check bad "unknown flag" -z 1
fresh; EXPECT="unknown flag" check bad "unknown flag last, with no value after it" -zzz
fresh; check help "-help (one dash)" -help
fresh; check help "help (no dash)" help
fresh; EXPECT="not a flag" check bad "an argument that is not a flag" data/tinyshakespeare/input.txt
fresh; EXPECT="given twice" check bad "a flag given twice (-b 4 -b 16)" -b 4 -b 16
fresh; EXPECT="given twice" check bad "-o given twice" -o "$L" -o "$L"
fresh; check bad "flag without a value" -b
fresh; check bad "batch size not a number" -b abc
fresh; check bad "batch size 0" -b 0
fresh; check bad "negative batch size" -b -3
fresh; check bad "learning rate nan" -l nan
fresh; check bad "learning rate overflows a double" -l 1e400
fresh; check bad "fractional sequence length" -t 1.5
fresh; check bad "-d not a multiple of B*T" -d 5000
fresh; check bad "-d so large that the micro-batch count overflows int" -b 1 -t 1 -d 1099511627776
fresh; check bad "negative steps" -x -1
fresh; check bad "-y 2" -y 2
fresh; check bad "-m 0 validation batches" -m 0
# sampling
fresh; check good "baseline: sampling flags -s 0 -g 16" -s 0 -g 16
fresh; check good "baseline: sampling flags -s 5 -g 32" -s 5 -g 32
fresh; check bad "-s negative (sample every -1 steps)" -s -1
fresh; check bad "-g not a number" -g abc
fresh; check bad "-g negative" -g -5
fresh; check bad "-s fractional" -s 1.5
fresh; check bad "-g overflows int" -g 99999999999999999999
fresh; check bad "-g longer than a KV cache can hold" -g 100000
fresh; check bad "-s without a value" -s
fresh; CWD=$T check bad "sampling, run outside the repository (no rank file)" -i "$PWD/$TRAIN_SHARD" -j "$PWD/$TRAIN_SHARD"
fresh; CWD=$T check good "baseline: outside the repository with -g 0" -g 0 -i "$PWD/$TRAIN_SHARD" -j "$PWD/$TRAIN_SHARD"
# data
fresh; check bad "missing train shard" -i "$T/no_such_train.bin"
fresh; check bad "train glob matching nothing" -i "$T/nothing_*.bin"
fresh; check bad "val shard missing" -j "$T/no_such_val.bin"
fresh; check bad "shard with wrong magic" -i "$F/bad_magic.bin"
fresh; EXPECT="./tokenize -o data/tinyshakespeare/input data/tinyshakespeare/input.txt" \
    check bad "a text file given as shard" -i data/tinyshakespeare/input.txt
fresh; EXPECT="looks like text" check bad "a text file shorter than a shard header as val shard" -j "$F/short.txt"
fresh; check bad "shard with wrong version" -i "$F/bad_version.bin"
fresh; check bad "truncated shard (header says more tokens)" -i "$F/truncated.bin"
fresh; check bad "header count smaller than the file" -i "$F/count_small.bin"
fresh; check bad "shard with a stray trailing byte" -i "$F/stray_byte.bin"
fresh; check bad "empty file as shard" -i "$F/empty.bin"
fresh; check bad "token 60000 >= gpt2 vocab 50257" -i "$F/big_token.bin"
fresh; check bad "token >= vocab in the 1st of two shards" -i "$F/pair1/*.bin"
fresh; check bad "token >= vocab in the 2nd of two shards" -i "$F/pair2/*.bin"
fresh; check bad "bad token in the val shard" -j "$F/big_token.bin"
fresh; check bad "a directory given as shard" -i "$F/a_dir.bin"
fresh; check bad "shard shorter than one window (T+1)" -t 8192 -i "$G" -j "$G"
# model config
fresh; check bad "pattern with a letter other than M/A" --pattern MAX
fresh; check bad "empty pattern" --pattern ''
fresh; check bad "heads do not divide dim" --dim 770 --heads 12
fresh; check bad "key size 0" --key 0
fresh; check bad "q-heads do not divide m2rnn-heads" --m2rnn-heads 5 --q-heads 2
fresh; check bad "rope with an odd head size" --dim 66 --heads 2 --rope 1
fresh; check bad "M2RNN value size the scan kernels do not support" --device gpu --value 5
fresh; check bad "M2RNN state too large for the scan kernels (K·V > 1024)" --device gpu --key 128
# --state-noise: random initial M2RNN states in training
fresh; check good "baseline: --state-noise 0.5" --state-noise 0.5
fresh; check good "baseline: --state-noise 1 (the upper bound)" --state-noise 1
fresh; check good "baseline: --state-noise 0 (off) with no M layer" --pattern AA --state-noise 0
fresh; EXPECT="out of range [0, 1]" check bad "--state-noise above 1 (states lie in (-1, 1))" --state-noise 1.5
fresh; EXPECT="out of range [0, 1]" check bad "--state-noise negative" --state-noise -0.1
fresh; check bad "--state-noise not a number" --state-noise abc
fresh; check bad "--state-noise nan" --state-noise nan
fresh; EXPECT="has no M2RNN layer" check bad "--state-noise with a pattern of no M layer" --pattern AA --state-noise 0.5
fresh; EXPECT="has no M2RNN layer" check bad "--state-noise, -e a checkpoint of no M layer (pattern AA)" \
    -e "$F/model_attention.bin" -t 64 --state-noise 0.5
fresh; EXPECT="--eval 1" check bad "--state-noise with --eval 1 (which does not train)" -e "$F/model_good.bin" \
    --eval 1 -t 9 -j "$F/task_like.bin" -b 4 -m 2 --state-noise 0.5
fresh; check bad "unknown preset" -e no-such-preset
fresh; check bad "-e a checkpoint path that does not exist" -e "$T/run1/model_100.bin"
fresh; check bad "-e a checkpoint of another config + shape flags" -e "$F/model_other.bin" -t 64 "${TINY[@]}"
fresh; check bad "-e a truncated checkpoint" -e "$F/model_truncated.bin" -t 64
fresh; check bad "-e a file that is not a checkpoint" -e "$G"
fresh; check bad "-e a checkpoint header with 2^30 dims, no params" -e "$F/model_huge_dims.bin" -t 64
# safetensors (-e <dir>/model.safetensors with config.json beside it)
S=model.safetensors
fresh; check good "baseline: -e an fp32 model.safetensors" -e "$F/st_good/$S" -t 64
fresh; check good "baseline: -e a bf16 model.safetensors" -e "$F/st_bf16/$S" -t 64
fresh; check good "baseline: -x 0 (validate and sample the -e model only)" -e "$F/st_good/$S" -t 64 -x 0
fresh; check bad "-e a model.safetensors that does not exist" -e "$T/nowhere/$S"
fresh; check bad "-e safetensors + shape flags" -e "$F/st_good/$S" -t 64 --dim 128
fresh; check bad "-e safetensors: two tensors' offsets overlap" -e "$F/st_overlap/$S" -t 64
fresh; check bad "-e safetensors: offsets not of the tensor's size" -e "$F/st_offset_size/$S" -t 64
fresh; check bad "-e safetensors: file 4 bytes short (offsets past the end)" -e "$F/st_truncated/$S" -t 64
fresh; check bad "-e safetensors: header length past the file" -e "$F/st_header_length/$S" -t 64
fresh; check bad "-e safetensors: header is malformed JSON" -e "$F/st_header_json/$S" -t 64
fresh; check bad "-e safetensors: a tensor missing" -e "$F/st_missing/$S" -t 64
fresh; check bad "-e safetensors: a tensor the model does not have" -e "$F/st_extra/$S" -t 64
fresh; check bad "-e safetensors: a tensor of the wrong shape" -e "$F/st_shape/$S" -t 64
fresh; check bad "-e safetensors: dtype F16" -e "$F/st_dtype_f16/$S" -t 64
fresh; check bad "-e safetensors: a BF16 tensor in a float32 file" -e "$F/st_dtype_mixed/$S" -t 64
fresh; check bad "-e safetensors without config.json beside it" -e "$F/st_no_config/$S" -t 64
fresh; check bad "-e safetensors: config.json cut short (malformed JSON)" -e "$F/st_config_json/$S" -t 64
fresh; check bad "-e safetensors: config.json says hidden_size 32" -e "$F/st_config_dim/$S" -t 64
fresh; check bad "-e safetensors: config.json says pattern MM" -e "$F/st_config_pattern/$S" -t 64
fresh; check bad "-e safetensors: config.json without m2rnn_heads" -e "$F/st_config_missing_field/$S" -t 64
fresh; check bad "-e safetensors: config.json with a misspelt field" -e "$F/st_config_unknown_field/$S" -t 64
fresh; check bad "-e safetensors: config.json with tied embeddings" -e "$F/st_config_tied/$S" -t 64
fresh; check bad "-e safetensors: config.json with another rms_norm_eps" -e "$F/st_config_eps/$S" -t 64
fresh; check bad "-e safetensors: config.json hidden_size a string" -e "$F/st_config_string_dim/$S" -t 64
fresh; check bad "-e safetensors: config.json nested 100000 deep" -e "$F/st_config_deep/$S" -t 64
# sampling
fresh; check good "baseline: greedy samples from a prompt" --temperature 0 --prompt 464,3290 -g 32
fresh; check bad "--temperature negative" --temperature -1
fresh; check bad "--prompt with a token past the vocabulary" --prompt 464,60000
fresh; check bad "--prompt not a list of ids" --prompt 464,,3290
fresh; check bad "--prompt + -g past the GPU decoder's limit" --device gpu --prompt 464 -g 16384
# resume
fresh; check bad "-y 1 with an empty log dir" -y 1
fresh; ckpt model_truncated.bin state_good.bin; check bad "-y 1, model checkpoint truncated" -y 1 -t 64 -x 10
fresh; ckpt model_header_only.bin state_good.bin; check bad "-y 1, model checkpoint cut inside the header" -y 1 -t 64 -x 10
fresh; ckpt model_bad_magic.bin state_good.bin; check bad "-y 1, model checkpoint with bad magic" -y 1 -t 64 -x 10
fresh; ckpt model_garbage.bin state_good.bin; check bad "-y 1, model checkpoint of garbage bytes" -y 1 -t 64 -x 10
fresh; ckpt model_good.bin; check bad "-y 1, model_5.bin without state_5.bin" -y 1 -t 64 -x 10
fresh; mkdir "$L/model_5.bin"; ln "$F/state_good.bin" "$L/state_5.bin"; check bad "-y 1, model_5.bin is a directory" -y 1 -t 64 -x 10
fresh; ckpt model_good.bin; mkdir "$L/state_5.bin"; check bad "-y 1, state_5.bin is a directory" -y 1 -t 64 -x 10
fresh; ckpt model_good.bin state_other.bin; check bad "-y 1, state file of another model size" -y 1 -t 64 -x 10
fresh; ckpt model_good.bin state_wrong_count.bin; check bad "-y 1, state of right size, other count" -y 1 -t 64 -x 10
fresh; ckpt model_good.bin state_bad_magic.bin; check bad "-y 1, state file with bad magic" -y 1 -t 64 -x 10
fresh; ckpt model_good.bin state_bad_pos.bin; check bad "-y 1, state's data position outside the shards" -y 1 -t 64 -x 10
fresh; ckpt model_step3.bin state_good.bin; check bad "-y 1, model header step 3 in model_5.bin" -y 1 -t 64 -x 10
fresh; ckpt model_good.bin state_step7.bin; check bad "-y 1, state step 7 beside model_5.bin" -y 1 -t 64 -x 10
fresh; ckpt model_good.bin state_step_neg.bin; check bad "-y 1, state step -3" -y 1 -t 64 -x 10
fresh; ckpt model_good.bin state_good.bin; check bad "-y 1 + shape flags" -y 1 -t 64 -x 10 --dim 128
fresh; ckpt model_good.bin state_good.bin; check bad "-y 1 at another -t (the GPU's default 512)" --device gpu -y 1 -x 10
fresh; ckpt model_good.bin state_good.bin; check bad "-y 1 with -x not past the checkpoint" -y 1 -t 64 -x 5
# evaluation of state tracking
fresh; check good "baseline: --eval 1 of a checkpoint on a task shard" -e "$F/model_good.bin" --eval 1 -t 9 -j "$F/task_like.bin" -b 4 -m 2
fresh; check bad "--eval 1 without a checkpoint" --device gpu --eval 1
fresh; check bad "--eval 1 at an even -t" --device gpu -e "$F/model_good.bin" --eval 1 -t 64 -j "$G"
fresh; check bad "--eval 1 on a text shard" --device gpu -e "$F/model_good.bin" --eval 1 -t 65 -j "$G"
fresh; check bad "--eval 1 at a -t the task shard was not made for" --device gpu -e "$F/model_good.bin" --eval 1 -t 11 -j "$F/task_like.bin" -b 4
# several GPUs (variables before `check` are a launcher's environment for that case)
ID=$T/nccl_id
fresh; check good "baseline: one process through NCCL with ZeRO-1 (--world 1 --nccl-id --zero 1)" --world 1 --nccl-id "$ID" --zero 1
fresh; check good "baseline: rank 1 of 2 from --world/--rank flags" --world 2 --rank 1 --nccl-id "$ID"
fresh; RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 check good "baseline: rank 1 of 2 from RANK/WORLD_SIZE/LOCAL_RANK" --nccl-id "$ID"
fresh; OMPI_COMM_WORLD_RANK=3 OMPI_COMM_WORLD_SIZE=4 OMPI_COMM_WORLD_LOCAL_RANK=1 check good "baseline: rank 3 of 4 from mpirun's variables" --nccl-id "$ID" -d 16384
fresh; SLURM_PROCID=0 SLURM_NTASKS=4 check good "baseline: --world 1 inside an sbatch script (SLURM_NTASKS=4)" --world 1
fresh; RANK=5 WORLD_SIZE=2 check good "baseline: --rank 1 wins over RANK=5" --rank 1 --nccl-id "$ID"
fresh; check bad "--world 2 without --nccl-id" --world 2 --rank 0
fresh; WORLD_SIZE=2 RANK=0 check bad "WORLD_SIZE=2 from a launcher without --nccl-id"
fresh; SLURM_PROCID=0 SLURM_NTASKS=4 check bad "an sbatch script's SLURM_NTASKS=4 without --nccl-id"
fresh; check bad "--world 0" --world 0
fresh; check bad "--rank 2 of --world 2" --world 2 --rank 2 --nccl-id "$ID"
fresh; RANK=2 WORLD_SIZE=2 check bad "RANK=2 of WORLD_SIZE=2" --nccl-id "$ID"
fresh; RANK=one WORLD_SIZE=2 check bad "RANK=one in the environment" --nccl-id "$ID"
fresh; WORLD_SIZE=0 check bad "WORLD_SIZE=0 in the environment" --nccl-id "$ID"
fresh; LOCAL_RANK=-1 check bad "LOCAL_RANK=-1 in the environment"
fresh; check bad "--local-rank negative" --local-rank -1
fresh; check bad "--nccl-id empty" --nccl-id ''
fresh; check bad "--nccl-id in a missing directory" --world 2 --rank 1 --nccl-id "$T/no_such_dir/nccl_id"
fresh; check bad "--nccl-id a directory" --nccl-id "$T"
fresh; check bad "--nccl-timeout 0" --world 1 --nccl-id "$ID" --nccl-timeout 0
fresh; check bad "--nccl-timeout not a number" --nccl-timeout soon
fresh; check bad "--zero 2" --zero 2
fresh; check bad "-d a multiple of B*T but not of 2 processes x B*T" --device gpu --world 2 --rank 0 --nccl-id "$ID" -d 4096
fresh; check bad "--eval 1 with 2 processes" --device gpu -e "$F/model_good.bin" --eval 1 -t 9 -j "$F/task_like.bin" -b 4 -m 2 --world 2 --rank 0 --nccl-id "$ID"
fresh; ckpt model_good.bin state_good.bin; check good "baseline: resume (-y 1) on 2 processes with ZeRO-1" -y 1 -t 64 -x 10 --world 2 --rank 1 --nccl-id "$ID" --zero 1
# the CPU (--device cpu, or auto with no GPU visible, as here): the baselines trained for a step or two
fresh; check cpu "on the CPU: no flags but a short run (auto mode: the tiny preset)" -x 2 -v 1 -m 1 -g 8
fresh; check cpu "on the CPU: tiny preset on a small shard" -e tiny -t 64 -i "$G" -j "$G" -x 2 -v 1 -m 1 -g 8
fresh; check cpu "on the CPU: start from a checkpoint (-e model file)" -e "$F/model_good.bin" -t 64 -x 1 -v 1 -m 1 -g 8
fresh; ckpt model_good.bin state_good.bin; check cpu "on the CPU: resume (-y 1, model_5 + state_5)" -y 1 -t 64 -x 7 -v 0 -g 8
fresh; check cpu "on the CPU: sampling flags -s 1 -g 16" -x 2 -s 1 -g 16 -v 0
fresh; check cpu "on the CPU: a value size the GPU's scan does not support (--value 5)" --value 5 -x 1 -v 0 -g 0 -t 32 -b 2
fresh; check cpu "on the CPU: gradient accumulation (-d 4 micro-batches)" -x 1 -v 0 -g 0 -t 32 -b 2 -d 256
fresh; check cpu "on the CPU: --state-noise 0.5 with gradient accumulation" -x 2 -v 1 -m 1 -g 8 -t 32 -b 2 -d 256 \
    --state-noise 0.5
fresh; ckpt model_good.bin state_good.bin; check cpu "on the CPU: resume (-y 1) with --state-noise 0.3" -y 1 -t 64 \
    -x 7 -v 0 -g 0 --state-noise 0.3
fresh; check bad "on the CPU: --profile 1 (GPU kernel timing)" --device cpu --profile 1
fresh; check bad "on the CPU: --world 2" --device cpu --world 2 --rank 0 --nccl-id "$ID"
fresh; check bad "on the CPU: --zero 1" --device cpu --zero 1
fresh; check eval "on the CPU: --eval 1 of a checkpoint on a task shard" --device cpu -e "$F/model_good.bin" --eval 1 -t 9 \
    -j "$F/task_like.bin" -b 4 -m 2
fresh; check bad "on the CPU: -g longer than a CPU sample may be" --device cpu -g 2000
fresh; check bad "--device tpu" --device tpu
fresh; check bad "--threads 0" --threads 0
# log directory
fresh; check bad "-o under /proc" -o /proc/nope
fresh; touch "$L/file"; check bad "-o a regular file" -o "$L/file"
fresh; check good "baseline: -o inside missing parents (made, and removed when the run stops at the GPU)" -o "$L/a/b/c"
fresh; check bad "failing run with a new -o dir (is it left behind?)" -o "$L/new/sub" -i "$T/no_such_train.bin"
fresh; touch "$L/file"; check bad "-o below a regular file" -o "$L/file/sub"
if [ "$(id -u)" = 0 ]; then skip "-o a read-only dir (chmod 555)" "-o ro (chmod 555)" "running as root: chmod does not block writes"
else fresh; chmod 555 "$L"; check bad "-o a read-only dir (chmod 555)" -o "$L"; chmod 755 "$L"; fi

# ---- the other programs: tokenize, make_tasks, bench_m2rnn_scan, bench_attention (from beside the trainer)
# tool KIND "what a new user tried" PROGRAM ARGS...: runs PROGRAM ARGS in a fresh empty directory $L (cases name their
# files in it). KIND: bad (exit 1, a "PROGRAM: " message, nothing left in $L but what was there), good (exit 0),
# quiet (exit 0 and no output at all). With EXPECT set, the output must contain that text.
tool() {
    local kind=$1 what=$2 prog=$3; shift 3
    n=$((n + 1))
    local path=$TOOLS/$prog$(case $prog in bench_*) printf '%s' "$SUFFIX" ;; esac) out rc msg verdict before after
    if [ ! -x "$path" ]; then skip "$what" "$prog $*" "$prog not built"; return; fi
    before=$(ls -A "$L")
    out=$(cd "$L" && timeout 20 "$path" "$@" 2>&1 < /dev/null); rc=$?
    after=$(ls -A "$L")
    msg=$(printf '%s\n' "$out" | grep -m1 . | cut -c1-220)
    case $kind in
        bad) if [ $rc != 1 ]; then verdict="FAIL (exit $rc, not 1)"
             elif ! grep -q "^$prog: " <<<"$out"; then verdict="FAIL (no '$prog:' message)"
             elif [ "$before" != "$after" ]; then verdict="FAIL (left files: $(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' '))"
             else verdict=PASS; fi ;;
        good) [ $rc = 0 ] && verdict=PASS || verdict="FAIL (exit $rc)" ;;
        quiet) if [ $rc != 0 ]; then verdict="FAIL (exit $rc)"; elif [ -n "$out" ]; then verdict="FAIL (printed: $msg)"
               else verdict="PASS (silent)"; fi ;;
    esac
    if [ -n "${EXPECT:-}" ] && ! grep -qF -- "$EXPECT" <<<"$out"; then verdict="FAIL (the output does not say '$EXPECT')"; fi
    case $verdict in PASS*) passed=$((passed + 1)) ;; *) failed=$((failed + 1)) ;; esac
    row "$what" "$prog $*" "$rc" "$msg" "$verdict"
}
TOOLS=$(dirname "$BIN") SUFFIX=${BIN##*/train_m2rnn}
RANKS=$PWD/data/tokenizers TEXT=$PWD/data/tinyshakespeare/input.txt
head -c 20000 "$TEXT" > "$F/text.txt"
fresh; tool quiet "tokenize -q: quiet" tokenize -q -r "$RANKS/gpt2.tiktoken" -o small "$F/text.txt"
fresh; tool quiet "tokenize -q of cl100k_base: a uint32 shard" tokenize -q -e cl100k_base -r "$RANKS/cl100k_base.tiktoken" \
    -o "$F/cl100k" "$F/text.txt"
fresh; EXPECT="First Citizen" tool good "tokenize --decode of a uint32 shard, no -e" tokenize --decode \
    -r "$RANKS/cl100k_base.tiktoken" "$F/cl100k_train.bin"
fresh; EXPECT="pass -e cl100k_base" tool bad "tokenize --decode -e gpt2 of a uint32 shard" tokenize --decode -e gpt2 \
    -r "$RANKS/gpt2.tiktoken" "$F/cl100k_train.bin"
fresh; EXPECT="looks like text" tool bad "tokenize --decode of a text file" tokenize --decode -r "$RANKS/gpt2.tiktoken" \
    "$F/text.txt"
fresh; EXPECT="looks binary" tool bad "tokenize of a binary file (a shard)" tokenize -r "$RANKS/gpt2.tiktoken" -o bin \
    "$PWD/$TRAIN_SHARD"
fresh; tool quiet "tokenize --binary of a binary file" tokenize -q --binary -r "$RANKS/gpt2.tiktoken" -o bin "$PWD/$TRAIN_SHARD"
fresh; EXPECT="takes all 6048 tokens" tool bad "tokenize --val-tokens more than the input's tokens" tokenize \
    -r "$RANKS/gpt2.tiktoken" --val-tokens 100000 -o small "$F/text.txt"
fresh; EXPECT="takes all 6048 tokens" tool bad "tokenize --val-tokens = the input's tokens" tokenize \
    -r "$RANKS/gpt2.tiktoken" --val-tokens 6048 -o small "$F/text.txt"
fresh; mkdir "$L/out"; EXPECT="is a directory" tool bad "tokenize -o a directory" tokenize -r "$RANKS/gpt2.tiktoken" \
    -o out "$F/text.txt"
fresh; EXPECT="from 1 to 2147483647" tool bad "make_tasks --sequences 10^11" make_tasks --sequences 100000000000 -o t.bin
fresh; EXPECT="a count from 1 to L" tool bad "make_tasks --min-length 0" make_tasks --min-length 0 -o t.bin
fresh; EXPECT="is more than --length 8" tool bad "make_tasks --min-length above --length" make_tasks --length 8 \
    --min-length 9 -o t.bin
fresh; EXPECT="lengths 2..8, padded with BOS" tool good "make_tasks --min-length 2: mixed lengths" make_tasks --length 8 \
    --min-length 2 --sequences 10 -o t.bin
fresh; EXPECT="0 or 1" tool bad "make_tasks --pack 2" make_tasks --pack 2 -o t.bin
fresh; EXPECT="lengths 2..8, packed), 10 rows" tool good "make_tasks --pack 1: sequences back to back" make_tasks \
    --length 8 --min-length 2 --pack 1 --sequences 10 -o t.bin
fresh; EXPECT="no NVIDIA GPU or driver found" CUDA_VISIBLE_DEVICES="" tool bad "bench_m2rnn_scan without a GPU" \
    bench_m2rnn_scan
fresh; EXPECT="no NVIDIA GPU or driver found" CUDA_VISIBLE_DEVICES="" tool bad "bench_attention without a GPU" \
    bench_attention
fresh; EXPECT="HD must be 64 or 128" tool bad "bench_attention at head size 96" bench_attention 96 4096
fresh; EXPECT="a divisor of 32768" tool bad "bench_attention at T = 3000" bench_attention 64 3000
fresh; EXPECT="usage" tool bad "bench_attention with one argument" bench_attention 64

echo "| # | bad input (as a new user would try it) | command (short) | exit | message (first line) | verdict |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "(\$T = the fixture directory, fixture files named without it; every command without -o also gets -o \$T/runN; $skipped skipped)"
echo "bad inputs: $passed passed, $failed failed"
[ "$failed" = 0 ]
