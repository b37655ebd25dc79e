"""data.class_weights: weights for the training loss of an imbalanced classification.

`balanced` gives each class n_samples / (n_classes * n_class_samples), counted in the training
split, as scikit-learn's compute_class_weight("balanced") does: every class then contributes
the same total weight to the loss. A list gives one weight per class, in the order of the
data's class names. Only the training loss is weighted; validation and test losses stay plain
cross-entropy, so they are comparable with those of an unweighted run.

The setting is a key of the data group that the training loop reads, not the data class: the
commands take it out of the data node before building the data (nntrain.instantiate) and attach
the weights to the built data object as `class_weights`, an optional attribute of DataModule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nntrain.data.protocols import DataModule, task_of
from nntrain.errors import is_number, require


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


def check_setting(setting: object) -> None:
    """Refuse a bad value before any data is loaded."""
    require(
        setting is None or setting == "balanced" or isinstance(setting, list | tuple),
        f"data.class_weights must be null (off), balanced, or one weight per class such as "
        f"[1.0,5.0], got {setting!r}.",
    )


def setting_of(data_node: Any) -> object:
    """data.class_weights of a data config node as plain Python, checked (before any data
    is loaded)."""
    from omegaconf import ListConfig, OmegaConf

    setting = data_node.get("class_weights") if hasattr(data_node, "get") else None
    if isinstance(setting, ListConfig):
        setting = OmegaConf.to_container(setting)
    check_setting(setting)
    return setting


def attach_class_weights(data: DataModule, setting: object) -> torch.Tensor | None:
    """Compute the loss weights the setting asks for and attach them to data as
    `data.class_weights` (None: unweighted); returns them."""
    check_setting(setting)
    weights = None
    if setting is not None:
        require(
            task_of(data) != "regression",
            "data.class_weights weighs the classes of a classification, and this data is a "
            "regression; leave data.class_weights null.",
        )
        if setting == "balanced":
            targets = getattr(data, "train_targets", None)
            require(
                targets is not None,
                f"data.class_weights=balanced counts the classes of the training split, and "
                f"{type(data).__name__} has no train_targets() to count them in; give the "
                "weights as a list, e.g. data.class_weights=[1.0,5.0].",
            )
            weights = balanced_weights(targets(), data.num_classes)  # type: ignore[misc]
        else:
            weights = explicit_weights(list(setting), data.class_names)  # type: ignore[call-overload]
    data.class_weights = weights  # type: ignore[attr-defined]
    return weights


def describe(weights: torch.Tensor, class_names: Sequence[str]) -> str:
    shown = ", ".join(
        f"{name} {w:.3g}" for name, w in zip(class_names, weights.tolist(), strict=True)
    )
    return f"training loss weighted per class: {shown} (validation and test losses unweighted)"
