"""What a finished run leaves beside metrics.json: its TensorBoard HParams record and, unless
trainer.report_images=false, the best model's figures on the validation split.

Each task has its own writer (WRITERS): a classification's confusion matrix, misclassified
examples, per-class report and calibration; a regression's predicted-against-true plot,
residuals and curves of its error metrics. The Trainer calls write_end_of_run and never asks
which task it trained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nntrain.inference.logits import classify, score, score_regression
from nntrain.tasks import CLASSIFICATION, REGRESSION, Task
from nntrain.training.state import Run

log = logging.getLogger("nntrain")


def write_end_of_run(run: Run, result: dict[str, Any], report_images: bool) -> None:
    """The HParams record and the figures of the run's task (rank 0 calls this once)."""
    from nntrain.reporting.end_of_run import run_label

    overrides = run.metadata.get("overrides") or []
    label = run_label(run.metadata["config"], overrides)
    WRITERS[run.task](run, result, overrides, label, report_images)


def names_of(run: Run) -> tuple[str, str]:
    """The model's and the data's names, as HParams records them."""
    return type(run.model).__name__, getattr(run.data, "name", type(run.data).__name__)


def write_classification(
    run: Run, result: dict[str, Any], overrides: list[str], label: str, report_images: bool
) -> None:
    from nntrain.reporting.end_of_run import write_figures, write_hparams

    model_name, data_name = names_of(run)
    config = run.metadata["config"]
    write_hparams(
        run.tensorboard, result, config, model_name, data_name, overrides=overrides, label=label
    )
    if not report_images:
        return
    if not len(run.data.val_loader()):
        log.info("no validation split (data.val_fraction=0): no figures drawn")
        return
    val = score(run.model, run.data.val_loader(), run.compute, gather=True)
    assert val.logits is not None and val.targets is not None
    write_figures(
        run.tensorboard,
        run.run_dir,
        run.data,
        run.state.history,
        result,
        run.state.stopper.monitor,
        (val.logits, val.targets),
        classify=lambda inputs: classify(run.model, inputs, run.compute),
        step=run.state.step,
    )


def write_regression(
    run: Run, result: dict[str, Any], overrides: list[str], label: str, report_images: bool
) -> None:
    from nntrain.reporting.regression_figures import write_regression_end_of_run

    scale = run.target_scale
    mean = float(getattr(run.data, "target_mean", 0.0))
    val = score_regression(run.model, run.data.val_loader(), run.compute, scale, gather=True)
    assert val.outputs is not None and val.targets is not None
    model_name, data_name = names_of(run)
    write_regression_end_of_run(
        run.tensorboard,
        (val.outputs * scale + mean).numpy(),
        (val.targets * scale + mean).numpy(),
        run.data.class_names[0],
        result,
        run.metadata["config"],
        model_name,
        data_name,
        run.state.step,
        run_dir=run.run_dir,
        overrides=overrides,
        label=label,
        figures=report_images,
    )
    if report_images and run.state.history:  # loss, RMSE, MAE, R² per epoch
        from nntrain.reporting.metric_figures import training_curves

        monitor = run.state.stopper.monitor
        curves = training_curves(run.state.history, int(result["best_epoch"]), monitor)
        curves.save(run.run_dir / "curves.png")
        run.tensorboard.image("train/curves", curves.image, run.state.step)


EndOfRunWriter = Callable[[Run, dict[str, Any], list[str], str, bool], None]
WRITERS: dict[Task, EndOfRunWriter] = {
    CLASSIFICATION: write_classification,
    REGRESSION: write_regression,
}
