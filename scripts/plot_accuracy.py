#!/usr/bin/env python3
"""Plots the accuracy of models on tasks against the sequence length into a PNG, and prints it as a markdown table.

Usage:

    python3 scripts/plot_accuracy.py -o out.png RESULTS.tsv [--train-length 64] [--title TEXT]

RESULTS.tsv is a benchmark's output: the header line "task model length state_accuracy sequence_accuracy" (fields
split by tabs), then a line per task, model and length; length is the number of group elements, the accuracies are
in percent. Blank lines are skipped. One panel per task, titled with the task, up to 3 side by side a row, in the
order the tasks first appear: accuracy (0..100 %) against length on a log2 axis with ticks at the lengths present.
One colour per model: the state accuracy as a thick line with dots, the whole-sequence accuracy as a thin line with
small dots; --train-length draws a dashed grey line there. The legend is right of the panels. stdout gets a markdown
table: a row per task and model, a column per length with the state accuracy, then the whole-sequence accuracy in
parentheses. Standard library only: the PNG is made by png_plot.py next to this script.
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from png_plot import (BLACK, COLOURS, GREY, Canvas, LegendEntry, draw_axes, draw_legend, fail,  # noqa: E402
                      legend_size, nice_ticks, write_png)

HEADER = ["task", "model", "length", "state_accuracy", "sequence_accuracy"]
WIDTH, ROW_HEIGHT, COLUMNS, SCALE = 1200, 420, 3, 2  # the image width, a row of panels' height, panels a row, font
STATE_RADIUS, STATE_DOT = 0.75, 2  # half line width and dot radius of the state accuracy, in font pixels
SEQUENCE_RADIUS, SEQUENCE_DOT = 0.25, 1.25  # the same of the whole-sequence accuracy
MARKER_RADIUS, MARKER_DASH = 0.5, 3  # the dashed line at --train-length


# ----------------------------------------------------------------------------
# reading the results

def parse_row(where, line):
    """(task, model, length, state accuracy, sequence accuracy) of one line; where is "path:line" for errors."""
    fields = line.split("\t")
    if len(fields) != len(HEADER):
        fail(f"{where}: {len(fields)} tab-separated fields, expected {len(HEADER)}")
    task, model = fields[0].strip(), fields[1].strip()
    if not task or not model:
        fail(f"{where}: empty task or model")
    try:
        length = int(fields[2])
    except ValueError:
        length = 0
    if length < 1:
        fail(f"{where}: length '{fields[2]}' is not a whole number above 0")
    accuracies = []
    for name, text in zip(HEADER[3:], fields[3:]):
        try:
            accuracies.append(float(text))
        except ValueError:
            accuracies.append(math.nan)
        if not 0 <= accuracies[-1] <= 100:  # also nan
            fail(f"{where}: {name} '{text}' is not a percentage from 0 to 100")
    return task, model, length, *accuracies


def read_results(path):
    """{(task, model, length): (state accuracy, sequence accuracy)}, in the file's order."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    except UnicodeDecodeError:
        fail(f"{path}: not UTF-8 text")
    if not lines or [name.strip() for name in lines[0].split("\t")] != HEADER:
        fail(f"{path}:1: expected the header line '{' '.join(HEADER)}' (fields split by tabs)")
    results = {}
    for number, line in enumerate(lines[1:], 2):
        if line.strip():
            task, model, length, state, sequence = parse_row(f"{path}:{number}", line)
            if (task, model, length) in results:
                fail(f"{path}:{number}: a second line for {task} {model} {length}")
            results[task, model, length] = (state, sequence)
    if not results:
        fail(f"{path}: no results below the header")
    return results


def column(results, index):
    """The distinct values of one key field (0 task, 1 model, 2 length), in the order they first appear."""
    return list(dict.fromkeys(key[index] for key in results))


# ----------------------------------------------------------------------------
# the plot

def legend_entries(models, train_length):
    """A coloured entry per model, then what the two line widths and the dashed line mean."""
    entries = [LegendEntry(model, COLOURS[i % len(COLOURS)], STATE_RADIUS, STATE_DOT) for i, model in enumerate(models)]
    entries += [LegendEntry("state accuracy", BLACK, STATE_RADIUS, STATE_DOT),
                LegendEntry("whole sequence", BLACK, SEQUENCE_RADIUS, SEQUENCE_DOT)]
    if train_length:
        entries.append(LegendEntry(f"train length {train_length}", GREY, MARKER_RADIUS, 0, MARKER_DASH))
    return entries


def draw_curve(canvas, points, radius, dot, colour):
    """Lines of half width radius through the (x, y) points, a dot of radius dot on each."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        canvas.line(x0, y0, x1, y1, radius, colour)
    for x, y in points:
        canvas.dot(x, y, dot, colour)


def draw_panel(canvas, cell, task, results, x_span, train_length):
    """One task's axes, train-length line and curves in cell = (left, top, right, bottom); x_span = (lo, hi) in
    log2 of the length."""
    k = canvas.scale
    y_ticks = nice_ticks(0, 100)
    left = cell[0] + max(canvas.text_width(label) for _, label in y_ticks) + 24 * k
    top, right, bottom = cell[1] + 22 * k, cell[2] - 14 * k, cell[3] - 30 * k
    to_x = lambda length: left + (math.log2(length) - x_span[0]) / (x_span[1] - x_span[0]) * (right - left)
    to_y = lambda accuracy: bottom - (accuracy + 5) / 110 * (bottom - top)  # 0..100 with 5 spare on both ends
    lengths = sorted(column(results, 2))
    draw_axes(canvas, (left, top, right, bottom), [(to_x(length), str(length)) for length in lengths],
              [(to_y(accuracy), label) for accuracy, label in y_ticks], "group elements (log2)", "accuracy %")
    canvas.text((left + right - canvas.text_width(task)) // 2, cell[1] + 6 * k, task, BLACK)
    if train_length:
        x = round(to_x(train_length))
        canvas.line(x, top + 1, x, bottom - 1, MARKER_RADIUS * k, GREY, MARKER_DASH * k)
    for which, radius, dot in ((1, SEQUENCE_RADIUS, SEQUENCE_DOT), (0, STATE_RADIUS, STATE_DOT)):  # thick on top
        for i, model in enumerate(column(results, 1)):
            points = [(to_x(length), to_y(results[task, model, length][which]))
                      for length in lengths if (task, model, length) in results]
            draw_curve(canvas, points, radius * k, dot * k, COLOURS[i % len(COLOURS)])


def plot(results, path, train_length, title):
    """Panels in rows of up to COLUMNS, the legend right of them vertically centred, the title on top; writes the
    PNG."""
    tasks, lengths = column(results, 0), column(results, 2) + ([train_length] if train_length else [])
    entries = legend_entries(column(results, 1), train_length)
    columns, rows = min(COLUMNS, len(tasks)), math.ceil(len(tasks) / COLUMNS)
    top = (30 if title else 10) * SCALE
    canvas = Canvas(WIDTH, top + rows * ROW_HEIGHT, SCALE)
    legend_width, legend_height = legend_size(canvas, entries)
    panel_width = (WIDTH - legend_width - 20 * SCALE) // columns
    x_span = (math.log2(min(lengths)) - 0.4, math.log2(max(lengths)) + 0.4)  # a dot's room on both ends
    for i, task in enumerate(tasks):
        x, y = i % columns * panel_width, top + i // columns * ROW_HEIGHT
        draw_panel(canvas, (x, y, x + panel_width, y + ROW_HEIGHT), task, results, x_span, train_length)
    if title:
        canvas.text((WIDTH - canvas.text_width(title)) // 2, 10 * SCALE, title, BLACK)
    draw_legend(canvas, entries, WIDTH - legend_width - 10 * SCALE, (top + canvas.height - legend_height) // 2)
    write_png(path, canvas)


def print_table(results):
    """A markdown row per task and model: per length "state (sequence)" accuracy, or "-" where there is none."""
    lengths = sorted(column(results, 2))
    print("| task | model | " + " | ".join(str(length) for length in lengths) + " |")
    print("|---|---|" + "---:|" * len(lengths))
    for task in column(results, 0):
        for model in column(results, 1):
            cells = [results.get((task, model, length)) for length in lengths]
            if any(cells):
                cells = ["-" if cell is None else f"{cell[0]:.1f} ({cell[1]:.1f})" for cell in cells]
                print(f"| {task} | {model} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description="Plots accuracy against sequence length from a benchmark TSV.")
    parser.add_argument("results", metavar="RESULTS.tsv", help="task, model, length, state and sequence accuracy")
    parser.add_argument("-o", "--output", required=True, help="the PNG to write")
    parser.add_argument("--train-length", type=int, help="draws a dashed line at this length")
    parser.add_argument("--title", default="", help="a title above the panels")
    args = parser.parse_args()
    if args.train_length is not None and args.train_length < 1:
        fail("--train-length must be above 0")
    results = read_results(args.results)
    plot(results, args.output, args.train_length, args.title)
    print_table(results)


if __name__ == "__main__":
    main()
