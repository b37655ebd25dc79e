"""What a regression run shows instead of a classifier's pictures: predicted against true
values (TensorBoard at the end of a run, pred_vs_true_<split>.png from nntrain-eval), and its
HParams record.

matplotlib (Agg backend, no display) is imported only when a regression figure is drawn, so
classification runs and every command's start-up never pay for it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Any

import numpy as np

from nntrain import files
from nntrain.reporting.end_of_run import chosen_hparams
from nntrain.reporting.tensorboard import RunLogger


def predicted_vs_true_png(
    predicted: np.ndarray, true: np.ndarray, target: str, title: str
) -> bytes:
    """A scatter of predicted against true values with the diagonal (a perfect model), as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must come before pyplot
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5), dpi=100)
    try:
        axes.scatter(true, predicted, s=10, alpha=0.6, color="tab:blue", edgecolors="none")
        low = float(min(true.min(), predicted.min()))
        high = float(max(true.max(), predicted.max()))
        axes.plot([low, high], [low, high], color="tab:red", linewidth=1, label="predicted = true")
        axes.set_xlabel(f"true {target}")
        axes.set_ylabel(f"predicted {target}")
        axes.set_title(title)
        axes.legend(loc="upper left")
        axes.set_aspect("equal", adjustable="datalim")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def png_to_rgb(png: bytes) -> np.ndarray:
    """(H, W, 3) uint8, as TensorBoard's image() takes it."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def write_predicted_vs_true(
    path: Path, predicted: np.ndarray, true: np.ndarray, target: str, title: str
) -> Path:
    """The scatter as a PNG file, written atomically."""
    png = predicted_vs_true_png(predicted, true, target, title)

    def write(file: IO[bytes]) -> None:
        file.write(png)

    return files.write_atomically(path, write)


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
) -> None:
    """The best model's predicted-vs-true scatter on the validation split (target units) and
    the HParams record with the regression figures."""
    png = predicted_vs_true_png(predicted, true, target, "predicted vs true (val)")
    tensorboard.image("val/predicted_vs_true", png_to_rgb(png), step)
    metrics = {
        f"hparam/{split}_{name}": float(result.get(f"{split}/{name}", float("nan")))
        for split in ("val", "test")
        for name in ("rmse", "r2")
    }
    metrics["hparam/best_epoch"] = float(result["best_epoch"])
    tensorboard.hparams(chosen_hparams(config_yaml, model_name, data_name), metrics)
