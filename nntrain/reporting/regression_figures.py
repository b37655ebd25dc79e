"""What a regression run shows instead of a classifier's pictures: predicted against true
values with the residuals (metric_figures.predicted_vs_true, in the figures' shared style) at
the end of a run (TensorBoard and pred_vs_true.png) and from nntrain-eval
(pred_vs_true_<split>.png), and its HParams record.

matplotlib is imported only when a figure is drawn (see nntrain.reporting.figure_style).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nntrain.reporting.end_of_run import chosen_hparams, hparams_metrics, override_keys
from nntrain.reporting.tensorboard import RunLogger
from nntrain.tasks import REGRESSION


def write_predicted_vs_true(
    path: Path, predicted: np.ndarray, true: np.ndarray, target: str, title: str
) -> Path:
    """The figure as a PNG file, written atomically."""
    from nntrain.reporting.metric_figures import predicted_vs_true

    return predicted_vs_true(true, predicted, target, title).save(path)


def write_regression_end_of_run(
    tensorboard: RunLogger,
    predicted: np.ndarray,
    true: np.ndarray,
    target: str,
    result: dict[str, Any],
    config_yaml: str,
    model_name: str,
    data_name: str,
    step: int,
    run_dir: Path | None = None,
    overrides: Sequence[str] = (),
    label: str | None = None,
    figures: bool = True,
) -> None:
    """The HParams record with the regression figures, then (unless figures is false) the best
    model's predicted-vs-true figure on the validation split (target units) in TensorBoard and
    as pred_vs_true.png in the run directory."""
    metrics = hparams_metrics(REGRESSION, result)
    hparams = chosen_hparams(config_yaml, model_name, data_name, overrides)
    tensorboard.hparams(hparams, metrics, first=override_keys(overrides), label=label)
    if not figures:
        return
    from nntrain.reporting.metric_figures import predicted_vs_true

    picture = predicted_vs_true(true, predicted, target, "predicted vs true (val)")
    tensorboard.image("val/predicted_vs_true", picture.image, step)
    if run_dir is not None:
        picture.save(run_dir / "pred_vs_true.png")
