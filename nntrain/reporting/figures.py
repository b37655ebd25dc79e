"""Figures of a classifier's predictions: the confusion matrix, a grid of sample images (mistakes
first) and the decision boundary of 2-feature data. Curves and per-class charts are in
metric_figures.py; the shared style and the Picture every function returns in figure_style.py.

Each function takes plain arrays (no model, no tensors) and returns a Picture: its pixels (for
TensorBoard), its title, and the data it plotted; Picture.save writes the PNG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nntrain.reporting.figure_style import (
    RIGHT,
    WRONG,
    Picture,
    class_colours,
    margins,
    new_figure,
    render,
    short,
    styled,
    text_width,
)

MAX_ANNOTATED_CLASSES = 30  # beyond this, per-cell counts and class-name ticks become unreadable
MAX_GRID_IMAGES = 32


# ---------------------------------------------------------------------------------------------
# Confusion matrix


def row_rates(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum: the share of a true class predicted as each class (a row
    with no samples stays 0)."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def cell_colours(rates: np.ndarray) -> np.ndarray:
    """(n, n, 3) RGB in [0, 1]: the diagonal on a blue scale of its rate (0..1), the errors on a
    red scale of their rate up to the largest error, so that even a small error is clearly red
    and a cell without errors stays white."""
    from matplotlib import colormaps

    n = len(rates)
    diagonal = np.eye(n, dtype=bool)
    worst = max(float(rates[~diagonal].max(initial=0.0)), 1e-12)
    blues = colormaps["Blues"](0.1 + 0.85 * rates)[..., :3]
    reds = colormaps["Reds"](0.25 + 0.7 * rates / worst)[..., :3]
    colours = np.where(diagonal[..., None], blues, reds)
    colours[~diagonal & (rates == 0)] = 1.0  # no errors: white
    return colours


@styled
def confusion_matrix_figure(
    matrix: np.ndarray,
    class_names: Sequence[str],
    title: str = "confusion matrix",
    compact: bool = False,
) -> Picture:
    """Rows are the true class, columns the predicted class. Cells are coloured by the share of
    their row (blue on the diagonal, red off it: errors stand out), and up to
    MAX_ANNOTATED_CLASSES classes each non-empty cell shows its count (and its share, up to 15
    classes). compact: smaller cells with larger counts, no shares and no colour scales,
    readable where TensorBoard shows an image (about 350 pixels wide). data: counts and
    rates."""
    counts = np.asarray(matrix)
    n = len(class_names)
    if n == 0 or counts.shape != (n, n):
        raise ValueError(f"matrix has shape {counts.shape}, expected ({n}, {n}) for the classes")
    if np.any(counts < 0) or not np.all(counts == np.round(counts)):
        raise ValueError("the confusion matrix must hold counts (whole numbers >= 0)")
    counts = counts.astype(np.int64)
    rates = row_rates(counts)
    colours = cell_colours(rates)
    annotate = n <= MAX_ANNOTATED_CLASSES
    names = [short(str(name)) for name in class_names] if annotate else []
    label_w = text_width(names or [str(n)], 9) + 0.15
    side = float(np.clip(0.5 * n + 1.5, 3.5, 11))  # the matrix, in inches
    if compact:
        side = float(np.clip(0.36 * n + 0.8, 2.6, 8))
    turned = annotate and label_w > side / n  # names wider than a column: turn them
    left, right, top = 0.45 + label_w, 0.3 if compact else 1.9, 0.5
    bottom = 0.5 + (0.72 * label_w if turned else 0.25)
    figure = new_figure(left + side + right, top + side + bottom)
    box = margins(figure, left, right, top, bottom)
    axes = figure.add_axes(
        (box["left"], box["bottom"], box["right"] - box["left"], box["top"] - box["bottom"])
    )
    axes.imshow(colours, aspect="auto")
    axes.grid(False)
    if annotate:
        size = (12 if n <= 10 else 9 if n <= 20 else 6) if compact else None
        _annotate_cells(axes, counts, rates, colours, with_share=n <= 15 and not compact, size=size)
        axes.set_xticks(
            range(n),
            names,
            rotation=45 if turned else 0,
            ha="right" if turned else "center",
            rotation_mode="anchor",
        )
        axes.set_yticks(range(n), names)
    axes.set_xlabel("predicted" if annotate else "predicted (class index)")
    axes.set_ylabel("true" if annotate else "true (class index)")
    errors = int(counts.sum() - np.trace(counts))
    title = f"{title}: {errors} of {int(counts.sum())} wrong"
    axes.set_title(title.replace(": ", ":\n") if compact and len(title) > 40 else title)
    if not compact:
        _colour_bars(figure, box, rates)
    return render(figure, title, {"counts": counts, "rates": rates})


def _annotate_cells(
    axes,
    counts: np.ndarray,
    rates: np.ndarray,
    colours: np.ndarray,
    with_share: bool,
    size: float | None = None,
) -> None:
    """The count of every non-empty cell, white on dark cells, with its row share below."""
    n = len(counts)
    size = size or (10 if n <= 10 else 8 if n <= 20 else 6)
    for row, column in zip(*np.nonzero(counts), strict=True):
        r, g, b = colours[row, column]
        dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.55
        text = str(counts[row, column])
        if with_share:
            text += f"\n{rates[row, column]:.0%}"
        axes.text(
            column, row, text, ha="center", va="center", fontsize=size,
            color="white" if dark else "black", linespacing=1.1,
        )  # fmt: skip


def _colour_bars(figure, box: dict[str, float], rates: np.ndarray) -> None:
    """Two scales right of the matrix (box: its margins as fractions): correct (the diagonal's
    blues) and wrong (the reds, up to the largest error)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    diagonal = np.eye(len(rates), dtype=bool)
    worst = max(float(rates[~diagonal].max(initial=0.0)), 1e-12)
    scales = (
        ("correct (share of row)", "Blues", 0.1, 1.0),
        ("wrong (share of row)", "Reds", 0.25, worst),
    )
    width = figure.get_size_inches()[0]
    height = 0.6 * (box["top"] - box["bottom"])
    for index, (label, name, low, top) in enumerate(scales):
        cmap = ListedColormap(colormaps[name](np.linspace(low, 0.95, 64)))
        x = box["right"] + (0.2 + 0.9 * index) / width
        bar_axes = figure.add_axes((x, box["bottom"] + 0.2 * height / 0.6, 0.15 / width, height))
        bar = figure.colorbar(ScalarMappable(Normalize(0, top), cmap), cax=bar_axes)
        bar.set_label(label)
        bar.ax.tick_params(labelsize=8)


# ---------------------------------------------------------------------------------------------
# Sample images


def sample_order(
    targets: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, count: int = MAX_GRID_IMAGES
) -> np.ndarray:
    """Indices of the samples to show: the mistakes, most confident first (up to three quarters
    of count, so some right ones always show what the classes look like), then right ones in
    their order."""
    targets, predicted = np.asarray(targets), np.asarray(predicted)
    wrong = np.flatnonzero(predicted != targets)
    wrong = wrong[np.argsort(-np.asarray(confidence)[wrong], kind="stable")]
    wrong = wrong[: max(1, count * 3 // 4)] if len(wrong) else wrong
    right = np.flatnonzero(predicted == targets)[: count - len(wrong)]
    return np.concatenate([wrong, right]).astype(np.int64)


def _tiles(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) uint8 or [0, 1] float images as (N, H, W, 3) floats in [0, 1]; images over
    128 pixels are shrunk to 128 (a 32-image grid of photos stays small)."""
    pixels = images.astype(np.float32) / 255 if images.dtype == np.uint8 else images
    pixels = np.clip(pixels.astype(np.float32), 0, 1).transpose(0, 2, 3, 1)
    if pixels.shape[3] == 1:
        pixels = np.repeat(pixels, 3, axis=3)
    height, width = pixels.shape[1:3]
    if max(height, width) > 128:
        from PIL import Image

        scale = 128 / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = np.stack(
            [
                np.asarray(
                    Image.fromarray((tile * 255).round().astype(np.uint8)).resize(
                        size, Image.Resampling.LANCZOS
                    )
                )
                / 255.0
                for tile in pixels
            ]
        )
    return pixels


@styled
def sample_grid(
    images: np.ndarray,
    true: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float] | None = None,
    title: str = "samples",
    columns: int = 8,
) -> Picture:
    """Images (at most 32) titled "predicted / true" (green when right, red when wrong) and the
    model's probability for its prediction. Pass them in the order to show them (sample_order:
    mistakes first). The grid is one mosaic image, so 32 images cost one axes, not 32."""
    images = np.asarray(images)[:MAX_GRID_IMAGES]
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"expected (N, C, H, W) images with C = 1 or 3, got {images.shape}")
    n = len(images)
    if len(true) < n or len(predicted) < n:
        raise ValueError(f"need {n} true and predicted names, got {len(true)}, {len(predicted)}")
    tiles = _tiles(images)
    height, width = tiles.shape[1:3]
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    band, gap = int(np.ceil(0.42 * height)), max(1, int(np.ceil(0.2 * width)))  # title, margin
    cell_w, cell_h = width + gap, band + height + gap
    mosaic = np.ones((rows * cell_h, columns * cell_w - gap, 3), dtype=np.float32)
    wrong = sum(predicted[i] != true[i] for i in range(n))
    title = f"{title}: predicted / true" + (", the most confident mistakes first" if wrong else "")
    # Wide enough for the title (bold, 12 pt) even when there are few images.
    figure = new_figure(max(1.25 * columns, 1.15 * text_width([title], 12) + 0.4), 1.5 * rows + 0.5)
    axes = figure.add_axes((0.01, 0.01, 0.98, 1 - 0.5 / (1.5 * rows + 0.5)))  # title above
    for index in range(n):
        row, column = divmod(index, columns)
        top, left = row * cell_h + band, column * cell_w
        mosaic[top : top + height, left : left + width] = tiles[index]
        right = predicted[index] == true[index]
        text = f"{short(str(predicted[index]), 10)} / {short(str(true[index]), 10)}"
        if confidence is not None:
            text += f"\np = {float(confidence[index]):.2f}"
        axes.text(
            left + width / 2, top - 0.5 - 0.04 * height, text, ha="center", va="bottom",
            fontsize=8, color=RIGHT if right else WRONG, linespacing=1.0,
        )  # fmt: skip
    axes.imshow(mosaic, interpolation="nearest")
    axes.set_axis_off()
    figure.suptitle(title)
    return render(figure, title, {"shown": n, "wrong": wrong})


# ---------------------------------------------------------------------------------------------
# Decision boundary


def _grid(points: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plotted range (the points' with a 10 % margin) and a resolution x resolution grid of
    it as (resolution**2, 2) float32 raw feature values, row 0 of the grid the lowest y."""
    low, high = points.min(axis=0), points.max(axis=0)
    margin = 0.1 * np.where(high > low, high - low, 1.0)  # a flat axis still gets some width
    low, high = low - margin, high + margin
    grid_x, grid_y = np.meshgrid(
        np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution)
    )
    return low, high, np.column_stack([grid_x.ravel(), grid_y.ravel()]).astype(np.float32)


@styled
def decision_boundary_figure(
    predict: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    feature_names: Sequence[str] = ("x", "y"),
    resolution: int = 200,
    title: str = "decision boundary",
) -> Picture:
    """Predicted class regions over the points' range (10 % margin) in raw feature units, the
    points on top in their true class's colour; misclassified points are ringed in black.

    predict gets one (resolution**2 + N, 2) float32 array of raw feature values (the grid, then
    the points) and returns their integer classes (a model wrapper does any standardisation).
    """
    points, labels = np.asarray(points, dtype=np.float64), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(labels) != len(points):
        raise ValueError(f"expected (N, 2) points and N labels, got {points.shape}, {labels.shape}")
    from matplotlib.colors import ListedColormap, to_rgb

    low, high, grid = _grid(points, resolution)
    classes = np.asarray(predict(np.concatenate([grid, points.astype(np.float32)])))
    regions = classes[: len(grid)].reshape(resolution, resolution)
    wrong = classes[len(grid) :] != labels
    k = len(class_names)
    colours = class_colours(k)
    faded = [tuple(0.3 * c + 0.7 for c in to_rgb(colour)) for colour in colours]
    names = [short(str(name)) for name in class_names]
    legend_w = (0.55 + text_width([*names, "misclassified (000)"], 9)) * (1 + k // 16)
    figure = new_figure(5.6 + legend_w, 5.2)
    axes = figure.add_subplot()
    figure.subplots_adjust(**margins(figure, 0.75, legend_w + 0.15, 0.45, 0.6))
    axes.imshow(
        np.clip(regions, 0, k - 1), origin="lower", extent=(low[0], high[0], low[1], high[1]),
        cmap=ListedColormap(faded), vmin=-0.5, vmax=k - 0.5, aspect="auto",
    )  # fmt: skip
    axes.grid(False)
    for index, name in enumerate(names):
        mine = labels == index
        axes.scatter(
            points[mine, 0], points[mine, 1], s=18, color=colours[index],
            edgecolors="white", linewidths=0.5, label=name,
        )  # fmt: skip
    if wrong.any():
        axes.scatter(
            points[wrong, 0], points[wrong, 1], s=60, facecolors="none", edgecolors="black",
            linewidths=1.2, label=f"misclassified ({int(wrong.sum())})",
        )  # fmt: skip
    axes.set_xlim(low[0], high[0])
    axes.set_ylim(low[1], high[1])
    axes.set_xlabel(str(feature_names[0]))
    axes.set_ylabel(str(feature_names[1]))
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=True, ncols=1 + k // 16)
    title = f"{title}: {int(wrong.sum())} of {len(points)} points misclassified"
    axes.set_title(title)
    data = {"regions": regions, "low": low, "high": high, "misclassified": int(wrong.sum())}
    return render(figure, title, data)
