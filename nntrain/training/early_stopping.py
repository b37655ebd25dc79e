"""Early stopping on a monitored metric: its state (best, wait) is saved in every checkpoint."""

from __future__ import annotations

import copy
import math
from typing import Any

# The figures a run may monitor are its task's (nntrain.tasks); re-exported for the settings.
from nntrain.tasks import MONITORS, NO_MONITOR, REGRESSION_MONITORS

__all__ = ["MONITORS", "NO_MONITOR", "REGRESSION_MONITORS", "TIE_BREAKERS", "EarlyStopping"]


# An accuracy on a small split moves in coarse steps (1/15 on iris' validation rows), so several
# epochs often share the best one; among them best.pt is the epoch with the lowest loss of the
# same split, rather than the first (which is the least trained).
TIE_BREAKERS = {"val/acc": "val/loss", "train/acc": "train/loss"}


class EarlyStopping:
    """Stops when `monitor` has not improved by more than min_delta for `patience` epochs.

    best.pt is the epoch with the best monitor value; for an accuracy, of the epochs that
    reach the best value, the one with the lowest loss (TIE_BREAKERS). Such a tie does not
    count as an improvement for patience.
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
        # Checked as trainer.early_stopping (nntrain.training.settings).
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1  # the epoch of best.pt
        self.improved_epoch = -1  # the epoch that first reached the best value
        self.best_tie_break = math.inf  # the loss at best_epoch (accuracy monitors)
        self.wait = 0
        # The epoch (0-based) at whose end a search's pruner stopped the run, if it did.
        self.pruned_epoch: int | None = None

    @property
    def tie_breaker(self) -> str | None:
        """The metric that decides between epochs with the same best value, if any."""
        return TIE_BREAKERS.get(self.monitor) if self.mode == "max" else None

    def update(self, value: float, epoch: int, tie_break: float = math.nan) -> bool:
        """Record this epoch's value (and its tie_breaker's); True when its weights become
        best.pt: a new best value, or the best value again with a lower tie_break loss."""
        if self.monitor == NO_MONITOR:  # the latest epoch is the one kept
            self.best, self.best_epoch, self.improved_epoch, self.wait = value, epoch, epoch, 0
            return True
        if self.mode == "max":
            improved = value > self.best + self.min_delta
        else:
            improved = value < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.improved_epoch, self.wait = value, epoch, epoch, 0
            self.best_tie_break = tie_break if not math.isnan(tie_break) else math.inf
            return True
        self.wait += 1
        if self.tie_breaker and value == self.best and tie_break < self.best_tie_break:
            self.best_epoch, self.best_tie_break = epoch, tie_break
            return True
        return False

    def restarted(self) -> EarlyStopping:
        """The same rule with no epoch seen yet: each fit counts from the start."""
        fresh = copy.copy(self)
        fresh.best = math.inf if self.mode == "min" else -math.inf
        fresh.best_epoch, fresh.improved_epoch, fresh.wait = -1, -1, 0
        fresh.best_tie_break = math.inf
        fresh.pruned_epoch = None
        return fresh

    def prune(self, epoch: int) -> None:
        """Stop after this epoch: a search's pruner judged the run not worth finishing."""
        self.pruned_epoch = epoch

    @property
    def should_stop(self) -> bool:
        if self.pruned_epoch is not None:
            return True
        return self.patience is not None and self.wait >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "improved_epoch": self.improved_epoch,
            "best_tie_break": self.best_tie_break,
            "wait": self.wait,
            "pruned_epoch": self.pruned_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        # Checkpoints written before ties were broken have neither.
        self.improved_epoch = state.get("improved_epoch", self.best_epoch)
        self.best_tie_break = state.get("best_tie_break", math.inf)
        self.pruned_epoch = state.get("pruned_epoch")
