"""What a model is trained to do: a classification (one class per target) or a regression (one
number per target). The Task owns what differs between them: its loss, its metrics, the figures
a run may monitor and the one it follows by default, whether it has classes, and the overfit
check's success phrase.

Code elsewhere asks the Task (`task.metrics`, `task.loss(...)`, `task.has_classes`) rather than
comparing names: behaviour that lives in higher layers (the running metrics of
nntrain.inference.metrics, the scoring and figures the Trainer chooses) branches on
`task.has_classes`, a fact of the task rather than its name, so that the shared ground does not
import those layers and no task name is spelled outside this module. The names themselves
("classification", "regression") are what data.task, checkpoints' input specs and export.json
hold; `task_named` turns one back into its Task.

Importing this module stays cheap (no torch, as the package's): the sweeper plugin reads it
during config composition; torch is imported when a loss is first computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nntrain.errors import UserError

if TYPE_CHECKING:
    import torch

NO_MONITOR = "none"  # no figure picks the weights: the final ones are kept and tested
# A classification's figures; accuracy is best at its max.
MONITORS = ("val/acc", "val/loss", "train/acc", "train/loss")
# A regression's figures (data.task=regression), in the target's units; R² is best at its max.
REGRESSION_MONITORS = tuple(
    f"{split}/{name}" for split in ("val", "train") for name in ("rmse", "mae", "r2")
)

# What a metric's name says of it: a loss or an error is best low, an accuracy or R² high.
LOWER_IS_BETTER = ("loss", "rmse", "mae")
HIGHER_IS_BETTER = ("acc", "r2")


@dataclass(frozen=True)
class Task:
    """A classification or a regression (CLASSIFICATION, REGRESSION; task_named for a name
    read from a config, checkpoint or metrics file)."""

    name: str  # as data.task and checkpoints write it
    metrics: tuple[str, ...]  # besides the loss, per split: train/<name>, val/<name>, test/<name>
    monitors: tuple[str, ...]  # what early stopping and scheduler=plateau may follow
    default_monitor: str  # what early stopping follows when the configured monitor is not offered
    default_mode: str  # min or max, for default_monitor
    # Classes: num_classes >= 2, class weights, the balanced sampler, MixUp/CutMix, per-class
    # figures. Without them the model has one output, a float target in standardised units.
    has_classes: bool
    overfit_success: str  # trainer.overfit_batches: what a model that fits its batches reaches
    hparams_metrics: tuple[str, ...]  # the HParams record's figures, on val and test

    @property
    def main_metric(self) -> str:
        """The figure the progress bar shows beside the loss: acc, or a regression's r2."""
        return self.metrics[-1]

    def loss(
        self,
        outputs: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """The training loss: cross-entropy over the logits (with the classes' weights and
        label smoothing), or the mean squared error of the one output."""
        import torch.nn.functional as F

        if self.has_classes:
            return F.cross_entropy(outputs, targets, weight=weight, label_smoothing=label_smoothing)
        return F.mse_loss(outputs.reshape(targets.shape), targets)

    def offers(self, monitor: str) -> bool:
        """Whether a run of this task computes `monitor` (or `none`, no monitor)."""
        return monitor in self.monitors or monitor == NO_MONITOR


CLASSIFICATION = Task(
    name="classification",
    metrics=("acc",),
    monitors=MONITORS,
    default_monitor="val/acc",
    default_mode="max",
    has_classes=True,
    overfit_success="a training loss near 0 and 100 % accuracy on them",
    hparams_metrics=("acc",),
)
REGRESSION = Task(
    name="regression",
    metrics=("rmse", "mae", "r2"),
    monitors=(*REGRESSION_MONITORS, "val/loss", "train/loss"),
    default_monitor="val/loss",
    default_mode="min",
    has_classes=False,
    overfit_success="a training loss near 0 on them (val/rmse and val/mae near 0, val/r2 near 1)",
    hparams_metrics=("rmse", "r2"),
)
TASKS = {task.name: task for task in (CLASSIFICATION, REGRESSION)}


def task_named(name: str) -> Task:
    """The task a config, checkpoint or metrics file names; an unknown name is refused."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}: a task is {' or '.join(TASKS)}.")
    return TASKS[name]


def task_of_spec(spec: Mapping[str, Any]) -> Task:
    """The task a checkpoint's input spec records (its `task`; none: a classification)."""
    return task_named(str(spec.get("task") or CLASSIFICATION.name))


def natural_direction(metric: str) -> str | None:
    """minimize for a loss or an error (…/loss, …/rmse, …/mae), maximize for an accuracy or
    R² (…/acc, …/r2); None for a name that does not say (train/samples_per_sec)."""
    name = metric.rsplit("/", 1)[-1]
    if name in LOWER_IS_BETTER:
        return "minimize"
    return "maximize" if name in HIGHER_IS_BETTER else None
