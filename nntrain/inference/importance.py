"""Which input features a tabular model relies on (the tutorial's exercise 8)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def first_layer_weight_magnitude(model: nn.Module, feature_names: list[str]) -> dict[str, float]:
    """Mean |w| of the first Linear layer's weights per input feature. Inputs are standardised,
    so the magnitudes are comparable across features."""
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    magnitude = first.weight.detach().abs().mean(dim=0).cpu()
    return dict(zip(feature_names, magnitude.tolist(), strict=True))


def permutation_importance(
    classify: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    feature_names: list[str],
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Mean drop of accuracy when one feature's column is shuffled (seeded), per feature: how
    much the model's predictions depend on that feature, measured on held-out data.
    classify: inputs -> predicted classes (the inference path, nntrain.inference.logits)."""
    targets = targets.cpu()
    generator = torch.Generator().manual_seed(seed)

    def accuracy(x: torch.Tensor) -> float:
        return float((classify(x) == targets).float().mean())

    baseline = accuracy(inputs)
    drops = {}
    for column, name in enumerate(feature_names):
        total = 0.0
        for _ in range(repeats):
            shuffled = inputs.clone()
            order = torch.randperm(len(inputs), generator=generator).to(inputs.device)
            shuffled[:, column] = inputs[order, column]
            total += baseline - accuracy(shuffled)
        drops[name] = total / repeats
    return drops
