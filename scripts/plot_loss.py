#!/usr/bin/env python3
"""Plots the train and val loss of train_m2rnn runs into a PNG, and prints their val losses as a table.

Usage:

    python3 scripts/plot_loss.py -o out.png LOG[:LABEL] [LOG[:LABEL] ...] [--title TEXT] [--width 1000] [--height 600]

LOG is a train.log or a directory holding one; LABEL defaults to the log's directory name. Read are the lines
"step N/M train_loss X ..." and "step N val_loss X"; all other lines, sample blocks (from a line "step N sample (...):"
to a line "---") and nan or inf losses are skipped. A step logged twice (a resumed run appended) keeps its last
value. One colour per run: the train loss as a thin line, a trailing moving average over ~1% of its steps; the val
loss as a thick line with dots; the legend goes where it hides the least. The y axis leaves out the first steps: the
top 2% of the smoothed train loss and each run's first val point (the untrained model) may lie above it. stdout gets
every run's val loss at every val step, then a row final_train: the smoothed train loss at each run's last step.
Standard library only: the PNG and its 5x7 font are made here.
"""
import argparse
import math
import os
import re
import struct
import sys
import zlib

LOSS = r"(-?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf))"
TRAIN_LINE = re.compile(rf"step (\d+)/\d+ train_loss {LOSS} ")
VAL_LINE = re.compile(rf"step (\d+) val_loss {LOSS}\s*$")
SAMPLE_LINE = re.compile(r"step \d+ sample \(")

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
BLACK, GREY, LIGHT_GREY, WHITE = (0, 0, 0), (128, 128, 128), (228, 228, 228), (255, 255, 255)
TRAIN_RADIUS, VAL_RADIUS, DOT_RADIUS = 0.25, 0.75, 2  # half line widths and the val dots', in font pixels

# 5x7 bitmap font: 7 rows top to bottom, 2 hex digits a row, bit 4 the leftmost pixel. Other characters draw as '?'.
FONT = {
    "0": "0E11131519110E", "1": "040C040404040E", "2": "0E11010204081F", "3": "1F02040201110E", "4": "02060A121F0202",
    "5": "1F101E0101110E", "6": "0608101E11110E", "7": "1F010204080808", "8": "0E11110E11110E", "9": "0E11110F01020C",
    "A": "0E1111111F1111", "B": "1E11111E11111E", "C": "0E11101010110E", "D": "1C12111111121C", "E": "1F10101E10101F",
    "F": "1F10101E101010", "G": "0E11101711110F", "H": "1111111F111111", "I": "0E04040404040E", "J": "0702020202120C",
    "K": "11121418141211", "L": "1010101010101F", "M": "111B1515111111", "N": "11111915131111", "O": "0E11111111110E",
    "P": "1E11111E101010", "Q": "0E11111115120D", "R": "1E11111E141211", "S": "0F10100E01011E", "T": "1F040404040404",
    "U": "1111111111110E", "V": "11111111110A04", "W": "1111111515150A", "X": "11110A040A1111", "Y": "1111110A040404",
    "Z": "1F01020408101F", "a": "00000E010F110F", "b": "1010161911111E", "c": "00000E1010110E", "d": "01010D1311110F",
    "e": "00000E111F100E", "f": "0609081C080808", "g": "000F11110F010E", "h": "10101619111111", "i": "04000C0404040E",
    "j": "0200060202120C", "k": "10101214181412", "l": "0C04040404040E", "m": "00001A15151111", "n": "00001619111111",
    "o": "00000E1111110E", "p": "00001E111E1010", "q": "00000D130F0101", "r": "00001619101010", "s": "00000E100E011E",
    "t": "08081C08080906", "u": "0000111111130D", "v": "00001111110A04", "w": "0000111115150A", "x": "0000110A040A11",
    "y": "000011110F010E", "z": "00001F0204081F", ".": "00000000000C0C", ",": "000000000C0408", ":": "000C0C000C0C00",
    "-": "0000001F000000", "_": "0000000000001F", "/": "00010204081000", "(": "02040808080402", ")": "08040202020408",
    "%": "18190204081303", "+": "0004041F040400", "=": "00001F001F0000", "?": "0E110102040004", " ": "00000000000000",
}


def fail(message):
    print(f"plot_loss.py: {message}", file=sys.stderr)
    sys.exit(1)


# ----------------------------------------------------------------------------
# reading the logs

def read_log(path):
    """The train and val losses of a train.log, each as {step: loss}; a step logged again keeps its last value."""
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    train, val = {}, {}
    sample = False  # in a "step N sample (...):" block of generated text, which ends at a line "---"
    for line in lines:
        if SAMPLE_LINE.match(line):
            sample = True
        elif sample and line.rstrip("\n") == "---":
            sample = False
            continue
        for pattern, losses in ((TRAIN_LINE, train), (VAL_LINE, val)):
            match = None if sample else pattern.match(line)
            if match:
                losses[int(match[1])] = float(match[2])
    train, val = ({step: loss for step, loss in losses.items() if math.isfinite(loss)} for losses in (train, val))
    if not train and not val:
        fail(f"{path}: no lines 'step N/M train_loss X' or 'step N val_loss X' with a finite loss X")
    return train, val


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
        self.label = label or os.path.basename(os.path.dirname(os.path.abspath(path)))
        train, self.val = read_log(path)
        self.steps = sorted(train)
        self.window = max(1, round(len(self.steps) / 100))
        self.smooth = moving_average([train[step] for step in self.steps], self.window)


# ----------------------------------------------------------------------------
# drawing

def clip_segment(x0, y0, x1, y1, rect):
    """The part of the segment inside rect = (left, top, right, bottom) (Liang-Barsky), or None."""
    t0, t1, dx, dy = 0.0, 1.0, x1 - x0, y1 - y0
    for p, q in ((-dx, x0 - rect[0]), (dx, rect[2] - x0), (-dy, y0 - rect[1]), (dy, rect[3] - y0)):
        if p == 0:
            if q < 0:
                return None
        elif p < 0:
            t0 = max(t0, q / p)
        else:
            t1 = min(t1, q / p)
    return (x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy) if t0 <= t1 else None


class Canvas:
    """An RGB image; all drawing is cut to the clip rectangle (left, top, right, bottom), the whole image at first."""

    def __init__(self, width, height, scale):
        self.width, self.height, self.scale = width, height, scale  # scale: font pixels are scale x scale
        self.pixels = bytearray(b"\xff" * (3 * width * height))
        self.clip = (0, 0, width, height)

    def fill(self, x, y, w, h, colour):
        left, top = max(x, self.clip[0]), max(y, self.clip[1])
        right, bottom = min(x + w, self.clip[2]), min(y + h, self.clip[3])
        for row in range(top, bottom if right > left else top):
            start = 3 * (row * self.width + left)
            self.pixels[start:start + 3 * (right - left)] = bytes(colour) * (right - left)

    def dot(self, x, y, radius, colour):
        """A filled disc centred at (x, y); radius 0.5 is one pixel, 1.5 three by three."""
        cx, cy = round(x), round(y)
        for dy in range(-int(radius), int(radius) + 1):
            half = int(math.sqrt(radius * radius - dy * dy))
            self.fill(cx - half, cy + dy, 2 * half + 1, 1, colour)

    def line(self, x0, y0, x1, y1, radius, colour):
        """Discs along the segment, cut to the clip rectangle first (so a huge loss costs nothing)."""
        segment = clip_segment(x0, y0, x1, y1, self.clip)
        if segment:
            x0, y0, x1, y1 = segment
            n = max(1, math.ceil(max(abs(x1 - x0), abs(y1 - y0))))
            for i in range(n + 1):
                self.dot(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n, radius, colour)

    def text_width(self, text):
        return (6 * len(text) - 1) * self.scale

    def text(self, x, y, text, colour, upward=False):
        """text with its top-left corner at (x, y); upward: turned to read bottom to top, starting at (x, y)."""
        k = self.scale
        for i, char in enumerate(text):
            glyph = FONT.get(char, FONT["?"])
            for row in range(7):
                bits = int(glyph[2 * row:2 * row + 2], 16)
                for col in range(5):
                    along, down = (6 * i + col) * k, row * k
                    if bits >> (4 - col) & 1:
                        self.fill(*((x + down, y - along - k) if upward else (x + along, y + down)), k, k, colour)


def write_png(path, canvas):
    """The canvas as an 8-bit RGB PNG: every row behind filter byte 0 (none), all rows in one zlib-compressed IDAT."""
    stride = 3 * canvas.width
    raw = b"".join(b"\0" + canvas.pixels[y * stride:(y + 1) * stride] for y in range(canvas.height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)  # 8 bits, colour type 2: RGB
    try:
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) +
                    chunk(b"IEND", b""))
    except OSError as e:
        fail(f"{path}: {e.strerror}")


# ----------------------------------------------------------------------------
# the plot

def nice_ticks(lo, hi, smallest=0.0):
    """At most about 8 (value, label) ticks in [lo, hi], 1, 2 or 5 times a power of ten apart, at least smallest."""
    raw = (hi - lo) / 8
    power = 10 ** math.floor(math.log10(raw))
    step = max(smallest, next(m * power for m in (1, 2, 5, 10) if m * power >= raw))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [(i * step, f"{i * step:.{decimals}f}") for i in range(first, last + 1)]


def data_ranges(runs):
    """x_hi, (y_lo, y_hi): x runs to the last step; y spans every loss but the first steps' (see the top), padded 5%."""
    lows, highs = [], []
    for run in runs:
        val = [run.val[step] for step in sorted(run.val)]
        lows += val
        highs += val[1:] if run.smooth and len(val) > 1 else val
        if run.smooth:
            lows.append(min(run.smooth))
            highs.append(sorted(run.smooth)[int(0.98 * (len(run.smooth) - 1))])
    pad = 0.05 * (max(highs) - min(lows)) or 0.5
    last_step = max(step for run in runs for step in run.steps + list(run.val))
    return max(last_step, 1), (min(lows) - pad, max(highs) + pad)


def draw_axes(canvas, area, x_ticks, y_ticks):
    """Grid lines, ticks and their labels at the (pixel, label) ticks, the two axes and their titles."""
    k, (left, top, right, bottom) = canvas.scale, area
    for x, label in x_ticks:
        canvas.fill(round(x), top, 1, bottom - top, LIGHT_GREY)
        canvas.fill(round(x), bottom, 1, 4 * k, BLACK)
        canvas.text(round(x) - canvas.text_width(label) // 2, bottom + 6 * k, label, BLACK)
    for y, label in y_ticks:
        canvas.fill(left, round(y), right - left, 1, LIGHT_GREY)
        canvas.fill(left - 4 * k, round(y), 4 * k, 1, BLACK)
        canvas.text(left - 6 * k - canvas.text_width(label), round(y) - 3 * k, label, BLACK)
    canvas.fill(left, top, 1, bottom - top + 1, BLACK)
    canvas.fill(left, bottom, right - left + 1, 1, BLACK)
    canvas.text((left + right - canvas.text_width("step")) // 2, bottom + 18 * k, "step", BLACK)
    canvas.text(4 * k, (top + bottom + canvas.text_width("loss")) // 2, "loss", BLACK, upward=True)


def draw_run(canvas, area, run, colour, to_xy):
    """One run's train and val curves, cut to the plot area; returns its legend entries (text, colour, is_val)."""
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
    average = f" (avg {run.window})" if run.window > 1 else ""
    entries = [(f"{run.label} train{average}", colour, False)] if train else []
    return entries + ([(f"{run.label} val", colour, True)] if val else [])


def covered_pixels(canvas, x, y, w, h):
    """How many pixels of the box are drawn in (neither background nor grid)."""
    count = 0
    for row in range(y, y + h):
        line = canvas.pixels[3 * (row * canvas.width + x):3 * (row * canvas.width + x + w)]
        count += sum(1 for i in range(0, len(line), 3) if tuple(line[i:i + 3]) not in (WHITE, LIGHT_GREY))
    return count


def draw_legend(canvas, entries, area):
    """A box in the corner of the plot area that hides the fewest drawn pixels: per (text, colour, is_val) entry a
    sample of its line, then the text."""
    k = canvas.scale
    left, top, right, bottom = area
    width, height = 28 * k + max(canvas.text_width(text) for text, _, _ in entries), (10 * len(entries) + 5) * k
    corners = [(right - 6 * k - width, top + 6 * k), (right - 6 * k - width, bottom - 6 * k - height),
               ((left + right - width) // 2, top + 6 * k), (left + 6 * k, top + 6 * k)]
    x, y = min(corners, key=lambda c: covered_pixels(canvas, c[0], c[1], width, height))
    canvas.fill(x, y, width, height, GREY)
    canvas.fill(x + 1, y + 1, width - 2, height - 2, WHITE)
    for i, (text, colour, is_val) in enumerate(entries):
        row = y + (4 + 10 * i) * k
        canvas.line(x + 4 * k, row + 3 * k, x + 20 * k, row + 3 * k, (VAL_RADIUS if is_val else TRAIN_RADIUS) * k,
                    colour)
        if is_val:
            canvas.dot(x + 12 * k, row + 3 * k, DOT_RADIUS * k, colour)
        canvas.text(x + 24 * k, row, text, BLACK)


def plot(runs, path, width, height, title):
    """Lays out the plot area around the tick labels, draws the axes, the runs and the legend, writes the PNG."""
    canvas = Canvas(width, height, max(1, min(width // 500, height // 300)))  # font scale 2 at 1000 x 600
    k = canvas.scale
    x_hi, (y_lo, y_hi) = data_ranges(runs)
    x_ticks, y_ticks = nice_ticks(0, x_hi, 1), nice_ticks(y_lo, y_hi)
    left, top = max(canvas.text_width(label) for _, label in y_ticks) + 24 * k, 30 * k if title else 10 * k
    right, bottom = width - canvas.text_width(x_ticks[-1][1]) // 2 - 10 * k, height - 30 * k
    to_xy = lambda step, loss: (left + step / x_hi * (right - left),
                                bottom - (loss - y_lo) / (y_hi - y_lo) * (bottom - top))
    draw_axes(canvas, (left, top, right, bottom), [(to_xy(step, y_lo)[0], label) for step, label in x_ticks],
              [(to_xy(0, loss)[1], label) for loss, label in y_ticks])
    if title:
        canvas.text((width - canvas.text_width(title)) // 2, 10 * k, title, BLACK)
    entries = []
    for i, run in enumerate(runs):
        entries += draw_run(canvas, (left, top, right, bottom), run, COLOURS[i % len(COLOURS)], to_xy)
    draw_legend(canvas, entries, (left, top, right, bottom))
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
    parser.add_argument("--title", default="", help="a title above the plot")
    parser.add_argument("--width", type=int, default=1000, help="in pixels, at least 400")
    parser.add_argument("--height", type=int, default=600, help="in pixels, at least 300")
    args = parser.parse_args()
    if args.width < 400 or args.height < 300:
        fail("--width must be at least 400 and --height at least 300")
    runs = [Run(arg) for arg in args.logs]
    plot(runs, args.output, args.width, args.height, args.title)
    print_table(runs)


if __name__ == "__main__":
    main()
