"""Small plotting kit for the scripts here, standard library only: an RGB canvas with a 5x7 bitmap font, a PNG
writer, tick values and axes, and a legend box.

    Canvas(width, height, scale)     fill, dot, line (clipped to canvas.clip; optionally dashed), text, text_width
    write_png(path, canvas)          8-bit RGB PNG
    nice_ticks(lo, hi)               about 8 (value, label) ticks, 1, 2 or 5 times a power of ten apart
    draw_axes(canvas, area, ...)     grid, ticks and labels, the two axes and their titles around a plot area
    LegendEntry, draw_legend         a legend box at a given place
    fail(message)                    "<script>: message" to stderr, exit 1

Sizes given in font pixels (line radii, dots, margins) are multiplied by canvas.scale: a font pixel is scale x scale
image pixels. An area is (left, top, right, bottom) in image pixels.
"""
import collections
import math
import os
import struct
import sys
import zlib

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
BLACK, GREY, LIGHT_GREY, WHITE = (0, 0, 0), (128, 128, 128), (228, 228, 228), (255, 255, 255)

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
    """The message to stderr behind the running script's name, then exit 1."""
    print(f"{os.path.basename(sys.argv[0])}: {message}", file=sys.stderr)
    sys.exit(1)


# ----------------------------------------------------------------------------
# canvas and PNG

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

    def line(self, x0, y0, x1, y1, radius, colour, dash=0):
        """Discs along the segment, cut to the clip rectangle first (so a huge loss costs nothing); dash > 0: dashes
        and gaps of dash pixels each, from the clipped start."""
        segment = clip_segment(x0, y0, x1, y1, self.clip)
        if segment:
            x0, y0, x1, y1 = segment
            n = max(1, math.ceil(max(abs(x1 - x0), abs(y1 - y0))))
            for i in range(n + 1):
                if not dash or i // dash % 2 == 0:
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
# axes

def nice_ticks(lo, hi, smallest=0.0):
    """At most about 8 (value, label) ticks in [lo, hi], 1, 2 or 5 times a power of ten apart, at least smallest."""
    raw = (hi - lo) / 8
    power = 10 ** math.floor(math.log10(raw))
    step = max(smallest, next(m * power for m in (1, 2, 5, 10) if m * power >= raw))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [(i * step, f"{i * step:.{decimals}f}") for i in range(first, last + 1)]


def draw_axes(canvas, area, x_ticks, y_ticks, x_title, y_title):
    """Grid lines, ticks and their labels at the (pixel, label) ticks, the two axes and their titles. The y title
    reads upward 20 font pixels left of the widest y label: leave the area that much room (24 and the label width)."""
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
    canvas.text((left + right - canvas.text_width(x_title)) // 2, bottom + 18 * k, x_title, BLACK)
    y_title_x = left - 20 * k - max((canvas.text_width(label) for _, label in y_ticks), default=0)
    canvas.text(y_title_x, (top + bottom + canvas.text_width(y_title)) // 2, y_title, BLACK, upward=True)


# ----------------------------------------------------------------------------
# legend

# One legend row: a sample of a curve (colour, half line width, dot radius or 0, dash length or 0: all but the colour
# in font pixels) and its text.
LegendEntry = collections.namedtuple("LegendEntry", "text colour radius dot dash", defaults=(0, 0))


def legend_size(canvas, entries):
    """(width, height) of the legend box of the entries."""
    k = canvas.scale
    return 28 * k + max(canvas.text_width(entry.text) for entry in entries), (10 * len(entries) + 5) * k


def draw_legend(canvas, entries, x, y):
    """The legend box with its top-left corner at (x, y): per entry a sample of its curve, then its text."""
    k = canvas.scale
    width, height = legend_size(canvas, entries)
    canvas.fill(x, y, width, height, GREY)
    canvas.fill(x + 1, y + 1, width - 2, height - 2, WHITE)
    for i, entry in enumerate(entries):
        row = y + (4 + 10 * i) * k
        canvas.line(x + 4 * k, row + 3 * k, x + 20 * k, row + 3 * k, entry.radius * k, entry.colour, entry.dash * k)
        if entry.dot:
            canvas.dot(x + 12 * k, row + 3 * k, entry.dot * k, entry.colour)
        canvas.text(x + 24 * k, row, entry.text, BLACK)
