"""An exponential moving average (EMA) of the weights, for validation, best.pt and the test.

torch's own AveragedModel does the averaging (parameters and buffers, use_buffers=True, so
BatchNorm statistics are averaged too): after optimizer step t,

    ema_1 = w_1,    ema_t = decay_t * ema_(t-1) + (1 - decay_t) * w_t

with decay_t = decay, or with warmup min(decay, (1 + t) / (10 + t)) (TensorFlow's
ExponentialMovingAverage num_updates rule): a short run is then not dominated by its first
weights. The raw weights keep training; the average only follows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from nntrain.training.settings import EmaSettings


def start_ema(settings: EmaSettings, model: nn.Module) -> WeightEma | None:
    """The average trainer.ema asks for (None: off); each fit makes its own."""
    return WeightEma(model, settings.decay, settings.warmup) if settings.decay is not None else None


class WeightEma:
    """The average of one model's weights; `module` is a model like it, holding the average."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        self.decay, self.warmup = decay, warmup
        # Kept on the host: torch reads n_averaged at every update, and on the host that read
        # needs no device sync. Our own count gives the warmup's decay without one either.
        self.updates = 0
        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
        self.averaged.eval()

    @property
    def module(self) -> nn.Module:
        """The averaged model (validate, checkpoint as best.pt, test this one)."""
        return self.averaged.module

    def current_decay(self) -> float:
        """The decay of the next update (t = the number of updates so far + 1)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates + 1) / (10 + self.updates + 1))

    def _average(
        self,
        ema: list[torch.Tensor] | tuple[torch.Tensor, ...],
        current: list[torch.Tensor] | tuple[torch.Tensor, ...],
        count: torch.Tensor | int,
    ) -> None:
        get_ema_multi_avg_fn(self.current_decay())(ema, current, count)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """After each optimizer step: fold the model's new weights into the average."""
        self.averaged.update_parameters(model)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """How many updates the average has had (its weights are the checkpoint's model)."""
        return {"updates": self.updates, "decay": self.decay, "warmup": self.warmup}

    def load(self, weights: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(weights)
        self.updates = int(state["updates"])
        self.averaged.n_averaged.fill_(self.updates)
