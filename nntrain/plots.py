"""Figures rendered to RGB arrays: PNG files for nntrain-eval, images for TensorBoard.

Every function draws on its own matplotlib `Figure` with an Agg canvas and returns an (H, W, 3)
uint8 array. pyplot is never used: it keeps global state (the current figure, a backend choice),
which would leak figures in a long training run and clash with a host process's own backend.
matplotlib is imported inside the functions so that importing nntrain does not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DPI = 100
MAX_ANNOTATED_CLASSES = 30  # beyond this, per-cell counts and class-name ticks become unreadable
MAX_GRID_IMAGES = 32


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _render(figure: Any) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    # copy: the RGBA buffer belongs to the canvas, which is freed with the figure.
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _class_colors(count: int) -> np.ndarray:
    """(count, 3) RGB in [0, 1]: tab10 (tab20 beyond 10 classes), repeated if needed."""
    import matplotlib

    palette = matplotlib.colormaps["tab10" if count <= 10 else "tab20"].colors
    return np.array([palette[i % len(palette)][:3] for i in range(count)])


def _short(name: str, length: int = 12) -> str:
    return name if len(name) <= length else name[: length - 1] + "…"


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 image as a PNG, creating the parent folder; return the path."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")
    return path


def confusion_matrix_image(
    matrix: np.ndarray, class_names: Sequence[str], title: str = "confusion matrix"
) -> np.ndarray:
    """Rows are the true class, columns the predicted class; counts (or rates) in the cells."""
    import matplotlib

    matrix = np.asarray(matrix)
    n = len(class_names)
    if n == 0 or matrix.shape != (n, n):
        raise ValueError(f"matrix has shape {matrix.shape}, expected ({n}, {n}) for the classes")
    side = float(np.clip(3 + 0.3 * n, 4, 12))  # grows with the classes, capped at 1200 px
    figure = _figure(side + 1, side)
    ax = figure.add_subplot()
    cmap = matplotlib.colormaps["Blues"]
    vmax = max(float(matrix.max()), 1e-12)
    image = ax.imshow(matrix, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n > MAX_ANNOTATED_CLASSES:
        ax.set(xlabel="predicted (class index)", ylabel="true (class index)")
    else:
        ticks = np.arange(n)
        rotate = max(len(name) for name in class_names) > 3
        ax.set_xticks(
            ticks, class_names, rotation=45 if rotate else 0, ha="right" if rotate else "center"
        )
        ax.set_yticks(ticks, class_names)
        integral = np.issubdtype(matrix.dtype, np.integer) or np.all(matrix == np.round(matrix))
        cell_style = {"ha": "center", "va": "center", "fontsize": max(6.0, 12 - 0.25 * n)}
        for (row, col), value in np.ndenumerate(matrix):
            r, g, b, _ = cmap(value / vmax)
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # perceived luminance of the cell
            text = f"{int(value)}" if integral else f"{value:.2f}"
            ax.text(col, row, text, color="white" if dark else "black", **cell_style)
    return _render(figure)


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
    """
    import matplotlib.colors

    points, labels = np.asarray(points, dtype=np.float64), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(labels) != len(points):
        raise ValueError(f"expected (N, 2) points and N labels, got {points.shape}, {labels.shape}")
    low, high = points.min(axis=0), points.max(axis=0)
    margin = 0.1 * np.where(high > low, high - low, 1.0)  # a flat axis still gets some width
    low, high = low - margin, high + margin
    xs = np.linspace(low[0], high[0], resolution)
    ys = np.linspace(low[1], high[1], resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)
    grid = np.column_stack([grid_x.ravel(), grid_y.ravel()]).astype(np.float32)
    regions = np.asarray(predict(grid)).reshape(resolution, resolution)

    k = len(class_names)
    colors = _class_colors(k)
    light = matplotlib.colors.ListedColormap(0.35 * colors + 0.65)  # the class colour, faded
    figure = _figure(6, 5)
    ax = figure.add_subplot()
    ax.imshow(
        regions,
        origin="lower",
        extent=(low[0], high[0], low[1], high[1]),
        cmap=light,
        vmin=-0.5,
        vmax=k - 0.5,
        interpolation="nearest",
        aspect="auto",
    )
    for index, name in enumerate(class_names):
        mask = labels == index
        ax.scatter(
            points[mask, 0],
            points[mask, 1],
            s=16,
            color=colors[index],
            label=name,
            edgecolors="white",
            linewidths=0.4,
        )
    ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), title="decision boundary")
    ax.set(xlabel=feature_names[0], ylabel=feature_names[1])
    ax.legend(loc="best", fontsize=8, framealpha=0.8)
    return _render(figure)


def image_grid(
    images: np.ndarray, true: Sequence[str], predicted: Sequence[str], columns: int = 8
) -> np.ndarray:
    """Sample images titled "pred / true" (green when right, red when wrong); at most 32."""
    images = np.asarray(images)[:MAX_GRID_IMAGES]
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"expected (N, C, H, W) images with C = 1 or 3, got {images.shape}")
    n = len(images)
    if len(true) < n or len(predicted) < n:
        raise ValueError(f"need {n} true and predicted names, got {len(true)}, {len(predicted)}")
    if images.dtype == np.uint8:
        pixels = images.astype(np.float32) / 255
    else:
        pixels = np.clip(images.astype(np.float32), 0, 1)
    pixels = pixels.transpose(0, 2, 3, 1)  # (N, H, W, C)
    if pixels.shape[3] == 1:
        pixels = np.repeat(pixels, 3, axis=3)
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    # One mosaic in one axes: drawing 32 separate axes costs over a second, this a fraction.
    height, width = pixels.shape[1:3]
    gap = max(1, height // 4)  # room for each title above its image
    mosaic = np.ones((rows * (height + gap), columns * (width + 1), 3), dtype=np.float32)
    figure = _figure(1.5 * columns, 1.7 * rows)
    ax = figure.add_subplot(1, 1, 1)
    for index in range(n):
        row, column = divmod(index, columns)
        top, left = row * (height + gap) + gap, column * (width + 1)
        mosaic[top : top + height, left : left + width] = pixels[index]
        right = predicted[index] == true[index]
        ax.text(
            left + width / 2,
            top - 0.5,
            f"{_short(predicted[index])} / {_short(true[index])}",
            fontsize=8,
            ha="center",
            va="bottom",
            color="tab:green" if right else "tab:red",
        )
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    figure.suptitle("predicted / true", fontsize=9)
    return _render(figure)


def bar_chart_image(
    values: dict[str, float], title: str, xlabel: str, max_bars: int = 30
) -> np.ndarray:
    """Horizontal bars, largest on top (the max_bars largest when there are more)."""
    if not values:
        raise ValueError("bar_chart_image needs at least one value")
    ranked = sorted(values.items(), key=lambda item: item[1], reverse=True)[:max_bars]
    if len(ranked) < len(values):
        title = f"{title} (top {len(ranked)} of {len(values)})"
    names, heights = zip(*reversed(ranked), strict=True)  # barh draws bottom-up
    figure = _figure(7, float(np.clip(1.2 + 0.3 * len(names), 2.5, 11)))
    ax = figure.add_subplot()
    bars = ax.barh(range(len(names)), heights, color="tab:blue")
    ax.set_yticks(range(len(names)), names)
    ax.bar_label(bars, fmt="{:.3g}", padding=3, fontsize=8)
    ax.margins(x=0.15)  # room for the value labels
    ax.set(title=title, xlabel=xlabel)
    ax.axvline(0, color="black", linewidth=0.8)
    return _render(figure)
