"""What a regression run shows instead of a classifier's pictures: predicted against true
values with the residuals (metric_figures.predicted_vs_true, in the figures' shared style) at
the end of a run, on the validation split (pred_vs_true.png) and, when the run was tested, on
the test split (pred_vs_true_test.png, as nntrain-eval names it: pred_vs_true_<split>.png),
in the run directory and TensorBoard.

matplotlib is imported only when a figure is drawn (see nntrain.reporting.figure_style).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from nntrain.reporting.end_of_run import Planned, draw_all, log_figures
from nntrain.reporting.tensorboard import FIGURES_GROUP, RunLogger


def write_predicted_vs_true(
    path: Path, predicted: np.ndarray, true: np.ndarray, target: str, title: str
) -> Path:
    """The figure as a PNG file, written atomically."""
    from nntrain.reporting.metric_figures import predicted_vs_true

    return predicted_vs_true(true, predicted, target, title).save(path)


def write_regression_figures(
    tensorboard: RunLogger,
    run_dir: Path,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    target: str,
    history: Sequence[Mapping[str, float]],
    best_epoch: int,
    monitor: str,
    step: int,
    caption: str = "",
) -> list[Path]:
    """The training curves (loss, RMSE, R² per epoch) and each split's predicted-vs-true figure
    (splits: its (predicted, true) values in the target's units), as PNGs in run_dir and
    images in TensorBoard; the time they took logged."""
    from nntrain.reporting.metric_figures import predicted_vs_true, training_curves

    start = time.perf_counter()
    planned: list[Planned] = []
    if history:
        curves = partial(training_curves, history, best_epoch, monitor)
        planned.append(
            ("curves.png", f"{FIGURES_GROUP}/curves", curves, partial(curves, compact=True))
        )
    for split, (predicted, true) in splits.items():
        name = "pred_vs_true.png" if split == "val" else f"pred_vs_true_{split}.png"
        draw = partial(predicted_vs_true, true, predicted, target, f"predicted vs true ({split})")
        tag = f"{FIGURES_GROUP}/{split}_predicted_vs_true"
        planned.append((name, tag, draw, partial(draw, compact=True)))
    written = draw_all(tensorboard, run_dir, planned, step, caption)
    log_figures(written, time.perf_counter() - start)
    return written
