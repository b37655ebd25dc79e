"""Learning-rate schedules: each scheduler option (nntrain.optim.settings) instantiates to one
of these as a partial, called by the Trainer with the optimizer and the run's step counts.

Every schedule steps once per optimizer step, not per epoch, so warmup and decay are smooth and
do not depend on the number of batches per epoch; except plateau, which reacts to a validation
figure and so steps once per epoch, after validation (the Trainer sees a PlateauSchedule).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR, ReduceLROnPlateau

from nntrain.errors import require


def _warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """Warmup length in optimizer steps; a warmup longer than the run is cut to the run (a
    one-epoch smoke test with the default one-epoch warmup is then all warmup, not an error).
    The schedules' values are checked as scheduler.* (nntrain.optim.settings); what is left
    here compares them with the optimizer and the run."""
    require(total_steps >= 1, "the schedule has no steps: the training set yields no batches.")
    return min(round(warmup_epochs * steps_per_epoch), total_steps)


def _after_warmup(
    optimizer: torch.optim.Optimizer, warmup_steps: int, after: Callable[[int], float]
) -> LambdaLR:
    """A linear warmup over warmup_steps, then the factor after(t), t counting the steps after
    it. Step 0 already trains at lr/warmup_steps rather than at 0, so no step is wasted."""

    def factor(step: int) -> float:
        return (step + 1) / warmup_steps if step < warmup_steps else after(step - warmup_steps)

    return LambdaLR(optimizer, factor)


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
        min_lr <= peak,
        f"scheduler.min_lr must be between 0 and the optimizer's lr ({peak}), got {min_lr!r}.",
    )
    floor = min_lr / peak if peak > 0 else 0.0
    decay = max(1, total_steps - warmup_steps)
    return _after_warmup(
        optimizer,
        warmup_steps,
        lambda t: floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * min(t, decay) / decay)),
    )


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
    require(total_steps >= 1, "the schedule has no steps: the training set yields no batches.")
    peak = round(peak_fraction * total_steps)
    down = max(1, total_steps - peak)

    def factor(step: int) -> float:
        if step < peak:
            return start_factor + (1 - start_factor) * step / peak
        return 1 + (end_factor - 1) * min(step - peak, down) / down

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
    warmup_steps = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    period = max(1, round(step_epochs * steps_per_epoch))
    return _after_warmup(optimizer, warmup_steps, lambda t: gamma ** (t // period))


def constant(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
) -> LambdaLR:
    """The optimizer's lr throughout (after an optional linear warmup)."""
    warmup_steps = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    return _after_warmup(optimizer, warmup_steps, lambda t: 1.0)


def one_cycle(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    max_lr: float | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
    cycle_momentum: bool = True,
) -> OneCycleLR:
    """torch's OneCycleLR over the run's optimizer steps: up from max_lr/div_factor to max_lr
    over pct_start of the run, then down to max_lr/(div_factor*final_div_factor).

    max_lr null = each group's lr (optimizer.lr); a number sets the largest group's peak and the
    others keep their ratio to it, as min_lr does for the cosine schedule."""
    require(total_steps >= 1, "the schedule has no steps: the training set yields no batches.")
    peak = max(group["lr"] for group in optimizer.param_groups)
    check_phases(float(pct_start), total_steps, three_phase)
    scale = (max_lr / peak) if max_lr is not None and peak > 0 else 1.0
    if cycle_momentum:
        check_cyclable_momentum(optimizer)
    return OneCycle(
        optimizer,
        max_lr=[group["lr"] * scale for group in optimizer.param_groups],
        total_steps=total_steps,
        pct_start=float(pct_start),  # torch refuses the ints 0 and 1
        anneal_strategy=anneal_strategy,  # type: ignore[arg-type]
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        three_phase=three_phase,
        cycle_momentum=cycle_momentum,
    )


def check_cyclable_momentum(optimizer: torch.optim.Optimizer) -> None:
    """OneCycle's momentum cycle needs a momentum (or Adam's betas) other than 0."""
    require(
        all("momentum" in group or "betas" in group for group in optimizer.param_groups),
        f"scheduler=onecycle cycles the momentum, and {type(optimizer).__name__} has none; "
        "set scheduler.cycle_momentum=false.",
    )
    # SGD with momentum=0 would be cycled to 0.85..0.95: a different optimizer than asked.
    require(
        all(group.get("momentum", 1) != 0 for group in optimizer.param_groups),
        "scheduler=onecycle cycles the momentum between 0.85 and 0.95, and the optimizer's "
        "momentum is 0; set optimizer.momentum=0.9 or scheduler.cycle_momentum=false.",
    )


def check_phases(pct_start: float, total_steps: int, three_phase: bool) -> None:
    """Each phase of OneCycleLR must span some steps: torch divides by a phase's length, so
    pct_start=1, or pct_start x total_steps = 1 (0.2 over 5 steps), ended in a
    ZeroDivisionError. The phase ends are torch's own."""
    ends = (
        [pct_start * total_steps - 1, 2 * pct_start * total_steps - 2, total_steps - 1]
        if three_phase
        else [pct_start * total_steps - 1, total_steps - 1]
    )
    starts = [0.0, *ends[:-1]]
    require(
        all(end != start for start, end in zip(starts, ends, strict=True)),
        f"scheduler.pct_start={pct_start:g} leaves a phase of the one-cycle schedule without "
        f"optimizer steps in this run's {total_steps}; choose another share, e.g. "
        "scheduler.pct_start=0.3.",
    )


class OneCycle(OneCycleLR):
    """OneCycleLR whose length is the run's, also when resumed with another trainer.max_epochs:
    torch's load_state_dict would bring back the saved length, and stepping past it raises.
    (The other schedules, whose length is in their closure, behave the same way.)"""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        own = {key: getattr(self, key) for key in ("total_steps", "_schedule_phases")}
        super().load_state_dict({**state_dict, **own})


class PlateauSchedule(ReduceLROnPlateau):
    """torch's ReduceLROnPlateau, stepped once per epoch after validation with the monitored
    figure (the Trainer does that; it never steps it per optimizer step). monitor and mode None:
    those of trainer.early_stopping, filled in by the Trainer through follow()."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        monitor: str | None,
        mode: str | None,
        **settings: Any,
    ) -> None:
        super().__init__(optimizer, mode="max" if mode == "max" else "min", **settings)
        self.monitor = monitor
        self.mode_given = mode is not None

    def follow(self, monitor: str, mode: str) -> None:
        """Monitor the early-stopping figure unless scheduler.monitor chose another; the mode
        follows the figure: its own unless given."""
        if self.monitor is None:
            self.monitor = monitor
            if not self.mode_given:
                self._init_is_better(mode, self.threshold, self.threshold_mode)
        elif not self.mode_given:
            self._init_is_better(mode_of(self.monitor), self.threshold, self.threshold_mode)
        self._reset()


def mode_of(monitor: str) -> str:
    """Whether a figure improves going up (accuracy, R²) or down (losses and errors)."""
    return "min" if monitor.rsplit("/", 1)[-1] in ("loss", "rmse", "mae") else "max"


def plateau(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    monitor: str | None = None,
    mode: str | None = None,
    factor: float = 0.1,
    patience: int = 3,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: float = 0.0,
) -> PlateauSchedule:
    """Multiply the lr by factor when the monitored figure has not improved for `patience`
    epochs (torch's ReduceLROnPlateau, stepped per epoch after validation)."""
    # torch never raises an lr to min_lr: one above the optimizer's lr would silently mean
    # that the lr is never reduced.
    peak = max(group["lr"] for group in optimizer.param_groups)
    require(
        min_lr <= peak,
        f"scheduler.min_lr ({min_lr}) is above the optimizer's lr ({peak}), so the lr would never "
        "be reduced; set scheduler.min_lr below it, e.g. scheduler.min_lr=0.",
    )
    return PlateauSchedule(
        optimizer,
        monitor,
        mode,
        factor=factor,
        patience=patience,
        threshold=threshold,
        threshold_mode=threshold_mode,
        cooldown=cooldown,
        min_lr=min_lr,
    )
