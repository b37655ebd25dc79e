"""The learning-rate range test (Leslie Smith, "Cyclical Learning Rates", 2017; fastai's and
Lightning's lr_find): train from the initial weights with a learning rate that grows
exponentially from min_lr to max_lr, one optimizer step each, and watch the loss.

Each step is the training loop's own train_step (same precision, clipping, label smoothing,
class weights, gradient accumulation, MixUp/CutMix). The loss is smoothed with an exponential moving average
(bias-corrected, as fastai does; beta 0.9 where fastai and Lightning take 0.98: over 100 steps
spanning 8 decades, 0.98 averages about 50 steps, 4 decades, and drags the minimum towards
higher lrs; 0.9 averages about 10 steps, under one decade), and the test stops once the smoothed loss exceeds
`divergence` times the best smoothed loss so far (or is not finite). The model's weights,
buffers included, are put back afterwards: the test leaves the model as it found it.

The suggestion is the minimum of the smoothed loss divided by 10 (fastai's "minimum/10"): the
loss still falls fast there and is far from where it diverges. The steepest descent of the
smoothed loss (Lightning's rule) is reported too, but not suggested: on a short, noisy curve its
argmax jumps with a single batch, while the minimum moves little (README explains the choice).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from nntrain.data.protocols import DataModule, Loader, task_of
from nntrain.errors import UserError, require
from nntrain.inference.metrics import RunningClassification, RunningRegression, running_metrics
from nntrain.models.contract import training_fault
from nntrain.optim.optimizers import build_optimizer
from nntrain.training.settings import RangeSettings
from nntrain.training.step import Batch, StepParts, optimizer_step_groups, train_step
from nntrain.training.trainer import Trainer, loss_weights, mixing_of

RULE = "minimum of the smoothed loss / 10"


@dataclass
class RangeTest:
    """What the test saw, one entry per optimizer step, and what it suggests."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    stopped: str = "reached lr_find.max_lr"
    suggestion: float = math.nan
    steepest: float = math.nan  # the steepest descent's lr, for comparison
    rule: str = RULE

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def suggest(test: RangeTest) -> None:
    """Fill in the suggestion (minimum / 10) and the steepest descent's lr."""
    finite = [(s, lr) for s, lr in zip(test.smoothed, test.lrs, strict=True) if math.isfinite(s)]
    require(
        len(finite) >= 3,
        "the loss was not finite from the first steps of the range test on; lower "
        "lr_find.min_lr (or check the data for NaN/Inf).",
    )
    test.suggestion = min(finite)[1] / 10
    # Steepest descent: the most negative slope of the smoothed loss over log(lr), ignoring
    # the first tenth of the steps (the average is still warming up there).
    start = max(1, len(finite) // 10)
    slopes = [
        (finite[i][0] - finite[i - 1][0]) / math.log(finite[i][1] / finite[i - 1][1])
        for i in range(start, len(finite))
    ]
    test.steepest = finite[start + min(range(len(slopes)), key=slopes.__getitem__)][1]


def endless_steps(loader: Loader, accumulate: int) -> Iterator[tuple[int, int, list[Batch]]]:
    """(epoch, index of its first batch, the micro-batches) of one optimizer step after
    another, epoch after epoch."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        for done, group in optimizer_step_groups(loader, 0, len(loader), accumulate):
            yield epoch, done - len(group), group
        epoch += 1


def range_test(
    trainer: Trainer,
    model: torch.nn.Module,
    data: DataModule,
    optimizer: Callable[..., torch.optim.Optimizer],
    settings: RangeSettings,
) -> RangeTest:
    """Run the LR range test with the trainer's settings; model is left as it was given."""
    data.setup(trainer.device)
    compute = trainer.compute_for(model)
    model = trainer._place_model(model, data, compute, resuming=False)
    initial = copy.deepcopy(model.state_dict())  # the test trains a copy of these weights
    opt = build_optimizer(optimizer, model, trainer.fused_optimizer)
    base = float(opt.defaults["lr"])  # optimizer.lr; other groups keep their ratio to it
    require(
        base > 0,
        f"optimizer.lr must be a number > 0, got {base:g}: the range test keeps each parameter "
        "group's lr in its ratio to it; leave optimizer.lr at its default or set e.g. 1e-3.",
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: settings.lr_at(step) / base)
    task = task_of(data)
    parts = StepParts(
        model=model,
        forward=model,
        optimizer=opt,
        scheduler=schedule,
        scaler=compute.grad_scaler(),
        compute=compute,
        grad_clip=trainer.grad_clip,
        label_smoothing=trainer.label_smoothing,
        distributed=False,
        task=task,
        class_weights=loss_weights(data, trainer.device),
        grad_clip_mode=trainer.grad_clip_mode,
    )
    running = running_metrics(task, trainer.device)
    test = RangeTest()
    model.train()
    try:
        steps = endless_steps(data.train_loader(), trainer.accumulate)
        mixing = mixing_of(data)  # MixUp/CutMix as in training
        for step, (epoch, first, micro_batches) in zip(range(settings.steps), steps, strict=False):
            if mixing is not None:
                micro_batches = mixing.mix_group(micro_batches, data.num_classes, epoch, first, 0)
            before = running.snapshot()
            train_step_or_refuse(parts, micro_batches, running)
            if record(test, settings, settings.lr_at(step), running.compute(since=before)["loss"]):
                break
    finally:
        model.load_state_dict(initial)
    suggest(test)
    return test


def train_step_or_refuse(
    parts: StepParts,
    micro_batches: list[Batch],
    running: RunningClassification | RunningRegression,
) -> None:
    """train_step, with the errors of the user's making (a batch size of one under BatchNorm,
    an error in their model's code) said as `nntrain` says them (contract.training_fault)."""
    try:
        train_step(parts, micro_batches, running)
    except UserError:
        raise
    except Exception as error:
        fault = training_fault(error, parts.model)
        if fault is not None:
            raise UserError(fault) from error
        raise


def record(test: RangeTest, settings: RangeSettings, lr: float, loss: float) -> bool:
    """Add one step's loss; True when the loss has diverged (the test stops)."""
    beta = settings.smoothing
    previous = test.smoothed[-1] if test.smoothed else 0.0
    # The bias-corrected moving average, carried uncorrected between steps.
    raw_previous = previous * (1 - beta ** len(test.smoothed)) if test.smoothed else 0.0
    average = beta * raw_previous + (1 - beta) * loss
    smoothed = average / (1 - beta ** (len(test.smoothed) + 1))
    test.lrs.append(lr)
    test.losses.append(loss)
    test.smoothed.append(smoothed)
    best = min((s for s in test.smoothed if math.isfinite(s)), default=math.inf)
    if not math.isfinite(smoothed):
        test.stopped = f"the loss became {loss} at lr {lr:.3g}"
        return True
    if len(test.smoothed) > 1 and smoothed > settings.divergence * best:
        test.stopped = (
            f"the smoothed loss exceeded {settings.divergence:g}x its minimum at lr {lr:.3g}"
        )
        return True
    return False
