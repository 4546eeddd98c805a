#!/usr/bin/env python3
"""Plots the train and val loss of train_m2rnn runs into a PNG, and prints their val losses as a table.

Usage:

    python3 scripts/plot_loss.py -o out.png LOG[:LABEL] [LOG[:LABEL] ...] [--title TEXT] [--width 1000] [--height 600]

LOG is a train.log or a directory holding one; LABEL defaults to the log's directory name for a train.log, else to
its file name without .log. Read are the lines "step N/M train_loss X ...", "step N val_loss X" and "# device D,
precision P"; all other lines, sample blocks (from a line "step N sample (...):" to a line "---") and nan or inf
losses are skipped. A step logged twice (a resumed run appended) keeps its last value. One colour per run: the train
loss as a thin line, a trailing moving average over ~1% of its steps; the val loss as a thick line with dots; the
legend below the plot, where it hides nothing. The y axis spans every loss plotted, the untrained model's
included. The title defaults to "train and val loss" and the logs' devices. stdout gets every run's val loss at
every val step, then a row final_train: the smoothed train loss at each run's last step.
Standard library only: the PNG and its 5x7 font are made by png_plot.py next to this script.
"""
import argparse
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from png_plot import (BLACK, COLOURS, Canvas, LegendEntry, draw_axes, draw_legend, fail, legend_size,  # noqa: E402
                      nice_ticks, write_png)

LOSS = r"(-?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf))"
TRAIN_LINE = re.compile(rf"step (\d+)/\d+ train_loss {LOSS} ")
VAL_LINE = re.compile(rf"step (\d+) val_loss {LOSS}\s*$")
SAMPLE_LINE = re.compile(r"step \d+ sample \(")
DEVICE_LINE = re.compile(r"# device (.+), precision (\S+)")

TRAIN_RADIUS, VAL_RADIUS, DOT_RADIUS = 0.25, 0.75, 2  # half line widths and the val dots', in font pixels


# ----------------------------------------------------------------------------
# reading the logs

def read_log(path):
    """The train and val losses of a train.log, each as {step: loss} (a step logged again keeps its last value), and
    its device as "name (precision)", or "" when it names none."""
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    train, val, device = {}, {}, ""
    sample = False  # in a "step N sample (...):" block of generated text, which ends at a line "---"
    for line in lines:
        if SAMPLE_LINE.match(line):
            sample = True
        elif sample and line.rstrip("\n") == "---":
            sample = False
            continue
        device_match = None if sample else DEVICE_LINE.match(line)
        if device_match:
            device = f"{device_match[1]} ({device_match[2]})"
        for pattern, losses in ((TRAIN_LINE, train), (VAL_LINE, val)):
            match = None if sample else pattern.match(line)
            if match:
                losses[int(match[1])] = float(match[2])
    train, val = ({step: loss for step, loss in losses.items() if math.isfinite(loss)} for losses in (train, val))
    if not train and not val:
        fail(f"{path}: no lines 'step N/M train_loss X' or 'step N val_loss X' with a finite loss X")
    return train, val, device


def moving_average(values, window):
    """Each value averaged with the window - 1 before it (fewer at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


class Run:
    """One log: its label, its train steps with the smoothed train loss, and its val loss as {step: loss}."""

    def __init__(self, arg):
        path, colon, label = arg.rpartition(":")
        if not colon or os.path.exists(arg):
            path, label = arg, ""
        if os.path.isdir(path):
            path = os.path.join(path, "train.log")
        name = os.path.basename(path)
        self.label = label or (os.path.basename(os.path.dirname(os.path.abspath(path))) if name == "train.log"
                               else name[:-4] if name.endswith(".log") else name)
        train, self.val, self.device = read_log(path)
        self.steps = sorted(train)
        self.window = max(1, round(len(self.steps) / 100))
        self.smooth = moving_average([train[step] for step in self.steps], self.window)


# ----------------------------------------------------------------------------
# the plot

def data_ranges(runs):
    """x_hi, (y_lo, y_hi): x runs to the last step; y spans every loss plotted, padded 5%."""
    losses = [loss for run in runs for loss in list(run.val.values()) + run.smooth]
    pad = 0.05 * (max(losses) - min(losses)) or 0.5
    last_step = max(step for run in runs for step in run.steps + list(run.val))
    return max(last_step, 1), (min(losses) - pad, max(losses) + pad)


def draw_run(canvas, area, run, colour, to_xy):
    """One run's train and val curves, cut to the plot area."""
    k, whole = canvas.scale, canvas.clip
    train = [to_xy(step, loss) for step, loss in zip(run.steps, run.smooth)]
    val = [to_xy(step, run.val[step]) for step in sorted(run.val)]
    canvas.clip = (area[0] + 1, area[1], area[2] + 1, area[3])
    for points, radius in ((train, TRAIN_RADIUS), (val, VAL_RADIUS)):
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            canvas.line(x0, y0, x1, y1, radius * k, colour)
    canvas.clip = whole  # whole dots, also on the ends of the axes
    for x, y in val:
        if area[1] <= y <= area[3]:
            canvas.dot(x, y, DOT_RADIUS * k, colour)


def legend_entries(run, colour):
    """The legend rows of a run: its train curve and its val curve, those it has."""
    average = f" (avg {run.window})" if run.window > 1 else ""
    entries = [LegendEntry(f"{run.label} train{average}", colour, TRAIN_RADIUS)] if run.steps else []
    return entries + ([LegendEntry(f"{run.label} val", colour, VAL_RADIUS, DOT_RADIUS)] if run.val else [])


def default_title(runs):
    """ "train and val loss", with the devices the logs name."""
    devices = sorted({run.device for run in runs if run.device})
    return "train and val loss" + (", " + " / ".join(devices) if devices else "")


def plot(runs, path, width, height, title):
    """Lays out the plot area around the tick labels and the legend (below it), draws the axes, the runs and the
    legend, writes the PNG."""
    canvas = Canvas(width, height, max(1, min(width // 500, height // 300)))  # font scale 2 at 1000 x 600
    k = canvas.scale
    x_hi, (y_lo, y_hi) = data_ranges(runs)
    x_ticks, y_ticks = nice_ticks(0, x_hi, 1), nice_ticks(y_lo, y_hi)
    colours = [COLOURS[i % len(COLOURS)] for i in range(len(runs))]
    entries = [entry for run, colour in zip(runs, colours) for entry in legend_entries(run, colour)]
    legend_width, legend_height = legend_size(canvas, entries)
    left, top = max(canvas.text_width(label) for _, label in y_ticks) + 24 * k, 30 * k
    right, bottom = width - canvas.text_width(x_ticks[-1][1]) // 2 - 10 * k, height - legend_height - 40 * k
    if left + legend_width > width or bottom - top < height // 3:
        fail(f"the legend ({legend_width} x {legend_height} pixels) does not fit a {width} x {height} plot: "
             "shorter labels (LOG:LABEL) or a larger --width/--height")
    to_xy = lambda step, loss: (left + step / x_hi * (right - left),
                                bottom - (loss - y_lo) / (y_hi - y_lo) * (bottom - top))
    draw_axes(canvas, (left, top, right, bottom), [(to_xy(step, y_lo)[0], label) for step, label in x_ticks],
              [(to_xy(0, loss)[1], label) for loss, label in y_ticks], "step", "loss")
    canvas.text((width - canvas.text_width(title)) // 2, 10 * k, title, BLACK)
    for run, colour in zip(runs, colours):
        draw_run(canvas, (left, top, right, bottom), run, colour, to_xy)
    draw_legend(canvas, entries, left, height - legend_height - 5 * k)
    write_png(path, canvas)


def print_table(runs):
    """Every run's val loss at every val step ('-' where it has none), then its smoothed train loss at the end."""
    loss = lambda value: "-" if value is None else f"{value:.4f}"
    rows = [["step"] + [run.label for run in runs]]
    rows += [[str(step)] + [loss(run.val.get(step)) for run in runs]
             for step in sorted({step for run in runs for step in run.val})]
    rows.append(["final_train"] + [loss(run.smooth[-1] if run.smooth else None) for run in runs])
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def main():
    parser = argparse.ArgumentParser(description="Plots the train/val loss of train_m2rnn logs into a PNG.")
    parser.add_argument("logs", nargs="+", metavar="LOG[:LABEL]", help="a train.log, or a directory holding one")
    parser.add_argument("-o", "--output", required=True, help="the PNG to write")
    parser.add_argument("--title", help='a title above the plot (default: "train and val loss" and the devices)')
    parser.add_argument("--width", type=int, default=1000, help="in pixels, at least 400")
    parser.add_argument("--height", type=int, default=600, help="in pixels, at least 300")
    args = parser.parse_args()
    if args.width < 400 or args.height < 300:
        fail("--width must be at least 400 and --height at least 300")
    runs = [Run(arg) for arg in args.logs]
    plot(runs, args.output, args.width, args.height, default_title(runs) if args.title is None else args.title)
    print_table(runs)


if __name__ == "__main__":
    main()
