"""The LR range test's picture: loss against learning rate (log scale), the suggestion marked."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nntrain.reporting.figure_style import (
    GREY,
    TRAIN,
    VAL,
    Picture,
    margins,
    new_figure,
    plotted,
    render,
    styled,
)


@styled
def lr_find_figure(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    suggestion: float,
    rule: str,
) -> Picture:
    """The raw and smoothed training loss per step against its learning rate, with the
    suggested lr as a dashed line. data: "loss" and "smoothed" as (steps, 2) arrays of
    (lr, loss), as drawn, and "suggestion"."""
    figure = new_figure(6.4, 4.4)
    axes = figure.add_subplot(1, 1, 1)
    figure.subplots_adjust(**margins(figure, 0.8, 0.25, 0.7, 0.6))
    x = np.asarray(lrs, dtype=np.float64)
    axes.plot(x, np.asarray(losses, dtype=np.float64), color=GREY, alpha=0.5, label="loss")
    axes.plot(x, np.asarray(smoothed, dtype=np.float64), color=TRAIN, label="smoothed")
    axes.axvline(suggestion, color=VAL, linestyle="--", label=f"suggested {suggestion:.2g}")
    axes.set_xscale("log")
    finite = np.asarray([v for v in (*losses, *smoothed) if np.isfinite(v)])
    if len(finite):  # the diverging tail would flatten the interesting part
        low, high = finite.min(), min(finite.max(), 2 * float(smoothed[0]))
        axes.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.legend()
    title = f"LR range test: suggested lr {suggestion:.2g}"
    figure.suptitle(title)
    axes.set_title(rule, fontsize=9)
    data = {label: xy for label, xy in plotted(axes) if label in ("loss", "smoothed")}
    return render(figure, title, {**data, "suggestion": suggestion})
