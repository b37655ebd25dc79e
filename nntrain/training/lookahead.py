"""Lookahead with a growing decay: every N optimizer steps the weights are pulled towards a slow
moving average of themselves, and continue from it (the fast/slow weights of Lookahead, Zhang
et al. 2019, with the average's decay schedule of the airbench CIFAR-10 speedruns).

decay_t = decay ** every_n_steps * (step / total_steps) ** decay_power: early on the average
barely holds the weights back (training moves fast), at the end it averages strongly. The
average starts at `start_epoch`; at each epoch end the weights are set to it, so evaluation and
checkpoints see the averaged weights.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class Lookahead:
    def __init__(
        self,
        every_n_steps: int | None = None,
        decay: float = 0.95,
        decay_power: float = 3.0,
        start_epoch: int = 0,
    ) -> None:
        # Checked as trainer.lookahead (nntrain.training.settings).
        self.every_n_steps = every_n_steps
        self.decay, self.decay_power, self.start_epoch = decay, decay_power, start_epoch
        self.slow: list[torch.Tensor] | None = None

    def restarted(self) -> Lookahead:
        """The same settings with no average yet: each fit starts its own."""
        fresh = copy.copy(self)
        fresh.slow = None
        return fresh

    @property
    def enabled(self) -> bool:
        return self.every_n_steps is not None

    @staticmethod
    def _averaged(model: nn.Module) -> list[torch.Tensor]:
        # Parameters and floating-point buffers (BatchNorm statistics), as in airbench; the
        # step counter num_batches_tracked is an integer and is left alone.
        return [t for t in model.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def after_step(self, model: nn.Module, epoch: int, step: int, total_steps: int) -> None:
        """Called after optimizer step number `step` (1-based) of epoch `epoch` (0-based)."""
        every = self.every_n_steps
        if every is None or epoch < self.start_epoch or step % every:
            return
        current = self._averaged(model)
        if self.slow is None:
            self.slow = [t.detach().clone() for t in current]
            return
        rho = self.decay**every * (step / total_steps) ** self.decay_power
        for slow, fast in zip(self.slow, current, strict=True):
            slow.lerp_(fast, 1 - rho)
            fast.copy_(slow)

    @torch.no_grad()
    def at_epoch_end(self, model: nn.Module) -> None:
        """Set the weights to the average, so validation and checkpoints use it."""
        if self.slow is not None:
            for fast, slow in zip(self._averaged(model), self.slow, strict=True):
                fast.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": [t.cpu() for t in self.slow] if self.slow is not None else None}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        slow = state.get("slow")
        self.slow = [t.to(device) for t in slow] if slow is not None else None
