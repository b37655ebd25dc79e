"""The one inference path: a model's logits over batches, with the run's compute settings
(device, precision, memory layout) and test-time augmentation.

Validation and test in training, nntrain-eval, nntrain-predict and the end-of-run figures all
go through `logits_over`, so a run's test/acc, nntrain-eval's and nntrain-predict's predictions
are the same numbers to the last digit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nntrain.devices import Compute
from nntrain.inference.metrics import RunningClassification, RunningRegression
from nntrain.inference.tta import tta_logits

Batch = tuple[torch.Tensor, torch.Tensor | None]


def logits_over(
    model: nn.Module,
    batches: Iterable[Batch],
    compute: Compute,
    tta: str = "none",
    limit: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(float32 logits, targets) per batch of (inputs, targets or None), on the device, in eval
    mode and without autograd; the first `limit` batches only when given. Each batch is seen
    through the test-time augmentation `tta` (see nntrain.inference.tta)."""
    model.eval()
    for index, (inputs, targets) in enumerate(batches):
        if limit is not None and index >= limit:
            break
        with torch.inference_mode():
            x = compute.to_model_layout(inputs.to(compute.device, non_blocking=True))
            with compute.autocast():
                logits = tta_logits(model, x, tta).float()
        if targets is not None:
            targets = targets.to(compute.device, non_blocking=True)
        yield logits, targets


@dataclass
class Scores:
    """Mean loss and the task's figures over labelled batches (accuracy; or RMSE, MAE in the
    target's units and R²) and, when gathered, every output (the logits; or the standardised
    prediction) and target, on the CPU."""

    loss: float
    figures: dict[str, float]
    count: int
    outputs: torch.Tensor | None = None
    targets: torch.Tensor | None = None

    @property
    def acc(self) -> float:
        return self.figures["acc"]


def score(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    compute: Compute,
    tta: str = "none",
    limit: int | None = None,
    gather: bool = False,
) -> Scores:
    """Loss and accuracy of model over (the first `limit` of) labelled batches; gather=True
    also keeps every logit and target, moved to the CPU in one transfer at the end."""
    running = RunningClassification(compute.device)
    batches_out = logits_over(model, batches, compute, tta, limit)
    figures, logits, targets = _run_over(batches_out, running, _cross_entropy, gather)
    count = int(figures.pop("count"))
    return Scores(figures.pop("loss"), figures, count, logits, targets)


def _cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return logits, F.cross_entropy(logits, targets)


def _squared_error(raw: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    predicted = raw.reshape(targets.shape)  # (N, 1) -> (N,)
    return predicted, F.mse_loss(predicted, targets)


def _run_over(
    outputs: Iterable[Batch],
    running: RunningClassification | RunningRegression,
    loss_of: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    gather: bool,
) -> tuple[dict[str, float], torch.Tensor | None, torch.Tensor | None]:
    """Feed the running figures every batch's (prediction, loss) from loss_of(output, targets);
    their figures and, with gather, every prediction and target moved to the CPU in one
    transfer at the end (None when not gathered)."""
    predictions, labels = [], []
    for raw, targets in outputs:
        assert targets is not None
        with torch.inference_mode():
            predicted, loss = loss_of(raw, targets)
            running.update(loss, predicted, targets)
        if gather:
            predictions.append(predicted)
            labels.append(targets)
    figures = running.compute()
    if not (gather and predictions):
        return figures, None, None
    return figures, torch.cat(predictions).cpu(), torch.cat(labels).cpu()


def probabilities(
    model: nn.Module, inputs: Iterable[torch.Tensor], compute: Compute, tta: str = "none"
) -> torch.Tensor:
    """Softmax over the classes for every input of unlabelled batches, (N, classes), CPU."""
    batches = ((x, None) for x in inputs)
    return torch.cat(
        [logits.softmax(dim=1) for logits, _ in logits_over(model, batches, compute, tta)]
    ).cpu()


def classify(model: nn.Module, inputs: torch.Tensor, compute: Compute) -> torch.Tensor:
    """The predicted class of each input of one batch, on the CPU (e.g. the points of a grid
    for the decision boundary)."""
    logits, _ = next(logits_over(model, [(inputs, None)], compute))
    return logits.argmax(dim=1).cpu()


def score_regression(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    compute: Compute,
    scale: float,
    limit: int | None = None,
    gather: bool = False,
) -> Scores:
    """The regression counterpart of score(): the model's one output per input against the
    standardised targets; scale (the target's training std) turns errors back into its units."""
    running = RunningRegression(compute.device, scale)
    batches_out = logits_over(model, batches, compute, "none", limit)
    figures, outputs, targets = _run_over(batches_out, running, _squared_error, gather)
    count = int(figures.pop("count"))
    return Scores(figures.pop("loss"), figures, count, outputs, targets)


def predicted_values(
    model: nn.Module, inputs: Iterable[torch.Tensor], compute: Compute
) -> torch.Tensor:
    """A regression model's output (standardised) for every input of unlabelled batches, CPU."""
    batches = ((x, None) for x in inputs)
    return torch.cat(
        [raw.reshape(len(raw)) for raw, _ in logits_over(model, batches, compute)]
    ).cpu()
