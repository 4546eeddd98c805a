#!/usr/bin/env python3
"""The files a model of m2rnn.cu leaves the trainer in, read with python3's standard library alone.

    python3 scripts/m2rnn_files.py check DIR
        checks DIR/model.safetensors against DIR/config.json (README: File formats): the header's JSON, every
        tensor's name, dtype and shape against the tensors the config implies (docs/model.md §4, in the names of
        model/safetensors.h), and the offsets: each in bounds and of its tensor's size, none overlapping, together
        covering the data section. Prints one line per tensor, then "check: OK ..." or "check: FAILED: ...";
        exit status 1 on any problem.
    python3 scripts/m2rnn_files.py windows --shard FILE --seq T --windows N [--seed S]
        prints the start offsets of the first N windows that train_m2rnn's validation reads from one llm.c shard
        at sequence length T with seed S (data/shards.h), one per line.

scripts/m2rnn_torch.py imports this module for the same readings. It is written from the format's
description, not from the C++ code, so it also checks what model/safetensors.cpp writes.
"""
import argparse
import base64
import json
import os
import struct
import sys
from array import array

DTYPE_BYTES = {"F32": 4, "BF16": 2}
TORCH_DTYPE = {"float32": "F32", "bfloat16": "BF16"}
MAX_HEADER_BYTES = 100 << 20  # the safetensors format's cap


class FormatError(Exception):
    """A file that is not what it should be; the message names the file and the problem."""


# ----------------------------------------------------------------------------
# config.json and the tensors it implies

def read_config(directory):
    path = os.path.join(directory, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except OSError as e:
        raise FormatError(f"{path}: {e.strerror}")
    except ValueError as e:
        raise FormatError(f"{path}: not valid JSON: {e}")
    if not isinstance(config, dict):
        raise FormatError(f"{path}: not a JSON object")
    ints = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "m2rnn_heads",
            "m2rnn_key_size", "m2rnn_value_size", "m2rnn_query_heads", "m2rnn_key_heads", "conv_width",
            "vocab_size", "padded_vocab_size", "train_sequence_length")
    for key in ints:
        if not isinstance(config.get(key), int) or isinstance(config.get(key), bool) or config[key] < 0:
            raise FormatError(f"{path}: \"{key}\" missing or not a whole number")
    pattern = config.get("layer_pattern")
    if not isinstance(pattern, str) or not pattern or set(pattern) - {"M", "A"}:
        raise FormatError(f"{path}: \"layer_pattern\" must be a non-empty string over M and A")
    if len(pattern) != config["num_hidden_layers"]:
        raise FormatError(f"{path}: num_hidden_layers disagrees with layer_pattern")
    if config.get("torch_dtype") not in TORCH_DTYPE:
        raise FormatError(f"{path}: \"torch_dtype\" must be one of {sorted(TORCH_DTYPE)}")
    for key in ("use_rope", "tie_word_embeddings"):
        if not isinstance(config.get(key), bool):
            raise FormatError(f"{path}: \"{key}\" missing or not true/false")
    for key in ("rms_norm_eps", "rope_theta", "state_gradient_clip"):
        if not isinstance(config.get(key), (int, float)) or isinstance(config.get(key), bool):
            raise FormatError(f"{path}: \"{key}\" missing or not a number")
    return config


def expected_tensors(config):
    """[(name, shape)] in the canonical order of docs/model.md §4, shapes as PyTorch holds them."""
    D, F = config["hidden_size"], config["intermediate_size"]
    N, K, V = config["m2rnn_heads"], config["m2rnn_key_size"], config["m2rnn_value_size"]
    Nq, Nk, Vp, width = config["m2rnn_query_heads"], config["m2rnn_key_heads"], config["padded_vocab_size"], \
        config["conv_width"]
    conv_channels = (Nq + Nk) * K + N * V                  # [q | k | v]
    proj_rows = conv_channels + N + N * V                  # [q | k | v | f_raw | g]
    tensors = [("model.embed_tokens.weight", [Vp, D])]
    for l, mixer in enumerate(config["layer_pattern"]):
        p = f"model.layers.{l}."
        tensors.append((p + "mixer_norm.weight", [D]))
        if mixer == "M":
            tensors += [(p + "mixer.in_proj.weight", [proj_rows, D]), (p + "mixer.conv1d.weight", [conv_channels, 1, width]),
                        (p + "mixer.A_log", [N]), (p + "mixer.dt_bias", [N]), (p + "mixer.W", [N, V, V]),
                        (p + "mixer.D", [N, V]), (p + "mixer.norm.weight", [N * V]),
                        (p + "mixer.out_proj.weight", [D, N * V])]
        else:
            tensors += [(p + "mixer.qkv_proj.weight", [3 * D, D]), (p + "mixer.out_proj.weight", [D, D])]
        tensors += [(p + "mlp_norm.weight", [D]), (p + "mlp.up_proj.weight", [2 * F, D]),
                    (p + "mlp.down_proj.weight", [D, F])]
    return tensors + [("model.norm.weight", [D]), ("lm_head.weight", [Vp, D])]


# ----------------------------------------------------------------------------
# model.safetensors

def read_safetensors_header(path):
    """(metadata, {name: (dtype, shape, begin, end)}, data_start, data_bytes), the offsets checked: each range in
    bounds and of its tensor's size, none overlapping, all together covering the data section."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise FormatError(f"{path}: shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > MAX_HEADER_BYTES:
                raise FormatError(f"{path}: header length {n} does not fit the file's {size} bytes")
            raw = f.read(n)
    except OSError as e:
        raise FormatError(f"{path}: {e.strerror}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"{path}: the header is not valid JSON: {e}")
    if not isinstance(header, dict):
        raise FormatError(f"{path}: the header is not a JSON object")
    data_start, data_bytes = 8 + n, size - 8 - n
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        what = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"{what}: expected exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise FormatError(f"{what}: dtype {dtype!r}, expected one of {sorted(DTYPE_BYTES)}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise FormatError(f"{what}: shape {shape!r} is not a list of whole numbers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise FormatError(f"{what}: data_offsets {offsets!r} are not [begin, end] with 0 <= begin <= end")
        begin, end = offsets
        if end > data_bytes:
            raise FormatError(f"{what}: data_offsets end at {end}, past the {data_bytes}-byte data section")
        numel = 1
        for d in shape:
            numel *= d
        if end - begin != numel * DTYPE_BYTES[dtype]:
            raise FormatError(f"{what}: data_offsets hold {end - begin} bytes, shape {shape} of {dtype} needs "
                              f"{numel * DTYPE_BYTES[dtype]}")
        tensors[name] = (dtype, shape, begin, end)
    cursor = 0
    for name, (_, _, begin, end) in sorted(tensors.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin < cursor:
            raise FormatError(f"{path}: tensor {name!r} overlaps the one before it in the data section")
        if begin > cursor:
            raise FormatError(f"{path}: bytes [{cursor}, {begin}) of the data section belong to no tensor")
        cursor = end
    if cursor != data_bytes:
        raise FormatError(f"{path}: the data section has {data_bytes} bytes, its tensors end at {cursor}")
    return metadata, tensors, data_start, data_bytes


def read_model(directory):
    """(config, {name: (dtype, shape, begin, end)}, data_start, path), every tensor of the config present with its
    shape and the config's dtype, and no other."""
    config = read_config(directory)
    path = os.path.join(directory, "model.safetensors")
    _, tensors, data_start, _ = read_safetensors_header(path)
    want = expected_tensors(config)
    dtype = TORCH_DTYPE[config["torch_dtype"]]
    for name, shape in want:
        if name not in tensors:
            raise FormatError(f"{path}: tensor {name!r} is missing (config.json's layer_pattern is "
                              f"{config['layer_pattern']})")
        if tensors[name][1] != shape:
            raise FormatError(f"{path}: tensor {name!r} has shape {tensors[name][1]}, config.json implies {shape}")
        if tensors[name][0] != dtype:
            raise FormatError(f"{path}: tensor {name!r} is {tensors[name][0]}, config.json's torch_dtype is "
                              f"{config['torch_dtype']}")
    extra = sorted(set(tensors) - {name for name, _ in want})
    if extra:
        raise FormatError(f"{path}: tensor {extra[0]!r} is no tensor of the model config.json describes")
    return config, tensors, data_start, path


# ----------------------------------------------------------------------------
# token shards and the windows the trainer's validation reads (data/shards.h)

def read_shard(path):
    """The tokens of an llm.c shard: 256 int32 of header (magic, version, count), then uint16 or uint32 tokens."""
    with open(path, "rb") as f:
        header = f.read(1024)
        if len(header) < 1024:
            raise FormatError(f"{path}: shorter than the 1024-byte shard header")
        magic, version, count = struct.unpack("<3i", header[:12])
        kinds = {(20240520, 1): "H", (20240801, 7): "I"}
        if (magic, version) not in kinds:
            raise FormatError(f"{path}: magic {magic} version {version} is not an llm.c token shard")
        tokens = array(kinds[magic, version])
        tokens.frombytes(f.read())
    if sys.byteorder != "little":
        tokens.byteswap()
    if len(tokens) != count:
        raise FormatError(f"{path}: the header says {count} tokens, the file holds {len(tokens)}")
    return tokens


MASK64 = (1 << 64) - 1


def mix64(z):
    """splitmix64's finalizer, as model/model_math.h has it (splitmix64_mix)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def shuffled(n, seed, epoch, stream):
    """The loader's permutation of 0..n-1 for (seed, epoch, stream): Fisher-Yates driven by splitmix64."""
    order = list(range(n))
    state = mix64(mix64(mix64(seed) ^ epoch) ^ stream)
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        j = mix64(state) % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def validation_windows(n_tokens, T, seed, count):
    """Start offsets of the first `count` windows (rows of T+1 tokens) the trainer's validation reads from a
    single shard of n_tokens: window w starts at w*T; each epoch visits the (n_tokens-1)//T windows in the
    order shuffled(seed, epoch, stream 1 + file index 0), and the stream runs on into the next epoch."""
    windows = (n_tokens - 1) // T
    if windows < 1:
        raise FormatError(f"the shard's {n_tokens} tokens hold no window of T+1 = {T + 1}")
    starts, epoch = [], 0
    while len(starts) < count:
        starts += [w * T for w in shuffled(windows, seed, epoch, 1)]
        epoch += 1
    return starts[:count]


# ----------------------------------------------------------------------------
# tiktoken rank files (data/tokenizers): decoding ids to text

EOT = {"gpt2": 50256, "cl100k_base": 100257}  # <|endoftext|> of each encoding (data/tokenizer.h)


def decode(rank_file, encoding, ids):
    """The text of token ids: each id's bytes from the rank file (`base64(bytes) rank` per line), <|endoftext|>
    by name, invalid UTF-8 replaced."""
    table = {}
    with open(rank_file, "rb") as f:
        for line in f:
            token, rank = line.split()
            table[int(rank)] = base64.b64decode(token)
    return b"".join(b"<|endoftext|>" if i == EOT[encoding] else table[i] for i in ids).decode("utf-8", "replace")


# ----------------------------------------------------------------------------
# the command line

def check(directory):
    try:
        config, tensors, data_start, path = read_model(directory)
    except FormatError as e:
        print(f"check: FAILED: {e}")
        return 1
    for name, _ in expected_tensors(config):
        dtype, shape, begin, end = tensors[name]
        print(f"  {name:48s} {dtype:5s} {str(shape):18s} [{begin}, {end})")
    print(f"check: OK {path}: {len(tensors)} tensors, {config['torch_dtype']}, data section of "
          f"{os.path.getsize(path) - data_start} bytes covered exactly")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check").add_argument("dir")
    w = sub.add_parser("windows")
    w.add_argument("--shard", required=True)
    w.add_argument("--seq", type=int, required=True)
    w.add_argument("--windows", type=int, required=True)
    w.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    if args.command == "check":
        return check(args.dir)
    try:
        tokens = read_shard(args.shard)
        starts = validation_windows(len(tokens), args.seq, args.seed, args.windows)
    except (FormatError, OSError) as e:
        print(f"m2rnn_files: {e}", file=sys.stderr)
        return 1
    print("\n".join(map(str, starts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
