#!/usr/bin/env python3
"""The hybrid M²RNN GPT of docs/model.md in plain PyTorch, for models exported by m2rnn_export.

    python3 scripts/m2rnn_torch.py --model DIR [--shard FILE --seq T --windows N --batch B --seed S]
                                   [--generate G [--prompt-tokens ID,ID,...]] [--dtype fp32|bf16|fp64] [--device D]

DIR holds model.safetensors and config.json (README: File formats; read with scripts/m2rnn_files.py, which must lie
beside this script). With --shard it prints the mean loss over the first N windows that train_m2rnn's validation
reads from that llm.c shard at -t T, --seed S (data/shards.h: the same windows in the same order, so the figure
compares with the trainer's "val_loss" at -m N/B, -b B); with --generate it continues the prompt greedily (the
argmax at every step, as train_m2rnn --temperature 0) from --prompt-tokens, default <|endoftext|>. Output, one
line each:
    loss <mean loss> windows N seq T seed S dtype D
    greedy_ids <id> <id> ...
    greedy_text <the ids decoded, as a JSON string>     (when data/tokenizers has the model's tokenizer)

--dtype: fp32 (default; TF32 off), fp64, or bf16: the GEMMs read bfloat16 operands and accumulate in fp32, as
train_m2rnn's bf16 build does; everything else stays fp32. Runs on a GPU or the CPU (--device cpu). Needs torch
and nothing else. The module is written for reading: one class per part of docs/model.md, the recurrence a loop
over time, each formula in the order of model/reference.cpp; loading a state dict by the safetensors names also
makes it a starting point for fine-tuning elsewhere.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import m2rnn_files  # noqa: E402  (the standard-library readers of the files)


# ----------------------------------------------------------------------------
# the model, docs/model.md §2

class Linear(nn.Linear):
    """y = x Wᵀ with W stored (out, in), no bias; with gemm_dtype set, the operands are rounded to it and the
    product (accumulated in fp32) comes back in x's dtype."""
    gemm_dtype = None

    def __init__(self, d_in, d_out):
        super().__init__(d_in, d_out, bias=False)

    def forward(self, x):
        if self.gemm_dtype is None:
            return F.linear(x, self.weight)
        return F.linear(x.to(self.gemm_dtype), self.weight.to(self.gemm_dtype)).to(x.dtype)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) ⊙ w over the last dimension."""

    def __init__(self, width, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def silu(x):
    return x * torch.sigmoid(x)


def softplus(x):
    """log(1 + eˣ) as model/model_math.h writes it: x + log1p(e^-x) for x > 0, else log1p(eˣ)."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


class M2RNN(nn.Module):
    """docs/model.md §2.2: in_proj -> causal conv + silu on [q | k | v] -> forget gate -> the recurrence per head
    -> D skip, silu(g) gate, one RMSNorm over all N·V values -> out_proj."""

    def __init__(self, c):
        super().__init__()
        self.N, self.K, self.V = c["m2rnn_heads"], c["m2rnn_key_size"], c["m2rnn_value_size"]
        self.Nq, self.Nk, self.width = c["m2rnn_query_heads"], c["m2rnn_key_heads"], c["conv_width"]
        N, K, V, D = self.N, self.K, self.V, c["hidden_size"]
        self.Cc = (self.Nq + self.Nk) * K + N * V                 # conv channels [q | k | v]
        self.in_proj = Linear(D, self.Cc + N + N * V)            # rows [q | k | v | f_raw | g]
        # holds the depthwise conv's weight (Cc, 1, width) under PyTorch's name; forward writes the sum out
        self.conv1d = nn.Conv1d(self.Cc, self.Cc, self.width, groups=self.Cc, bias=False)
        self.A_log = nn.Parameter(torch.zeros(N))
        self.dt_bias = nn.Parameter(torch.zeros(N))
        self.W = nn.Parameter(torch.zeros(N, V, V))
        self.D = nn.Parameter(torch.ones(N, V))
        self.norm = RMSNorm(N * V, c["rms_norm_eps"])
        self.out_proj = Linear(N * V, D)

    def forward(self, x):
        B, T, _ = x.shape
        N, K, V, Cc = self.N, self.K, self.V, self.Cc
        proj = self.in_proj(x)
        # u_t[c] = Σ_j conv[c, j] · x_{t-3+j}[c], x before the start = 0, summed in the order j = 0..3
        padded = F.pad(proj[..., :Cc], (0, 0, self.width - 1, 0))
        w = self.conv1d.weight[:, 0, :]
        u = sum(w[:, j] * padded[:, j:j + T, :] for j in range(self.width))
        qkv = silu(u)
        q = qkv[..., :self.Nq * K].reshape(B, T, self.Nq, K).repeat_interleave(N // self.Nq, dim=2)
        k = qkv[..., self.Nq * K:(self.Nq + self.Nk) * K].reshape(B, T, self.Nk, K).repeat_interleave(N // self.Nk, 2)
        v = qkv[..., (self.Nq + self.Nk) * K:].reshape(B, T, N, V)
        f_raw, g = proj[..., Cc:Cc + N], proj[..., Cc + N:]
        f = torch.exp(-torch.exp(self.A_log) * softplus(f_raw + self.dt_bias))     # (B, T, N), in (0, 1)

        # the recurrence, H_{-1} = 0:  Z_t = tanh(H_{t-1} W_n + k_t v_tᵀ),  H_t = f_t H_{t-1} + (1 - f_t) Z_t,
        # y_t = H_tᵀ q_t; H_t written Z_t + f_t (H_{t-1} - Z_t) as model/model_math.h computes it
        H = x.new_zeros(B, N, K, V)
        ys = []
        for t in range(T):
            Z = torch.tanh(H @ self.W + k[:, t, :, :, None] * v[:, t, :, None, :])
            H = Z + f[:, t, :, None, None] * (H - Z)
            ys.append((q[:, t, :, None, :] @ H)[:, :, 0, :])                        # (B, N, V)
        y = torch.stack(ys, dim=1).reshape(B, T, N * V)

        gated = (y + self.D.reshape(N * V) * v.reshape(B, T, N * V)) * silu(g)
        return self.out_proj(self.norm(gated))


def rope(x, theta):
    """Rotate-half RoPE on (B, heads, T, hd): pair (x[i], x[i + hd/2]) at position t turned by t·θ^(-2i/hd), the
    angle in double precision as model/model_math.h takes it."""
    T, hd = x.shape[-2], x.shape[-1]
    i = torch.arange(hd // 2, dtype=torch.float64, device=x.device)
    t = torch.arange(T, dtype=torch.float64, device=x.device)
    angle = t[:, None] * torch.pow(theta, -2.0 * i / hd)[None, :]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    """docs/model.md §2.3: qkv_proj rows [q | k | v], heads of D/heads columns, optional RoPE, causal softmax
    attention, heads concatenated, out_proj."""

    def __init__(self, c):
        super().__init__()
        D = c["hidden_size"]
        self.heads, self.use_rope, self.theta = c["num_attention_heads"], c["use_rope"], float(c["rope_theta"])
        self.qkv_proj = Linear(D, 3 * D)
        self.out_proj = Linear(D, D)

    def forward(self, x):
        B, T, D = x.shape
        hd = D // self.heads
        q, k, v = (t.reshape(B, T, self.heads, hd).transpose(1, 2) for t in self.qkv_proj(x).split(D, dim=-1))
        if self.use_rope:
            q, k = rope(q, self.theta), rope(k, self.theta)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        p = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        return self.out_proj((p @ v).transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    """[a | b] = x upᵀ, h = silu(a) ⊙ b, out = h downᵀ."""

    def __init__(self, c):
        super().__init__()
        D, F_ = c["hidden_size"], c["intermediate_size"]
        self.up_proj = Linear(D, 2 * F_)
        self.down_proj = Linear(F_, D)

    def forward(self, x):
        a, b = self.up_proj(x).chunk(2, dim=-1)
        return self.down_proj(silu(a) * b)


class Layer(nn.Module):
    def __init__(self, c, mixer):
        super().__init__()
        self.mixer_norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mixer = M2RNN(c) if mixer == "M" else Attention(c)
        self.mlp_norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = SwiGLU(c)

    def forward(self, x):
        x = x + self.mixer(self.mixer_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class Backbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["padded_vocab_size"], c["hidden_size"])   # no positional embedding
        self.layers = nn.ModuleList(Layer(c, mixer) for mixer in c["layer_pattern"])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, tokens):
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class M2RNNForCausalLM(nn.Module):
    """tokens (B, T) -> logits (B, T, vocab): the padded columns of lm_head (untied from the embedding) are cut
    off, so they take no part in a softmax."""

    def __init__(self, c):
        super().__init__()
        self.vocab = c["vocab_size"]
        self.model = Backbone(c)
        self.lm_head = Linear(c["hidden_size"], c["padded_vocab_size"])

    def forward(self, tokens):
        return self.lm_head(self.model(tokens))[..., :self.vocab]


# ----------------------------------------------------------------------------
# loading, the loss of a shard's windows, greedy generation

def load(directory, device, dtype):
    """The model of DIR on `device`: parameters in float64 for fp64, else float32; bf16 rounds the GEMM operands."""
    config, tensors, data_start, path = m2rnn_files.read_model(directory)
    if config["tie_word_embeddings"]:
        raise m2rnn_files.FormatError(f"{directory}/config.json: tie_word_embeddings is true; m2rnn models are untied")
    with open(path, "rb") as f:
        f.seek(data_start)
        data = bytearray(f.read())
    kinds = {"F32": (torch.float32, 4), "BF16": (torch.bfloat16, 2)}
    state = {}
    for name, (st_dtype, shape, begin, end) in tensors.items():
        kind, width = kinds[st_dtype]
        state[name] = torch.frombuffer(data, dtype=kind, count=(end - begin) // width, offset=begin).reshape(shape)
    param_dtype = torch.float64 if dtype == "fp64" else torch.float32
    model = M2RNNForCausalLM(config).to(device=device, dtype=param_dtype)
    model.load_state_dict(state, strict=True)
    if dtype == "bf16":
        for m in model.modules():
            if isinstance(m, Linear):
                m.gemm_dtype = torch.bfloat16
    return config, model.eval()


def shard_loss(model, tokens, starts, T, batch, device):
    """Mean cross-entropy over every position of the windows at `starts` (rows of T+1 tokens: inputs, targets)."""
    total = 0.0
    for i in range(0, len(starts), batch):
        rows = torch.tensor([list(tokens[s:s + T + 1]) for s in starts[i:i + batch]], dtype=torch.long, device=device)
        logits = model(rows[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1),
                                 reduction="sum").item()
    return total / (len(starts) * T)


def generate_greedy(model, prompt, n, device):
    """n tokens after `prompt`, each the argmax (the first of equal maxima) given all before it."""
    ids = list(prompt)
    for _ in range(n):
        logits = model(torch.tensor([ids], dtype=torch.long, device=device))[0, -1]
        ids.append(int(logits.argmax()))
    return ids[len(prompt):]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="directory with model.safetensors and config.json")
    parser.add_argument("--shard", help="an llm.c token shard to evaluate on")
    parser.add_argument("--seq", type=int, default=512, help="T, as train_m2rnn -t (default 512)")
    parser.add_argument("--windows", type=int, default=160, help="windows: train_m2rnn's -m x -b (default 160)")
    parser.add_argument("--batch", type=int, default=8, help="windows per forward pass (default 8)")
    parser.add_argument("--seed", type=int, default=1337, help="as train_m2rnn --seed (default 1337)")
    parser.add_argument("--generate", type=int, default=0, help="tokens to generate greedily")
    parser.add_argument("--prompt-tokens", default="", help="comma-separated ids (default <|endoftext|>)")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp64"), default="fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.seq < 1 or args.windows < 1 or args.batch < 1 or args.generate < 0:
        parser.error("--seq, --windows and --batch must be positive, --generate not negative")
    # fp32 means fp32: no TF32 in matmuls, and bf16 GEMMs reduce in fp32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False

    try:
        config, model = load(args.model, args.device, args.dtype)
        tokens = m2rnn_files.read_shard(args.shard) if args.shard else None
        if tokens is not None and max(tokens) >= config["vocab_size"]:
            raise m2rnn_files.FormatError(f"{args.shard}: token {max(tokens)} is not below vocab_size "
                                          f"{config['vocab_size']}")
        starts = m2rnn_files.validation_windows(len(tokens), args.seq, args.seed, args.windows) if args.shard else []
        prompt = [int(x) for x in args.prompt_tokens.split(",")] if args.prompt_tokens else \
            [m2rnn_files.EOT.get(config["tokenizer"], 0)]
        if any(not 0 <= x < config["vocab_size"] for x in prompt):
            raise m2rnn_files.FormatError(f"--prompt-tokens: every id must be in 0..{config['vocab_size'] - 1}")
    except (m2rnn_files.FormatError, OSError, ValueError) as e:
        print(f"m2rnn_torch: {e}", file=sys.stderr)
        return 1
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {args.model}: pattern {config['layer_pattern']}, {n_params} parameters, {args.dtype} on "
          f"{args.device}", flush=True)
    with torch.inference_mode():
        if args.shard:
            t0 = time.time()
            loss = shard_loss(model, tokens, starts, args.seq, args.batch, args.device)
            print(f"loss {loss:.12f} windows {args.windows} seq {args.seq} seed {args.seed} dtype {args.dtype} "
                  f"({time.time() - t0:.1f} s)", flush=True)
        if args.generate:
            ids = generate_greedy(model, prompt, args.generate, args.device)
            print("greedy_ids " + " ".join(map(str, ids)))
            rank_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tokenizers",
                                     f"{config['tokenizer']}.tiktoken")
            if config["tokenizer"] and os.path.exists(rank_file):
                print("greedy_text " + json.dumps(m2rnn_files.decode(rank_file, config["tokenizer"], ids)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
