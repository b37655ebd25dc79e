"""What every figure shares: matplotlib (imported only when a figure is drawn), one style, and
the Picture a figure function returns.

matplotlib costs about half a second to import; nntrain imports it only at the end of a run (after
metrics.json is written) or in nntrain-eval, never at start-up or in the training step. Figures
are drawn on matplotlib's Agg canvas directly, without pyplot: no global backend is chosen, no
window can open, and a user's own pyplot figures are left alone. The style is applied with
rc_context while a figure is built and drawn, so it does not leak into the caller's settings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ParamSpec

import numpy as np

from nntrain import files

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# matplotlib's tab10: the colours its users know. Train is blue, validation orange.
TAB10 = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
TRAIN, VAL, RIGHT, WRONG, GREY = TAB10[0], TAB10[1], TAB10[2], TAB10[3], "#7f7f7f"
DPI = 100

# Any: matplotlib types rc_context's argument as a dict of its literal key names.
STYLE: Any = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "font.size": 10,
    "axes.titlesize": 11,
    "figure.titlesize": 12,
    "figure.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "image.interpolation": "nearest",
}


@dataclass(frozen=True)
class Picture:
    """A drawn figure: its pixels, its title, and the data it plotted (read back from the
    plotted artists, so that a test checks what was drawn, not what was meant)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, as TensorBoard takes it
    title: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the picture as a PNG, atomically (a run killed mid-write leaves no half file)."""
        from PIL import Image

        def write(file: IO[bytes]) -> None:
            Image.fromarray(self.image).save(file, format="PNG")

        return files.write_atomically(path, write)


P = ParamSpec("P")


def styled(draw: Callable[P, Picture]) -> Callable[P, Picture]:
    """Build and draw the figure under the shared style (rc_context restores the caller's)."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Picture:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float) -> Figure:
    """A figure of width x height inches (100 pixels each), not tied to pyplot (so nothing
    keeps it alive once its Picture is made). Its layout is fixed by margins(): matplotlib's
    constrained layout took about half of a figure's drawing time."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


def margins(
    figure: Figure, left: float, right: float, top: float, bottom: float
) -> dict[str, float]:
    """Margins in inches as the fractions subplots_adjust and add_gridspec take."""
    width, height = figure.get_size_inches()
    return {
        "left": left / width,
        "right": 1 - right / width,
        "top": 1 - top / height,
        "bottom": bottom / height,
    }


def text_width(texts: Sequence[str], points: float) -> float:
    """About how wide the longest of texts is, in inches, in the style's font (DejaVu Sans,
    whose characters average 0.62 of the font size): enough to leave room for labels."""
    return max((len(text) for text in texts), default=0) * 0.62 * points / 72


def render(figure: Figure, title: str, data: Mapping[str, Any]) -> Picture:
    """Draw the figure on the Agg canvas and keep its RGB pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    image = np.array(canvas.buffer_rgba())[..., :3]
    return Picture(image=np.ascontiguousarray(image), title=title, data=dict(data))


def class_colours(count: int) -> list[str]:
    """tab10 for up to 10 classes, tab20 beyond (repeated past 20)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if count <= 10:
        return list(TAB10[:count])
    palette = colormaps["tab20"].colors  # type: ignore[attr-defined]
    return [to_hex(palette[i % 20]) for i in range(count)]


def plotted(axes: Axes) -> Iterator[tuple[str, np.ndarray]]:
    """(label, (N, 2) x/y points) of every labelled line on axes, as drawn."""
    for line in axes.get_lines():
        label = str(line.get_label())
        if not label.startswith("_"):
            yield label, np.asarray(line.get_xydata(), dtype=np.float64)


def short(name: str, length: int = 16) -> str:
    """A class name cut to length characters, so that ticks and titles stay readable."""
    return name if len(name) <= length else name[: length - 1] + "…"


CAPTION_POINTS = 15  # pixels of the caption's font


def captioned(picture: Picture, text: str) -> Picture:
    """The picture with a line of grey text above it, in the figures' font: which run a figure
    shows (a sweep's figures look alike). Text wider than the picture is cut, with '…'."""
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), CAPTION_POINTS)
    height, width = picture.image.shape[:2]
    band = CAPTION_POINTS + 10
    canvas = Image.new("RGB", (width, height + band), "white")
    canvas.paste(Image.fromarray(picture.image), (0, band))
    draw = ImageDraw.Draw(canvas)
    shown = text
    while len(shown) > 2 and draw.textlength(shown, font=font) > width - 16:
        shown = shown[:-2] + "…"
    draw.text((8, 5), shown, fill=GREY, font=font)
    image = np.ascontiguousarray(np.asarray(canvas))
    return Picture(image=image, title=picture.title, data={**picture.data, "caption": shown})
