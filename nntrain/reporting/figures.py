"""Figures rendered to RGB arrays: PNG files for nntrain-eval, images for TensorBoard.

The figures are drawn with Pillow, not matplotlib. A training run draws them at its very end and
waits for them: importing matplotlib and laying out one figure took 0.6-0.9 s there, a large part
of a short run's start-up budget (a one-step run must take at most 1.2x the time of
`import torch, torchvision`). Pillow comes with torchvision, imports in a few tens of
milliseconds and draws each figure here in about as long. The figures are simple (a heat map,
class regions under a scatter, a mosaic, bars), so laying them out by hand is little code.

Every public function returns an (H, W, 3) uint8 array. Text uses the TrueType font bundled with
Pillow (`ImageFont.load_default(size=...)`), so a figure looks the same on every machine; that
font covers unaccented Latin letters, digits and punctuation, other characters draw as boxes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_ANNOTATED_CLASSES = 30  # beyond this, per-cell counts and class-name ticks become unreadable
MAX_GRID_IMAGES = 32

Colour = tuple[int, int, int]
WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)
FRAME: Colour = (190, 190, 190)  # light grey for legend and tile frames
# matplotlib's tab:blue, tab:green and tab:red, the colours its users know from its figures.
RIGHT_GREEN: Colour = (44, 160, 44)
WRONG_RED: Colour = (214, 39, 40)


def _hex_colours(*codes: str) -> np.ndarray:
    """("#rrggbb", ...) as a (len, 3) uint8 table."""
    return np.array([[int(code[i : i + 2], 16) for i in (1, 3, 5)] for code in codes], np.uint8)


# matplotlib's "Blues" (ColorBrewer's 9-class sequential blues), white to dark blue, and its
# categorical tab10 / tab20 palettes, copied so that the figures keep the colours users know.
BLUES = _hex_colours(
    "#f7fbff",
    "#deebf7",
    "#c6dbef",
    "#9dcae1",
    "#6aaed6",
    "#4191c6",
    "#2070b4",
    "#08509b",
    "#08306b",
)
TAB10 = _hex_colours(
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
TAB20 = _hex_colours(
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
    "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
)  # fmt: skip

# Font sizes in pixels (matplotlib's default 10 pt at 100 dpi is about 14 px).
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, SMALL_SIZE = 16, 14, 13, 12
PAD = 12  # blank border around every figure


# ---------------------------------------------------------------------------------------------
# Small drawing helpers


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    # load_default(size) parses the bundled font each time: keep one per size.
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def _text_size(text: str, size: int) -> tuple[int, int]:
    """Width and height of one line of text. The height is the font's ascent + descent, not the
    ink's, so that labels with and without descenders ("g", "a") line up the same."""
    font = _font(size)
    ascent, descent = font.getmetrics()
    return math.ceil(font.getlength(text)), ascent + descent


def _widest(texts: Sequence[str], size: int) -> int:
    return max((_text_size(text, size)[0] for text in texts), default=0)


def _text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    size: int,
    fill: Colour = BLACK,
    anchor: str = "mm",
) -> None:
    """Text placed by a Pillow anchor: "mm" centres it on xy, "lm" starts it there, "rm" ends it
    there, "mt" hangs it below xy, "ms" sets it on xy as the baseline, and so on."""
    draw.text(xy, text, font=_font(size), fill=fill, anchor=anchor)


def _rotated_text(
    canvas: Image.Image,
    xy: tuple[float, float],
    text: str,
    size: int,
    angle: float,
    fill: Colour = BLACK,
    anchor: str = "mm",
) -> None:
    """Text turned counter-clockwise by angle degrees. Pillow cannot draw rotated text, so the
    text is drawn as a mask on its own image, rotated, and stamped in the fill colour. anchor
    places the bounding box of the rotated text: l / m / r horizontally, then t / m / b."""
    width, height = _text_size(text, size)
    mask = Image.new("L", (width + 2, height), 0)
    ImageDraw.Draw(mask).text((1, 0), text, font=_font(size), fill=255, anchor="la")
    mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    x = xy[0] - {"l": 0, "m": mask.width / 2, "r": mask.width}[anchor[0]]
    y = xy[1] - {"t": 0, "m": mask.height / 2, "b": mask.height}[anchor[1]]
    canvas.paste(fill, (round(x), round(y)), mask)


def _rotated_extent(texts: Sequence[str], size: int, angle: float) -> tuple[int, int]:
    """Width and height of the bounding box of the widest of texts once rotated by angle."""
    width, height = _widest(texts, size), _text_size("Ag", size)[1]
    cos, sin = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    return math.ceil(width * cos + height * sin), math.ceil(width * sin + height * cos)


def _interpolate(anchors: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Colours at positions t in [0, 1] along evenly spaced anchor colours: (*t.shape, 3) uint8.
    A colour map from a handful of anchors, linear in RGB between them, as matplotlib's are."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0, 1)
    stops = np.linspace(0, 1, len(anchors))
    channels = [np.interp(t, stops, anchors[:, c].astype(np.float64)) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def _is_dark(rgb: Sequence[int]) -> bool:
    """Whether white text reads better than black on this colour (perceived luminance)."""
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 128


def _class_colours(count: int) -> np.ndarray:
    """(count, 3) uint8 RGB: tab10 (tab20 beyond 10 classes), repeated if needed."""
    palette = TAB10 if count <= 10 else TAB20
    return palette[np.arange(count) % len(palette)]


@functools.cache
def _disc(colour: Colour, radius: int = 4) -> Image.Image:
    """An RGBA scatter marker: a filled circle with a 1 px white edge, anti-aliased by drawing it
    4x larger and shrinking it (Pillow's own ellipses have jagged edges)."""
    scale, side = 4, 2 * radius + 1
    big = side * scale
    # Transparent white, not transparent black: shrinking averages the colour channels too,
    # and black there would darken the circle's rim.
    marker = Image.new("RGBA", (big, big), (*WHITE, 0))
    draw = ImageDraw.Draw(marker)
    draw.ellipse((0, 0, big - 1, big - 1), fill=(*WHITE, 255))
    draw.ellipse((scale, scale, big - 1 - scale, big - 1 - scale), fill=(*colour, 255))
    return marker.reduce(scale)


def _stamp(canvas: Image.Image, sprite: Image.Image, centre: tuple[float, float]) -> None:
    """Paste an RGBA sprite centred on a point, blending its edges into what is below."""
    x, y = round(centre[0] - sprite.width / 2), round(centre[1] - sprite.height / 2)
    canvas.paste(sprite, (x, y), sprite)


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About count round values (1, 2, 2.5 or 5 times a power of ten apart) within [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return [i * step for i in range(first, last + 1)]


def _tick_label(value: float) -> str:
    # round() drops float noise such as 0.30000000000000004; "g" drops trailing zeros.
    return f"{round(value, 10):g}"


def _short(name: str, length: int = 12) -> str:
    return name if len(name) <= length else name[: length - 1] + "…"


def _to_array(canvas: Image.Image) -> np.ndarray:
    return np.asarray(canvas.convert("RGB"), dtype=np.uint8).copy()


# ---------------------------------------------------------------------------------------------
# Figures


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 image as a PNG, creating the parent folder; return the path."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")
    return path


def confusion_matrix_image(
    matrix: np.ndarray, class_names: Sequence[str], title: str = "confusion matrix"
) -> np.ndarray:
    """Rows are the true class, columns the predicted class; counts (or rates) in the cells.

    Cells run from white (0) to dark blue (the largest entry), with a colour bar beside. Up to
    MAX_ANNOTATED_CLASSES classes every cell shows its count (or its rate, 2 decimals, for a
    float matrix) and the axes show class names; beyond, the axes show class indices only.
    """
    matrix = np.asarray(matrix)
    n = len(class_names)
    if n == 0 or matrix.shape != (n, n):
        raise ValueError(f"matrix has shape {matrix.shape}, expected ({n}, {n}) for the classes")
    integral = np.issubdtype(matrix.dtype, np.integer) or bool(np.all(matrix == np.round(matrix)))

    def number(value: float) -> str:
        return f"{int(value)}" if integral else f"{value:.2f}"

    finite = matrix[np.isfinite(matrix)]
    vmax = max(float(finite.max()) if finite.size else 0.0, 1e-12)
    colours = _interpolate(BLUES, np.nan_to_num(matrix.astype(np.float64) / vmax))
    # The matrix grows with the classes (about 50 px cells for 10) but stays within 960 px.
    cell = max(1, min(120, int(np.clip(40 * n + 120, 240, 960)) // n))
    side = cell * n

    annotate = n <= MAX_ANNOTATED_CLASSES
    if annotate:
        ticks = [(i, _short(str(name), 20)) for i, name in enumerate(class_names)]
        xlabel, ylabel = "predicted", "true"
    else:
        ticks = [(int(i), str(int(i))) for i in _nice_ticks(0, n - 1, count=8)]
        xlabel, ylabel = "predicted (class index)", "true (class index)"
    labels = [text for _, text in ticks]
    rotate = annotate and max(len(text) for text in labels) > 3  # long names would overlap
    label_h = _text_size(xlabel, LABEL_SIZE)[1]
    tick_h = _text_size("0", TICK_SIZE)[1]
    xtick_w, xtick_h = _rotated_extent(labels, TICK_SIZE, 45) if rotate else (0, tick_h)
    bar_labels = [number(0), number(vmax)]

    # Layout, left to right: y label, tick labels, matrix, colour bar, its labels.
    left = PAD + label_h + 8 + _widest(labels, TICK_SIZE) + 8
    left = max(left, PAD + xtick_w - cell // 2)  # room for the first rotated x label
    top = PAD + _text_size(title, TITLE_SIZE)[1] + 10
    bar_x, bar_w = left + side + 20, 18
    width = max(
        bar_x + bar_w + 8 + _widest(bar_labels, TICK_SIZE) + PAD,
        _text_size(title, TITLE_SIZE)[0] + 2 * PAD,
    )
    height = top + side + 6 + xtick_h + 8 + label_h + PAD
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)

    # One pixel per cell, enlarged without smoothing: every cell is exactly cell x cell pixels.
    cells = Image.fromarray(colours).resize((side, side), Image.Resampling.NEAREST)
    canvas.paste(cells, (left, top))
    draw.rectangle((left - 1, top - 1, left + side, top + side), outline=BLACK)
    if annotate:
        _annotate_cells(
            draw, [number(value) for value in matrix.ravel()], colours, (left, top), cell
        )

    below = top + side + 1
    for index, text in ticks:
        x, y = left + index * cell + cell / 2, top + index * cell + cell / 2
        draw.line((x, below, x, below + 3), fill=BLACK)
        draw.line((left - 4, y, left - 2, y), fill=BLACK)
        _text(draw, (left - 6, y), text, TICK_SIZE, anchor="rm")
        if rotate:
            # Like matplotlib: the rotated name ends under its column, reading up to the right.
            _rotated_text(canvas, (x + 0.35 * tick_h, below + 5), text, TICK_SIZE, 45, anchor="rt")
        else:
            _text(draw, (x, below + 5), text, TICK_SIZE, anchor="mt")
    _text(draw, (left + side / 2, height - PAD), xlabel, LABEL_SIZE, anchor="md")
    _rotated_text(canvas, (PAD, top + side / 2), ylabel, LABEL_SIZE, 90, anchor="lm")
    # Centred over the matrix, as matplotlib places an axes title, but never past an edge.
    title_half = _text_size(title, TITLE_SIZE)[0] / 2
    title_x = min(max(left + side / 2, PAD + title_half), width - PAD - title_half)
    _text(draw, (title_x, PAD), title, TITLE_SIZE, anchor="mt")

    _draw_colour_bar(canvas, (bar_x, top, bar_w, side), bar_labels)
    return _to_array(canvas)


def _annotate_cells(
    draw: ImageDraw.ImageDraw,
    texts: list[str],
    colours: np.ndarray,
    origin: tuple[int, int],
    cell: int,
) -> None:
    """Each cell's number, in the largest font up to 14 px whose widest number fits a cell,
    white on dark cells."""
    n, (left, top) = colours.shape[0], origin
    cell_size = next((s for s in range(14, 6, -1) if _widest(texts, s) <= cell - 6), 7)
    for (row, col), text in zip(np.ndindex(n, n), texts, strict=True):
        fill = WHITE if _is_dark(colours[row, col].tolist()) else BLACK
        centre = (left + col * cell + cell / 2, top + row * cell + cell / 2)
        _text(draw, centre, text, cell_size, fill)


def _draw_colour_bar(
    canvas: Image.Image, box: tuple[int, int, int, int], labels: Sequence[str]
) -> None:
    """The colour bar in box (x, y, width, height): labels[1] (the largest value) at the top,
    labels[0] (zero) at the bottom, as the cells are coloured."""
    bar_x, top, bar_w, side = box
    draw = ImageDraw.Draw(canvas)
    gradient = _interpolate(BLUES, np.linspace(1, 0, side))[:, None, :]
    canvas.paste(
        Image.fromarray(gradient).resize((bar_w, side), Image.Resampling.NEAREST), (bar_x, top)
    )
    draw.rectangle((bar_x - 1, top - 1, bar_x + bar_w, top + side), outline=BLACK)
    for y, text in ((top, labels[1]), (top + side - 1, labels[0])):
        draw.line((bar_x + bar_w, y, bar_x + bar_w + 3, y), fill=BLACK)
        _text(draw, (bar_x + bar_w + 6, y), text, TICK_SIZE, anchor="lm")


def decision_boundary_image(
    predict: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    feature_names: Sequence[str] = ("x", "y"),
    resolution: int = 200,
) -> np.ndarray:
    """Predicted class regions over the points' range (10 % margin), the points on top.

    predict gets an (resolution**2, 2) float32 array of raw feature values and returns the
    (resolution**2,) integer class predictions (a model wrapper does any standardisation).
    The regions are the class colours faded; the points are dots in their true class's colour;
    a legend beside the plot names the classes.
    """
    points, labels = np.asarray(points, dtype=np.float64), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(labels) != len(points):
        raise ValueError(f"expected (N, 2) points and N labels, got {points.shape}, {labels.shape}")
    low, high, regions = _predicted_regions(predict, points, resolution)

    k = len(class_names)
    colours = _class_colours(k)
    faded = np.rint(0.35 * colours + 0.65 * 255).astype(np.uint8)  # the class colour, faded
    # Out-of-range predictions take the nearest class's colour, as a clipped colour map would.
    region_colours = faded[np.clip(regions.astype(np.int64), 0, k - 1)]

    plot_w, plot_h = 440, 360
    x_ticks, y_ticks = _nice_ticks(low[0], high[0]), _nice_ticks(low[1], high[1])
    y_tick_labels = [_tick_label(v) for v in y_ticks]
    names = [_short(str(name), 16) for name in class_names]
    label_h = _text_size("x", LABEL_SIZE)[1]
    tick_h = _text_size("0", TICK_SIZE)[1]
    row_h, marker = 18, _disc(WHITE)
    rows = max(1, min(k, (plot_h - 8) // row_h))
    legend_columns = -(-k // rows)  # several columns when the classes overflow the plot height
    column_w = marker.width + 6 + _widest(names, SMALL_SIZE) + 10
    legend_w, legend_h = legend_columns * column_w + 6, rows * row_h + 8

    left = PAD + label_h + 8 + _widest(y_tick_labels, TICK_SIZE) + 8
    top = PAD + _text_size("decision boundary", TITLE_SIZE)[1] + 10
    legend_x = left + plot_w + 14
    width = legend_x + legend_w + PAD
    height = top + plot_h + 6 + tick_h + 8 + label_h + PAD
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)

    def to_pixel(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature values to pixels within the plot. Row 0 of the regions is the lowest y:
        images grow downwards, the y axis upwards."""
        return (
            (x - low[0]) / (high[0] - low[0]) * plot_w,
            (1 - (y - low[1]) / (high[1] - low[1])) * plot_h,
        )

    plot = Image.fromarray(region_colours[::-1]).resize((plot_w, plot_h), Image.Resampling.NEAREST)
    px, py = to_pixel(points[:, 0], points[:, 1])
    for index in range(k):  # class by class, so a later class's dots lie over an earlier one's
        sprite = _disc(tuple(int(c) for c in colours[index]))
        for x, y in zip(px[labels == index], py[labels == index], strict=True):
            _stamp(plot, sprite, (x, y))  # on the plot, so that dots at its border are clipped
    canvas.paste(plot, (left, top))
    draw.rectangle((left - 1, top - 1, left + plot_w, top + plot_h), outline=BLACK)

    tick_x, _ = to_pixel(np.array(x_ticks), np.zeros(len(x_ticks)))
    _, tick_y = to_pixel(np.zeros(len(y_ticks)), np.array(y_ticks))
    _draw_ticks(
        draw, (left, top, plot_w, plot_h), tick_x + left, x_ticks, tick_y + top, y_tick_labels
    )
    _text(draw, (left + plot_w / 2, height - PAD), str(feature_names[0]), LABEL_SIZE, anchor="md")
    _rotated_text(
        canvas, (PAD, top + plot_h / 2), str(feature_names[1]), LABEL_SIZE, 90, anchor="lm"
    )
    _text(draw, (left + plot_w / 2, PAD), "decision boundary", TITLE_SIZE, anchor="mt")

    draw.rectangle((legend_x, top, legend_x + legend_w, top + legend_h), outline=FRAME)
    for index, name in enumerate(names):
        column, row = divmod(index, rows)
        x = legend_x + 6 + column * column_w
        y = top + 4 + row * row_h + row_h / 2
        _stamp(canvas, _disc(tuple(int(c) for c in colours[index])), (x + marker.width / 2, y))
        _text(draw, (x + marker.width + 6, y), name, SMALL_SIZE, anchor="lm")
    return _to_array(canvas)


def _draw_ticks(
    draw: ImageDraw.ImageDraw,
    plot: tuple[int, int, int, int],
    tick_x: np.ndarray,
    x_values: Sequence[float],
    tick_y: np.ndarray,
    y_labels: Sequence[str],
) -> None:
    """Tick marks and labels below and left of the plot (left, top, width, height)."""
    left, top, _, plot_h = plot
    for x, value in zip(tick_x, x_values, strict=True):
        draw.line((x, top + plot_h, x, top + plot_h + 3), fill=BLACK)
        _text(draw, (x, top + plot_h + 6), _tick_label(value), TICK_SIZE, anchor="mt")
    for y, text in zip(tick_y, y_labels, strict=True):
        draw.line((left - 4, y, left - 1, y), fill=BLACK)
        _text(draw, (left - 6, y), text, TICK_SIZE, anchor="rm")


def _predicted_regions(
    predict: Callable[[np.ndarray], np.ndarray], points: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plotted range (the points' with a 10 % margin) and the predicted class over a
    resolution x resolution grid of it (row 0: the lowest y)."""
    low, high = points.min(axis=0), points.max(axis=0)
    margin = 0.1 * np.where(high > low, high - low, 1.0)  # a flat axis still gets some width
    low, high = low - margin, high + margin
    xs = np.linspace(low[0], high[0], resolution)
    ys = np.linspace(low[1], high[1], resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)
    grid = np.column_stack([grid_x.ravel(), grid_y.ravel()]).astype(np.float32)
    return low, high, np.asarray(predict(grid)).reshape(resolution, resolution)


def image_grid(
    images: np.ndarray, true: Sequence[str], predicted: Sequence[str], columns: int = 8
) -> np.ndarray:
    """Sample images titled "pred / true" (green when right, red when wrong); at most 32.

    Small images are enlarged by a whole factor without smoothing (to about 96 px), so each of
    their pixels stays a sharp square; large ones are shrunk to fit 128 px.
    """
    images = np.asarray(images)[:MAX_GRID_IMAGES]
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"expected (N, C, H, W) images with C = 1 or 3, got {images.shape}")
    n = len(images)
    if len(true) < n or len(predicted) < n:
        raise ValueError(f"need {n} true and predicted names, got {len(true)}, {len(predicted)}")
    if images.dtype == np.uint8:
        pixels = images
    else:
        pixels = np.rint(np.clip(images.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    pixels = pixels.transpose(0, 2, 3, 1)  # (N, H, W, C)
    if pixels.shape[3] == 1:
        pixels = np.repeat(pixels, 3, axis=3)
    height, width = pixels.shape[1:3]
    scale = max(1, 96 // max(height, width))
    tiles = [Image.fromarray(np.ascontiguousarray(image)) for image in pixels]
    if scale > 1:
        tiles = [
            tile.resize((width * scale, height * scale), Image.Resampling.NEAREST) for tile in tiles
        ]
    elif max(height, width) > 128:
        shrink = 128 / max(height, width)
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        tiles = [tile.resize(size, Image.Resampling.LANCZOS) for tile in tiles]
    tile_w, tile_h = tiles[0].size

    titles = [f"{_short(predicted[i])} / {_short(true[i])}" for i in range(n)]
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    title_h = _text_size("Ag", SMALL_SIZE)[1]
    column_w = max(tile_w, _widest(titles, SMALL_SIZE)) + 12
    row_h = title_h + 4 + tile_h + 12
    top = PAD + _text_size("predicted / true", LABEL_SIZE)[1] + 10
    width = 2 * PAD + columns * column_w
    canvas = Image.new("RGB", (width, top + rows * row_h + PAD - 12), WHITE)
    draw = ImageDraw.Draw(canvas)
    _text(draw, (width / 2, PAD), "predicted / true", LABEL_SIZE, anchor="mt")
    for index, (tile, title) in enumerate(zip(tiles, titles, strict=True)):
        row, column = divmod(index, columns)
        centre = PAD + column * column_w + column_w / 2
        y = top + row * row_h
        right = predicted[index] == true[index]
        _text(draw, (centre, y), title, SMALL_SIZE, RIGHT_GREEN if right else WRONG_RED, "mt")
        x = round(centre - tile_w / 2)
        canvas.paste(tile, (x, y + title_h + 4))
        # a thin frame, so that an image with a white background keeps its edges
        draw.rectangle(
            (x - 1, y + title_h + 3, x + tile_w, y + title_h + 4 + tile_h), outline=FRAME
        )
    return _to_array(canvas)
