"""What a finished run leaves beside metrics.json: its TensorBoard HParams record and, unless
trainer.report_images=false, the best model's figures on the validation split and, when the run
was tested (a pruned trial may not be), on the test split.

Each task has its own writer (WRITERS): a classification's confusion matrix, misclassified
examples, ROC and precision-recall curves; a regression's predicted-against-true plots and
curves of its error metrics. The Trainer calls write_end_of_run and never asks which task it
trained.
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
    from nntrain.reporting.end_of_run import run_caption, run_label, write_hparams
    from nntrain.reporting.run_names import trial_id

    overrides = run.metadata.get("overrides") or []
    # A sweep job's label is its TensorBoard folder's name (what it differs from the others by)
    in_sweep = run.tensorboard.label is not None
    label = run.tensorboard.label or run_label(run.metadata["config"], overrides)
    model_name, data_name = names_of(run)
    config = run.metadata["config"]
    write_hparams(
        run.tensorboard, run.task, result, config, model_name, data_name,
        overrides=overrides, label=trial_id(run.run_dir), in_sweep=in_sweep,
    )  # fmt: skip
    if report_images:
        WRITERS[run.task](run, result, run_caption(label, run.run_dir, job=in_sweep))


def names_of(run: Run) -> tuple[str, str]:
    """The model's and the data's names, as HParams records them."""
    return type(run.model).__name__, getattr(run.data, "name", type(run.data).__name__)


def tested(run: Run, result: dict[str, Any]) -> bool:
    """Whether the run scored its test split (a trial pruned by its search may not have)."""
    return "test/loss" in result and bool(len(run.data.test_loader()))


def write_classification(run: Run, result: dict[str, Any], caption: str) -> None:
    from nntrain.reporting.end_of_run import write_figures

    if not len(run.data.val_loader()):
        log.info("no validation split (data.val_fraction=0): no figures drawn")
        return
    val = score(run.model, run.data.val_loader(), run.compute, gather=True)
    assert val.outputs is not None and val.targets is not None
    test = None
    if tested(run, result):
        scored = score(run.model, run.data.test_loader(), run.compute, gather=True)
        if scored.outputs is not None and scored.targets is not None:
            test = (scored.outputs, scored.targets)
    write_figures(
        run.tensorboard,
        run.run_dir,
        run.data,
        run.state.history,
        result,
        run.state.stopper.monitor,
        (val.outputs, val.targets),
        classify=lambda inputs: classify(run.model, inputs, run.compute),
        step=run.state.step,
        test=test,
        caption=caption,
    )


def write_regression(run: Run, result: dict[str, Any], caption: str) -> None:
    from nntrain.reporting.regression_figures import write_regression_figures

    scale = run.target_scale
    mean = float(getattr(run.data, "target_mean", 0.0))
    loaders = {"val": run.data.val_loader()}
    if tested(run, result):
        loaders["test"] = run.data.test_loader()
    splits = {}
    for split, loader in loaders.items():
        scored = score_regression(run.model, loader, run.compute, scale, gather=True)
        if scored.outputs is not None and scored.targets is not None:
            predicted = (scored.outputs * scale + mean).numpy()
            splits[split] = (predicted, (scored.targets * scale + mean).numpy())
    write_regression_figures(
        run.tensorboard,
        run.run_dir,
        splits,
        run.data.class_names[0],
        run.state.history,
        int(result["best_epoch"]),
        run.state.stopper.monitor,
        run.state.step,
        caption=caption,
    )


EndOfRunWriter = Callable[[Run, dict[str, Any], str], None]
WRITERS: dict[Task, EndOfRunWriter] = {
    CLASSIFICATION: write_classification,
    REGRESSION: write_regression,
}
