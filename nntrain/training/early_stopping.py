"""Early stopping on a monitored metric: its state (best, wait) is saved in every checkpoint."""

from __future__ import annotations

import copy
import math
from typing import Any

from nntrain.errors import is_number, require

MONITORS = ("val/acc", "val/loss", "train/acc", "train/loss")
NO_MONITOR = "none"  # no figure picks the weights: the final ones are kept and tested
# A regression's figures (data.task=regression), in the target's units; R² is best at its max.
REGRESSION_MONITORS = tuple(
    f"{split}/{name}" for split in ("val", "train") for name in ("rmse", "mae", "r2")
)


class EarlyStopping:
    """Stops when `monitor` has not improved by more than min_delta for `patience` epochs.

    patience=None never stops (the monitor still decides which checkpoint is best.pt).
    monitor="none": no metric picks the weights: every epoch counts as the best, so best.pt
    and the test are the final weights (a schedule that ends where it should, as the
    speedrun's; needed when data.val_fraction=0 leaves no validation split).
    """

    def __init__(
        self,
        monitor: str = "val/acc",
        mode: str = "max",
        patience: int | None = 7,
        min_delta: float = 0.0,
    ) -> None:
        require(
            monitor in (*MONITORS, NO_MONITOR, *REGRESSION_MONITORS),
            f"trainer.early_stopping.monitor must be one of {', '.join(MONITORS)}, none (for a "
            f"regression also {', '.join(REGRESSION_MONITORS)}), got {monitor!r}.",
        )
        require(
            mode in ("min", "max"),
            f"trainer.early_stopping.mode must be 'min' or 'max', got {mode!r}.",
        )
        require(
            patience is None
            or (isinstance(patience, int) and not isinstance(patience, bool) and patience >= 1),
            f"trainer.early_stopping.patience must be a positive integer or null (never stop), got {patience!r}.",
        )
        require(
            is_number(min_delta) and min_delta >= 0,
            f"trainer.early_stopping.min_delta must be a number >= 0, got {min_delta!r}.",
        )
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record this epoch's value; True when it is a new best (then best.pt is written)."""
        if self.monitor == NO_MONITOR:  # the latest epoch is the one kept
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        if self.mode == "max":
            improved = value > self.best + self.min_delta
        else:
            improved = value < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return improved

    def restarted(self) -> EarlyStopping:
        """The same rule with no epoch seen yet: each fit counts from the start."""
        fresh = copy.copy(self)
        fresh.best = math.inf if self.mode == "min" else -math.inf
        fresh.best_epoch, fresh.wait = -1, 0
        return fresh

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.wait >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
