"""Classification and regression metrics accumulated on the device and read back only when asked.

update() is a few tensor ops with no host synchronisation, so it can sit in the training step;
compute() moves the sums to the host once (per log step or per evaluation). The per-step cost is
kept to what a careful hand loop adds for its own running loss: update() runs without autograd
(no detach), adds into views of the sums made once (no indexing per step), counts the samples on
the host, where the batch size is already known, and (deferred, the eager training step) keeps
each step's predicted and true labels, comparing and counting them in one go when the sums are
read: two ops a step, the loss's add and the argmax (tests/test_op_count.py holds the training
step to this).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from nntrain.tasks import Task


class RunningSums:
    """Metric sums kept on the device through an epoch, read as figures only when asked:
    compute() is the one host synchronisation. Each task's class says what it sums
    (snapshot) and how the sums become figures (figures)."""

    def snapshot(self) -> torch.Tensor:
        raise NotImplementedError

    def figures(self, sums: list[float]) -> dict[str, float]:
        raise NotImplementedError

    def compute(
        self,
        since: torch.Tensor | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """The figures over everything seen, or since an earlier snapshot(); reduce: how to
        sum the sums over the ranks of a torchrun job (each sees its own shard), e.g.
        nntrain.training.distributed.all_reduce_sum."""
        sums = self.snapshot()
        if since is not None:
            sums = sums - since
        if reduce is not None:
            sums = reduce(sums)
        return self.figures(sums.tolist())


class RunningClassification(RunningSums):
    """Sums of loss, correct predictions and samples; loss is given as a batch mean.

    deferred: update() keeps each step's predicted and true labels and counts the correct ones
    only when the sums are read (snapshot, compute) or PENDING_LIMIT steps have piled up (memory
    stays bounded however rarely they are read); the counts, whole numbers, come out the same.
    Only for an eager step: a CUDA graph or a compiled step records update() as ops on `sums`,
    and a Python list of tensors is not something either can replay.
    """

    PENDING_LIMIT = 64

    def __init__(
        self, device: torch.device, sums: torch.Tensor | None = None, deferred: bool = False
    ) -> None:
        self.device = device
        # float64 keeps counts exact past 2**24 samples; MPS has no float64.
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.sums = torch.zeros(3, dtype=dtype, device=device)  # loss*n, correct, n
        self.count = 0  # samples seen: on the host, sums[2] is written when read
        if sums is not None:  # continuing an epoch from a checkpoint
            self.sums.copy_(sums)
            self.count = int(sums[2])
        self.deferred = deferred
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (predicted, targets)
        self._make_views()

    def _make_views(self) -> None:
        # views made once: no select per step
        self._loss_sum, self._correct, self._count_entry = self.sums.unbind()

    def store_sums_in(self, buffer: torch.Tensor) -> None:
        """Keep the sums in `buffer` from now on (the captured step's static tensor, which
        its CUDA graph adds into): the sums so far are copied there."""
        self._count_pending()
        buffer.copy_(self.sums)
        self.sums = buffer
        self._make_views()

    @torch.no_grad()  # the sums never join the autograd graph: no detach needed
    def update(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        n = targets.shape[0]
        # In-place adds: promoted to the sums' dtype in place, no host-to-device copy, no sync.
        self._loss_sum.add_(loss, alpha=n)
        predicted = logits.argmax(dim=1)
        if self.deferred:
            self._pending.append((predicted, targets))
            if len(self._pending) == self.PENDING_LIMIT:
                self._count_pending()
        else:
            self._correct.add_((predicted == targets).sum())
        self.count += n

    @torch.no_grad()
    def _count_pending(self) -> None:
        """Add the correct predictions of the steps kept by a deferred update() to the sums."""
        if self._pending:
            predicted, targets = (torch.cat(labels) for labels in zip(*self._pending, strict=True))
            self._correct.add_((predicted == targets).sum())
            self._pending.clear()

    def snapshot(self) -> torch.Tensor:
        self._count_pending()
        return current_sums(self._count_entry, self.count, self.sums)

    def figures(self, sums: list[float]) -> dict[str, float]:
        """Mean loss and accuracy from sums read back to the host (compute's last part)."""
        loss_sum, correct, count = sums
        if count == 0:
            return {"loss": float("nan"), "acc": float("nan"), "count": 0}
        return {"loss": loss_sum / count, "acc": correct / count, "count": int(count)}


def current_sums(count_entry: torch.Tensor, count: int, sums: torch.Tensor) -> torch.Tensor:
    """A copy of a running metric's sums with the host's sample count as its last entry: written
    into the sums' own count entry (a view, filled in one op: nothing on the device adds to it),
    then copied."""
    count_entry.fill_(count)
    return sums.clone()


def confusion_matrix(
    targets: torch.Tensor, predicted: torch.Tensor, num_classes: int
) -> np.ndarray:
    """counts[t, p]: how many samples of true class t were predicted as p (int64)."""
    index = targets.cpu().long() * num_classes + predicted.cpu().long()
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy()


def classification_report(
    logits: torch.Tensor, targets: torch.Tensor, class_names: list[str]
) -> dict[str, Any]:
    """Every figure nntrain-eval reports, from one split's logits and labels (on the CPU).

    scikit-learn computes them: the reference implementation, on predictions gathered in one
    transfer from the device. Binary tasks add ROC-AUC and the average precision of the
    precision-recall curve for the second class; more than five classes add top-5 accuracy.
    """
    from sklearn import metrics

    logits, targets = logits.float().cpu(), targets.cpu()
    labels = list(range(len(class_names)))
    probs = torch.softmax(logits, dim=1).numpy()
    predicted = logits.argmax(dim=1).numpy()
    truth = targets.numpy()
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    report: dict[str, Any] = {
        "loss": float(torch.nn.functional.cross_entropy(logits, targets)),
        "acc": float(metrics.accuracy_score(truth, predicted)),
        "count": len(truth),
        "per_class": {
            "class": list(class_names),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": [int(count) for count in support],  # sklearn may give floats
        },
        "confusion_matrix": confusion_matrix(
            targets, torch.from_numpy(predicted), len(class_names)
        ).tolist(),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = metrics.precision_recall_fscore_support(
            truth, predicted, labels=labels, average=average, zero_division=0
        )
        report[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    if len(labels) > 5:
        report["top5"] = float(metrics.top_k_accuracy_score(truth, probs, k=5, labels=labels))
    if len(labels) == 2 and len(set(truth.tolist())) == 2:  # AUROC needs both classes present
        report["auroc"] = float(metrics.roc_auc_score(truth, probs[:, 1]))
        report["average_precision"] = float(metrics.average_precision_score(truth, probs[:, 1]))
    return report


class RunningRegression(RunningSums):
    """Sums for MSE loss, RMSE, MAE and R² over standardised targets (loss given as a batch
    mean); compute() reports RMSE and MAE in the target's own units (times `scale`, its
    training std), R² being the same in either."""

    def __init__(self, device: torch.device, scale: float, sums: torch.Tensor | None = None):
        self.device, self.scale = device, scale
        dtype = torch.float32 if device.type == "mps" else torch.float64
        # loss*n, sum |e|, sum e², sum y, sum y², n (the count kept on the host, as above)
        self.sums = torch.zeros(6, dtype=dtype, device=device)
        self.count = 0
        if sums is not None:  # continuing an epoch from a checkpoint
            self.sums.copy_(sums)
            self.count = int(sums[5])
        self._make_views()

    def _make_views(self) -> None:
        self._parts = self.sums.unbind()  # views made once

    def store_sums_in(self, buffer: torch.Tensor) -> None:
        """As RunningClassification.store_sums_in."""
        buffer.copy_(self.sums)
        self.sums = buffer
        self._make_views()

    @torch.no_grad()
    def update(self, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        n = targets.shape[0]
        errors = outputs.reshape(targets.shape).to(self.sums.dtype) - targets
        y = targets.to(self.sums.dtype)
        loss_sum, abs_sum, square_sum, y_sum, y_square_sum, _ = self._parts
        loss_sum.add_(loss, alpha=n)
        abs_sum.add_(errors.abs().sum())
        square_sum.add_(errors.square().sum())
        y_sum.add_(y.sum())
        y_square_sum.add_(y.square().sum())
        self.count += n

    def snapshot(self) -> torch.Tensor:
        return current_sums(self._parts[-1], self.count, self.sums)

    def figures(self, sums: list[float]) -> dict[str, float]:
        """Mean loss, RMSE, MAE and R² from sums read back to the host (compute's last part)."""
        loss_sum, abs_sum, square_sum, y_sum, y_square_sum, count = sums
        if count == 0:
            nan = float("nan")
            return {"loss": nan, "rmse": nan, "mae": nan, "r2": nan, "count": 0}
        total = y_square_sum - y_sum * y_sum / count  # the targets' sum of squares about their mean
        return {
            "loss": loss_sum / count,
            "rmse": math.sqrt(max(square_sum, 0.0) / count) * self.scale,
            "mae": abs_sum / count * self.scale,
            "r2": 1 - square_sum / total if total > 0 else float("nan"),
            "count": int(count),
        }


def running_metrics(
    task: Task,
    device: torch.device,
    scale: float = 1.0,
    sums: torch.Tensor | None = None,
    deferred: bool = False,
) -> RunningClassification | RunningRegression:
    """The running figures of a task's training (task.metrics and the loss): a classification
    counts correct predictions (deferred: at reads, see RunningClassification), a regression
    sums its errors in the target's units (times `scale`, the training target's std)."""
    if task.has_classes:
        return RunningClassification(device, sums=sums, deferred=deferred)
    return RunningRegression(device, scale, sums=sums)


def regression_report(predicted: torch.Tensor, truth: torch.Tensor) -> dict[str, Any]:
    """nntrain-eval's regression figures from predictions and targets in the target's units
    (CPU): scikit-learn's RMSE, MAE and R²."""
    from sklearn import metrics

    p, t = predicted.double().numpy(), truth.double().numpy()
    return {
        "rmse": float(math.sqrt(metrics.mean_squared_error(t, p))),
        "mae": float(metrics.mean_absolute_error(t, p)),
        "r2": float(metrics.r2_score(t, p)),
        "count": len(t),
    }
