"""The one inference path: a model's logits over batches, with the run's compute settings
(device, precision, memory layout) and test-time augmentation.

Validation and test in training, nntrain-eval, nntrain-predict and the end-of-run figures all
go through `logits_over`, so a run's test/acc, nntrain-eval's and nntrain-predict's predictions
are the same numbers to the last digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
    """Mean loss and accuracy over labelled batches and, when gathered, every logit and
    target (on the CPU)."""

    loss: float
    acc: float
    count: int
    logits: torch.Tensor | None = None
    targets: torch.Tensor | None = None


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
    outputs, labels = [], []
    for logits, targets in logits_over(model, batches, compute, tta, limit):
        assert targets is not None
        with torch.inference_mode():
            running.update(F.cross_entropy(logits, targets), logits, targets)
        if gather:
            outputs.append(logits)
            labels.append(targets)
    figures = running.compute()
    scores = Scores(figures["loss"], figures["acc"], int(figures["count"]))
    if gather and outputs:
        scores.logits, scores.targets = torch.cat(outputs).cpu(), torch.cat(labels).cpu()
    return scores


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


@dataclass
class RegressionScores:
    """Mean loss (MSE on the standardised target), RMSE / MAE (target units) and R² over
    labelled batches and, when gathered, every output and target (standardised, on the CPU)."""

    loss: float
    figures: dict[str, float]
    count: int
    outputs: torch.Tensor | None = None
    targets: torch.Tensor | None = None


def score_regression(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    compute: Compute,
    scale: float,
    limit: int | None = None,
    gather: bool = False,
) -> RegressionScores:
    """The regression counterpart of score(): the model's one output per input against the
    standardised targets; scale (the target's training std) turns errors back into its units."""
    running = RunningRegression(compute.device, scale)
    outputs, labels = [], []
    for raw, targets in logits_over(model, batches, compute, "none", limit):
        assert targets is not None
        predicted = raw.reshape(targets.shape)
        with torch.inference_mode():
            running.update(F.mse_loss(predicted, targets), predicted, targets)
        if gather:
            outputs.append(predicted)
            labels.append(targets)
    figures = running.compute()
    count = int(figures.pop("count"))
    scores = RegressionScores(figures.pop("loss"), figures, count)
    if gather and outputs:
        scores.outputs, scores.targets = torch.cat(outputs).cpu(), torch.cat(labels).cpu()
    return scores


def predicted_values(
    model: nn.Module, inputs: Iterable[torch.Tensor], compute: Compute
) -> torch.Tensor:
    """A regression model's output (standardised) for every input of unlabelled batches, CPU."""
    batches = ((x, None) for x in inputs)
    return torch.cat(
        [raw.reshape(len(raw)) for raw, _ in logits_over(model, batches, compute)]
    ).cpu()
