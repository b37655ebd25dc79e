"""Which input features a tabular model relies on (the tutorial's exercise 8)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Groups = dict[str, list[int]]  # a table column -> the model inputs made from it (one-hot, ...)


def first_layer_weight_magnitude(
    model: nn.Module, feature_names: list[str], groups: Groups | None = None
) -> dict[str, float]:
    """Mean |w| of the first Linear layer's weights per input feature (per group of inputs,
    when given: the mean over its inputs). Inputs are standardised, so the magnitudes are
    comparable across features."""
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    magnitude = first.weight.detach().abs().mean(dim=0).cpu()
    if groups is not None:
        return {name: float(magnitude[index].mean()) for name, index in groups.items()}
    return dict(zip(feature_names, magnitude.tolist(), strict=True))


def permutation_importance(
    classify: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    feature_names: list[str],
    repeats: int = 5,
    seed: int = 0,
    groups: Groups | None = None,
) -> dict[str, float]:
    """Mean drop of accuracy when one feature's column is shuffled (seeded), per feature: how
    much the model's predictions depend on that feature, measured on held-out data.
    classify: inputs -> predicted classes (the inference path, nntrain.inference.logits).
    groups: shuffle the inputs of each group together (a table column's one-hot inputs)."""
    targets = targets.cpu()

    def accuracy(x: torch.Tensor) -> float:
        return float((classify(x) == targets).float().mean())

    groups = groups or {name: [i] for i, name in enumerate(feature_names)}
    return permutation_drops(accuracy, inputs, groups, repeats, seed)


def permutation_drops(
    quality: Callable[[torch.Tensor], float],
    inputs: torch.Tensor,
    groups: Groups,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Mean drop of quality(inputs) (higher is better: accuracy, R²) when a group of input
    columns is shuffled together (the same seeded row order for all of them), per group."""
    generator = torch.Generator().manual_seed(seed)
    baseline = quality(inputs)
    drops = {}
    for name, columns in groups.items():
        total = 0.0
        for _ in range(repeats):
            shuffled = inputs.clone()
            order = torch.randperm(len(inputs), generator=generator).to(inputs.device)
            for column in columns:
                shuffled[:, column] = inputs[order, column]
            total += baseline - quality(shuffled)
        drops[name] = total / repeats
    return drops
