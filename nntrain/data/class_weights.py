"""data.class_weights: weights for the training loss of an imbalanced classification.

`balanced` gives each class n_samples / (n_classes * n_class_samples), counted in the training
split, as scikit-learn's compute_class_weight("balanced") does: every class then contributes
the same total weight to the loss. A list gives one weight per class, in the order of the
data's class names. Only the training loss is weighted; validation and test losses stay plain
cross-entropy, so they are comparable with those of an unweighted run.

Each data class takes the setting (the `class_weights` key of its config) and answers the
optional DataModule attribute `class_weights` (a tensor, or None) with `loss_weights` below;
the trainer passes it to the training step's cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from nntrain.errors import is_number, require
from nntrain.tasks import CLASSIFICATION, Task


def balanced_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (k * count_c) per class c; a class absent from the training split gets weight 0
    (it has no sample to weigh, and an infinite weight would mean nothing)."""
    counts = torch.bincount(targets.long().flatten().cpu(), minlength=num_classes).double()
    weights = len(targets) / (num_classes * counts)
    return torch.where(counts > 0, weights, torch.zeros_like(weights)).float()


def explicit_weights(values: Sequence[object], class_names: Sequence[str]) -> torch.Tensor:
    require(
        len(values) == len(class_names) and all(is_number(v) and v >= 0 for v in values),  # type: ignore[operator]
        f"data.class_weights must list one number >= 0 per class ({len(class_names)}: "
        f"{', '.join(class_names)}), got {list(values)!r}; or use data.class_weights=balanced.",
    )
    require(
        any(v > 0 for v in values),  # type: ignore[operator]
        "data.class_weights are all 0; give at least one class a weight > 0.",
    )
    return torch.tensor([float(v) for v in values])  # type: ignore[arg-type]


def loss_weights(
    setting: object,
    train_targets: Callable[[], torch.Tensor],
    class_names: Sequence[str],
    task: Task = CLASSIFICATION,
) -> torch.Tensor | None:
    """The per-class weights of the training loss that `setting` asks for (None: unweighted)."""
    if setting is None:
        return None
    require(
        task.has_classes,
        "data.class_weights weighs the classes of a classification, and this data is a "
        "regression; leave data.class_weights null.",
    )
    if setting == "balanced":
        return balanced_weights(train_targets(), len(class_names))
    return explicit_weights(setting, class_names)  # type: ignore[arg-type]




def balanced_sample_weights(targets: torch.Tensor, task: Task = CLASSIFICATION) -> torch.Tensor:
    """data.sampler=balanced: each training sample's chance of being drawn, 1 / (its class's
    count), so that every class is drawn equally often (torch's WeightedRandomSampler recipe)."""
    require(
        task.has_classes,
        "data.sampler=balanced draws the classes of a classification equally often, and this "
        "data is a regression; leave data.sampler null.",
    )
    targets = targets.long().flatten().cpu()
    counts = torch.bincount(targets).double()
    return (1.0 / counts)[targets]


def epoch_order(
    n: int, generator: torch.Generator, sample_weights: torch.Tensor | None
) -> torch.Tensor:
    """The sample indices of one epoch: a permutation, or with sample_weights n draws with
    replacement in proportion to them (as WeightedRandomSampler draws), from generator only."""
    if sample_weights is None:
        return torch.randperm(n, generator=generator)
    return torch.multinomial(sample_weights, n, replacement=True, generator=generator)


def describe(weights: torch.Tensor, class_names: Sequence[str]) -> str:
    shown = ", ".join(
        f"{name} {w:.3g}" for name, w in zip(class_names, weights.tolist(), strict=True)
    )
    return f"training loss weighted per class: {shown} (validation and test losses unweighted)"
