#!/usr/bin/env python3
"""How busy the GPU is in each training step, and where it waits, from a scripts/gpu_trace.cpp timeline
(python3 standard library only).

    make build/libgpu_trace.so
    CUDA_INJECTION64_PATH=$PWD/build/libgpu_trace.so GPU_TRACE=trace.tsv ./train_m2rnn -e paper-410M-attention ...
    scripts/gpu_trace.py trace.tsv [--gaps N]

A step runs from the end of one optimizer update's wait (the cudaStreamSynchronize that returns after AdamW's last
launch) to the end of the next: the host's step, as the trainer's `ms` times it, plus the log line between steps.
Per step: its wall time, the time the GPU ran anything (kernels, memsets, copies: their union) and that as a percentage,
the kernels' own sum, and the idle time split by what the host was doing meanwhile (the CUDA runtime call it was in,
or "host code" outside any). Then, for the step of median wall time, its N longest idle gaps (default 8), with what ran
on the GPU before and after each.
"""
import collections
import statistics
import sys


def read(path):
    """(gpu, host): lists of (start ns, end ns, name), sorted by start."""
    gpu, host = [], []
    for n, line in enumerate(open(path, errors="replace"), 1):
        f = line.rstrip("\n").split("\t")
        if len(f) != 5 or f[0] not in ("gpu", "host"):
            sys.exit(f"gpu_trace: {path}:{n}: not a gpu_trace line (side, start, end, stream, name): {line[:80]!r}")
        try:
            start, end = int(f[1]), int(f[2])
        except ValueError:
            sys.exit(f"gpu_trace: {path}:{n}: start and end must be integers: {line[:80]!r}")
        if start == 0 and end == 0:  # CUPTI could not time this record
            continue
        (gpu if f[0] == "gpu" else host).append((start, end, f[4]))
    gpu.sort()
    host.sort()
    return gpu, host


def is_transfer(name):
    """A memset or copy, not a kernel."""
    return name.startswith(("memset", "memcpy"))


def short(name):
    """A kernel's function name without its arguments and template arguments; a memset or copy as it is."""
    if is_transfer(name):
        return name
    base = name.split("(")[0]
    depth, out = 0, ""
    for ch in base:
        depth += ch == "<"
        if depth == 0:
            out += ch
        depth -= ch == ">"
    return out.split()[-1] if out.split() else name


def update_waits(gpu, host):
    """Ends of the host waits that return after an AdamW launch: one per optimizer step."""
    ends, i = [], 0
    for start, end, name in host:
        if not name.startswith("cudaStreamSynchronize"):
            continue
        while i < len(gpu) and gpu[i][1] <= end:
            i += 1
        if i > 0 and "adamw" in gpu[i - 1][2] and not (ends and gpu[i - 1][1] <= ends[-1]):
            ends.append(end)
    return ends


def union(intervals, lo, hi):
    """The merged [start, end) spans of intervals clipped to [lo, hi)."""
    spans = []
    for start, end, _ in intervals:
        start, end = max(start, lo), min(end, hi)
        if end <= start:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return spans


def host_during(host, lo, hi):
    """{runtime call or 'host code': ns of [lo, hi) the host spent in it}; where calls overlap (nested or on other
    threads), the time they cover is shared among them in proportion, so the values add up to hi − lo."""
    spent, covered = collections.Counter(), union(host, lo, hi)
    for start, end, name in host:
        overlap = min(end, hi) - max(start, lo)
        if overlap > 0:
            spent[name.split("_v")[0]] += overlap
    total = sum(e - s for s, e in covered)
    if sum(spent.values()) > total:  # nested or concurrent calls: share the covered time in proportion
        scale = total / sum(spent.values())
        spent = collections.Counter({k: v * scale for k, v in spent.items()})
    spent["host code"] = (hi - lo) - total
    return spent


def step_report(gpu, host, lo, hi):
    inside = [g for g in gpu if g[1] > lo and g[0] < hi]
    spans = union(inside, lo, hi)
    busy = sum(e - s for s, e in spans)
    kernels = sum(min(e, hi) - max(s, lo) for s, e, n in inside if not is_transfer(n))
    gaps, edge = [], lo
    for s, e in spans + [[hi, hi]]:
        if s > edge:
            gaps.append((edge, s))
        edge = max(edge, e)
    idle = collections.Counter()
    for a, b in gaps:
        idle.update(host_during(host, a, b))
    return {"wall": hi - lo, "busy": busy, "kernels": kernels, "gaps": gaps, "idle": idle, "inside": inside}


def ended_by(inside, t):
    """The name of the GPU work that ended last at or before t."""
    before = max((g for g in inside if g[1] <= t), key=lambda g: g[1], default=None)
    return short(before[2]) if before else "(step start)"


def starting_from(inside, t):
    """The name of the first GPU work that starts at or after t."""
    after = min((g for g in inside if g[0] >= t), key=lambda g: g[0], default=None)
    return short(after[2]) if after else "(step end)"


def main():
    args = sys.argv[1:]
    n_gaps = 8
    if "--gaps" in args:
        i = args.index("--gaps")
        if i + 1 >= len(args) or not args[i + 1].isdigit():
            sys.exit("gpu_trace: --gaps takes a count")
        n_gaps = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit(__doc__.strip())
    gpu, host = read(args[0])
    ends = update_waits(gpu, host)
    if len(ends) < 2:
        sys.exit(f"gpu_trace: {args[0]} holds {len(ends)} optimizer steps' waits; a step needs two (run -x 3 or more)")
    ms = 1e-6
    steps = [step_report(gpu, host, lo, hi) for lo, hi in zip(ends, ends[1:])]
    causes = sorted({c for r in steps for c in r["idle"]}, key=lambda c: -sum(r["idle"][c] for r in steps))[:4]
    print("%-5s %9s %9s %7s %10s %9s  %s" % ("step", "wall ms", "GPU ms", "busy", "kernel ms", "idle ms",
                                            "idle while the host was in (ms)"))
    for k, r in enumerate(steps, 2):
        idle = r["wall"] - r["busy"]
        detail = ", ".join("%s %.2f" % (c, r["idle"][c] * ms) for c in causes)
        print("%-5d %9.2f %9.2f %6.1f%% %10.2f %9.2f  %s" % (k, r["wall"] * ms, r["busy"] * ms,
                                                           100.0 * r["busy"] / r["wall"], r["kernels"] * ms,
                                                           idle * ms, detail))
    walls = [r["wall"] for r in steps]
    median = steps[walls.index(sorted(walls)[(len(walls) - 1) // 2])]
    print("\nthe median step's longest idle gaps:")
    print("%9s  %-36s %-36s %s" % ("idle ms", "after", "before", "the host meanwhile (ms)"))
    for a, b in sorted(median["gaps"], key=lambda g: g[0] - g[1])[:n_gaps]:
        before, after = ended_by(median["inside"], a), starting_from(median["inside"], b)
        spent = host_during(host, a, b)
        detail = ", ".join("%s %.3f" % (c, v * ms) for c, v in spent.most_common(3) if v > 0)
        print("%9.3f  %-36s %-36s %s" % ((b - a) * ms, before[:36], after[:36], detail))
    print("\nmedian over %d steps: wall %.2f ms, GPU busy %.1f%%" %
          (len(steps), statistics.median(walls) * ms,
           statistics.median(100.0 * r["busy"] / r["wall"] for r in steps)))


if __name__ == "__main__":
    main()
