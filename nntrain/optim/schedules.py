"""Learning-rate schedules: configs/scheduler/*.yaml instantiate to one of these as a partial,
called by the Trainer with the optimizer and the run's step counts.

Every schedule steps once per optimizer step, not per epoch, so warmup and decay are smooth and
do not depend on the number of batches per epoch.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from nntrain.errors import is_number, require


def _warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """Warmup length in optimizer steps; a warmup longer than the run is cut to the run (a
    one-epoch smoke test with the default one-epoch warmup is then all warmup, not an error)."""
    require(total_steps >= 1, "the schedule has no steps: the training set yields no batches.")
    require(
        is_number(warmup_epochs) and warmup_epochs >= 0,
        f"scheduler.warmup_epochs must be a number >= 0, got {warmup_epochs!r}.",
    )
    return min(round(warmup_epochs * steps_per_epoch), total_steps)


def _linear_warmup(step: int, warmup_steps: int) -> float:
    # Step 0 already trains at lr/warmup_steps rather than at 0, so no step is wasted.
    return (step + 1) / warmup_steps


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    min_lr: float = 0.0,
) -> LambdaLR:
    """Linear warmup, then lr_t = min + 0.5 (max - min)(1 + cos(pi t / T)) over the remaining steps.

    t counts steps after warmup and T is their number. max is each group's initial lr; min_lr
    applies to the group with the largest lr and the others keep their ratio to it (a backbone at
    0.1x the head's lr decays to 0.1x min_lr), so relative rates hold through the schedule.
    """
    warmup_steps = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    peak = max(group["lr"] for group in optimizer.param_groups)
    require(
        is_number(min_lr) and 0 <= min_lr <= peak,
        f"scheduler.min_lr must be between 0 and the optimizer's lr ({peak}), got {min_lr!r}.",
    )
    floor = min_lr / peak if peak > 0 else 0.0
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _linear_warmup(step, warmup_steps)
        t = min(step - warmup_steps, decay_steps)
        return floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * t / decay_steps))

    return LambdaLR(optimizer, factor)


def triangle(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    peak_fraction: float = 0.23,
    start_factor: float = 0.2,
    end_factor: float = 0.07,
) -> LambdaLR:
    """Linear from start_factor x lr up to lr at peak_fraction of the run, then linear down to
    end_factor x lr at its end (the airbench speedruns' schedule; a one-cycle shape)."""
    require(
        is_number(peak_fraction) and 0 <= peak_fraction <= 1,
        f"scheduler.peak_fraction must be a number in [0, 1], got {peak_fraction!r}.",
    )
    for key, value in (("start_factor", start_factor), ("end_factor", end_factor)):
        require(
            is_number(value) and value >= 0,
            f"scheduler.{key} must be a number >= 0, got {value!r}.",
        )
    require(total_steps >= 1, "the schedule has no steps: the training set yields no batches.")
    peak = round(peak_fraction * total_steps)

    def factor(step: int) -> float:
        if step < peak:
            return start_factor + (1 - start_factor) * step / peak
        remaining = max(1, total_steps - peak)
        return 1 + (end_factor - 1) * min(step - peak, remaining) / remaining

    return LambdaLR(optimizer, factor)


def step_decay(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    step_epochs: float = 10,
    gamma: float = 0.1,
    warmup_epochs: float = 0.0,
) -> LambdaLR:
    """Multiply the lr by gamma every step_epochs epochs (after an optional linear warmup)."""
    require(
        is_number(step_epochs) and step_epochs > 0,
        f"scheduler.step_epochs must be a number > 0, got {step_epochs!r}.",
    )
    warmup_steps = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    period = max(1, round(step_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _linear_warmup(step, warmup_steps)
        return gamma ** ((step - warmup_steps) // period)

    return LambdaLR(optimizer, factor)


def constant(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
) -> LambdaLR:
    """The optimizer's lr throughout (after an optional linear warmup)."""
    warmup_steps = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)

    def factor(step: int) -> float:
        return _linear_warmup(step, warmup_steps) if step < warmup_steps else 1.0

    return LambdaLR(optimizer, factor)
