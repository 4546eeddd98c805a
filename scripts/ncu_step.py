#!/usr/bin/env python3
"""One training step's kernels from an ncu run of `train_m2rnn ... -x 2` (python3 standard library only).

    ncu --clock-control none --csv --metrics gpu__time_duration.sum[,dram__bytes_read.sum,dram__bytes_write.sum,
        launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active] [-k regex:NAMES] \\
        ./train_m2rnn -e paper-410M-hybrid -x 2 -u 0 -v 0 -g 0 ... > ncu.csv
    scripts/ncu_step.py ncu.csv [--all]

The second step is the launches after the first step's AdamW launches, through the second step's last ones (with -k
and no adamw in NAMES: the second half of the launches). Prints the step's launch count and kernel time (against the
step's wall time, e.g. from an unprofiled run, that is how busy the GPU is), then per kernel name: launches, ms, and
where measured GB read + written, TB/s, registers and warps active; the top 30 unless --all.
"""
import collections
import csv
import sys

TIME, READ, WRITE = "gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum"
REGS, WARPS = "launch__registers_per_thread", "sm__warps_active.avg.pct_of_peak_sustained_active"


def launches(path):
    """[(id, kernel name, {metric: value})] in launch order."""
    rows = [r for r in csv.reader(open(path, errors="replace")) if len(r) > 5]
    head = next((i for i, r in enumerate(rows) if "Kernel Name" in r and "Metric Value" in r), None)
    if head is None:
        sys.exit(f"ncu_step: {path} has no ncu --csv table (a 'Kernel Name' and 'Metric Value' header)")
    hdr = rows[head]
    ki, vi, ni, mi = (hdr.index(k) for k in ("Kernel Name", "Metric Value", "ID", "Metric Name"))
    per, name = collections.defaultdict(dict), {}
    for r in rows[head + 1:]:
        if len(r) != len(hdr):
            continue
        try:
            per[int(r[ni])][r[mi]] = float(r[vi].replace(",", ""))
        except ValueError:
            continue
        name[int(r[ni])] = r[ki]
    return [(i, name[i], per[i]) for i in sorted(per) if TIME in per[i]]


def second_step(all_launches):
    adamw = [i for i, (_, n, _) in enumerate(all_launches) if "adamw" in n]
    runs = []  # runs of back-to-back AdamW launches: a step's optimizer
    for i in adamw:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    if len(runs) >= 2:
        return all_launches[runs[0][1] + 1:runs[-1][1] + 1]
    return all_launches[len(all_launches) // 2:]


def main():
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] != "--all"):
        sys.exit("usage: scripts/ncu_step.py NCU_CSV [--all]")
    step = second_step(launches(sys.argv[1]))
    total = sum(m[TIME] for _, _, m in step)
    print(f"second step: {len(step)} launches, kernel time {total / 1e6:.2f} ms")
    agg = collections.defaultdict(lambda: collections.defaultdict(float))
    for _, n, m in step:
        a = agg[n.split("(")[0][:80]]
        a["n"] += 1
        for k, v in m.items():
            a[k] += v
    print(f"{'kernel':80} {'n':>5} {'ms':>9} {'GB':>8} {'TB/s':>6} {'regs':>5} {'warps%':>6}")
    ranked = sorted(agg.items(), key=lambda x: -x[1][TIME])
    for k, a in ranked if len(sys.argv) == 3 else ranked[:30]:
        extra = ""
        if READ in a:
            gb = (a[READ] + a[WRITE]) / 1e9
            extra = f" {gb:8.2f} {gb / (a[TIME] / 1e9) / 1e3:6.2f} {a[REGS] / a['n']:5.0f} {a[WARPS] / a['n']:6.1f}"
        print(f"{k:80} {a['n']:5.0f} {a[TIME] / 1e6:9.3f}{extra}")


main()
