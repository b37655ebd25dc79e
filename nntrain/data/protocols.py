"""What the training loop, evaluation and prediction ask of a data object and its loaders.

Every data family (in_memory, tabular, digits, torchvision_sets, image_folder) answers these;
they are checked by mypy, not probed at run time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch

from nntrain.tasks import CLASSIFICATION, Task, task_named

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, integer class targets), on the device


class Loader(Protocol):
    """One split's batches. Training loaders shuffle per (seed, epoch)."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Batch]: ...

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch `epoch` from batch `start_batch` on (a resumed run skips the done ones)."""

    def shard(self, rank: int, world: int) -> None:
        """Under torchrun: this rank takes every world-th sample of each epoch's order."""


class DataModule(Protocol):
    """A data set, built from its config node (`_target_` and the constructor's keyword
    arguments). A regression data set also has `task = REGRESSION.name`, num_classes 1 (the
    model's one output), float targets and `target_mean` / `target_std` (the training target's
    statistics; figures are reported in its units). Optional too: `class_weights`, a tensor of
    one training-loss weight per class, or None (data.class_weights; nntrain.data.class_weights).
    See README, "A data class of your own"."""

    name: str
    num_classes: int
    class_names: list[str]
    input_shape: tuple[int, ...]

    def input_spec(self) -> dict[str, Any]:
        """How to turn a new input into model input without the data set (saved in every
        checkpoint; nntrain-predict reads it)."""

    def setup(self, device: torch.device) -> None:
        """Move what lives on the training device there (once, before the first loader)."""

    def train_loader(self) -> Loader: ...
    def val_loader(self) -> Loader: ...
    def test_loader(self) -> Loader: ...
    def split_sizes(self) -> dict[str, int]: ...


def task_of(data: object) -> Task:
    """CLASSIFICATION, or REGRESSION for data that says so (an optional `task` attribute, the
    task's name; then num_classes is 1, the model's one output, and targets are floats)."""
    return task_named(str(getattr(data, "task", CLASSIFICATION.name)))


def collect(loader: Loader, limit: int | None = None) -> Batch:
    """The first `limit` (or all) inputs and targets of an evaluation loader, concatenated (on
    the device the loader yields them on)."""
    inputs, targets, count = [], [], 0
    for x, y in loader:
        inputs.append(x)
        targets.append(y)
        count += len(x)
        if limit is not None and count >= limit:
            break
    return torch.cat(inputs)[:limit], torch.cat(targets)[:limit]
