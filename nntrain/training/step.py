"""One optimizer step: everything the training loop does between two updates of the weights.

train_step is the hot path, written as one function so that it can be compiled or captured as
a unit: forward and loss under autocast for each micro-batch, scaled backward (DDP syncs the
gradients only at the last micro-batch), unscale and clip, the optimizer and scaler steps and
the schedule. Metric sums accumulate on the device; nothing here waits for the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from nntrain.data.mixing import dominant_labels
from nntrain.devices import Compute
from nntrain.inference.metrics import RunningClassification, RunningRegression
from nntrain.tasks import CLASSIFICATION, Task

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class StepParts:
    """What one optimizer step reads and updates."""

    model: nn.Module  # the plain module: its parameters are clipped
    forward: nn.Module  # what the forward calls: the model, or its DDP / compiled wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None  # None: stepped per epoch (plateau)
    scaler: torch.amp.GradScaler
    compute: Compute  # device, autocast dtype and memory layout
    grad_clip: float | None
    label_smoothing: float
    distributed: bool  # DDP: skip the gradient all-reduce on all but the last micro-batch
    task: Task = CLASSIFICATION  # its loss: cross-entropy, or a regression's MSE
    class_weights: torch.Tensor | None = None  # data.class_weights (training loss only)
    grad_clip_mode: str = "norm"  # clip the gradient's norm to grad_clip, or each element (value)


def train_step(
    parts: StepParts,
    micro_batches: list[Batch],
    running: RunningClassification | RunningRegression,
    measure_grad_norm: bool = False,
) -> torch.Tensor | None:
    """One optimizer step over its micro-batches (one, without gradient accumulation); each
    contributes 1/k of the gradient. Returns the gradient norm before clipping when clipping
    by norm or asked to measure it, else None."""
    grad_norm = update_weights(parts, micro_batches, running, measure_grad_norm)
    if parts.scheduler is not None:
        parts.scheduler.step()
    return grad_norm


def update_weights(
    parts: StepParts,
    micro_batches: list[Batch],
    running: RunningClassification | RunningRegression,
    measure_grad_norm: bool = False,
) -> torch.Tensor | None:
    """train_step without the schedule: everything that runs on the device, which
    compiled_step.py compiles (and graphed_step.py records as a CUDA graph) as a unit."""
    group_size = len(micro_batches)
    for index, (inputs, targets) in enumerate(micro_batches):
        last = index == group_size - 1
        # DDP all-reduces the gradients at every backward: only at a step's last micro-batch.
        sync = parts.forward.no_sync() if parts.distributed and not last else nullcontext()  # type: ignore[operator]
        with sync:
            with parts.compute.autocast():
                logits = parts.forward(parts.compute.to_model_layout(inputs))
                loss = parts.task.loss(logits, targets, parts.class_weights, parts.label_smoothing)
            parts.scaler.scale(loss / group_size if group_size > 1 else loss).backward()
        # Soft (MixUp/CutMix) targets: accuracy counts the label a target is mostly made of.
        running.update(
            loss, logits, dominant_labels(targets) if parts.task.has_classes else targets
        )
    grad_norm = None
    if parts.grad_clip is not None or measure_grad_norm:
        # Clip (and log) the true gradient, not the loss-scaled one.
        parts.scaler.unscale_(parts.optimizer)
        by_value = parts.grad_clip is not None and parts.grad_clip_mode == "value"
        if measure_grad_norm or not by_value:
            # The norm before clipping; max_norm=inf only measures it.
            grad_norm = nn.utils.clip_grad_norm_(
                parts.model.parameters(),
                float("inf") if by_value or parts.grad_clip is None else parts.grad_clip,
            )
        if by_value:
            nn.utils.clip_grad_value_(parts.model.parameters(), parts.grad_clip)  # type: ignore[arg-type]
    parts.scaler.step(parts.optimizer)  # under fp16, skips a step with inf/NaN gradients
    parts.scaler.update()
    parts.optimizer.zero_grad(set_to_none=True)
    return grad_norm


def optimizer_step_groups(
    batches: Iterable[Batch], first_batch: int, n_batches: int, accumulate: int
) -> Iterator[tuple[int, list[Batch]]]:
    """The batches of an epoch from first_batch on, grouped into the micro-batches of each
    optimizer step (accumulate per step; the last group of an epoch may be shorter), with the
    number of batches done after each group."""
    group: list[Batch] = []
    for index, batch in enumerate(batches, start=first_batch):
        if index >= n_batches:
            break
        group.append(batch)
        group_start = index - index % accumulate
        if index + 1 - group_start == min(accumulate, n_batches - group_start):
            yield index + 1, group
            group = []
