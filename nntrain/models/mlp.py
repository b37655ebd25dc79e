"""The tutorial's multi-layer perceptron: (Linear -> BatchNorm1d -> ReLU -> Dropout) x N -> Linear."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from nntrain.errors import is_number, require
from nntrain.models.layers import Dropout


class MLP(nn.Module):
    """Flattens any input (features or images) and classifies it with hidden layers of the given sizes."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (512, 256, 128),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        require(
            isinstance(hidden, Sequence) and not isinstance(hidden, str),  # ListConfig too
            f"model.hidden must be a list of positive integers, got {hidden!r}; "
            "for example model.hidden=[256,128] (one layer: model.hidden=[512]).",
        )
        hidden = list(hidden)
        require(
            all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden),
            f"model.hidden must be a list of positive integers, got {hidden!r}; "
            "for example model.hidden=[256,128].",
        )
        require(
            is_number(dropout) and 0 <= dropout < 1,
            f"model.dropout must be a number in [0, 1), got {dropout!r}; for example model.dropout=0.3.",
        )
        sizes = [math.prod(input_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for size_in, size_out in itertools.pairwise(sizes):
            layers += [
                nn.Linear(size_in, size_out),
                nn.BatchNorm1d(size_out),
                nn.ReLU(inplace=True),
                Dropout(dropout),
            ]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
