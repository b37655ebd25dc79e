"""Data that fits in memory: whole splits as tensors on the training device, batched there.

No Dataset.__getitem__ and no per-sample Python: a batch is one index_select on the device,
and any augmentation or normalisation runs on the whole batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from nntrain.errors import check_fraction, check_positive_int, require

BatchTransform = Callable[[torch.Tensor], torch.Tensor]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose state is a function of (seed, epoch) only.

    SeedSequence mixes the pair properly, so (seed=1, epoch=0) and (seed=0, epoch=1) do not
    collide, and the order of epoch e never depends on how many epochs ran before it (resume).
    """
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class TensorLoader:
    """Iterates (inputs, targets) batches of tensors that already live on the device.

    Shuffled loaders draw a fresh permutation per epoch from (seed, epoch); call set_epoch
    before iterating. Training loaders drop the last partial batch (a batch of one breaks
    BatchNorm, and shuffling means every sample is still seen across epochs).
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        transform: BatchTransform | None = None,
    ) -> None:
        self.inputs = inputs
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last and len(inputs) >= batch_size
        self.transform = transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.inputs)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.inputs)
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch))
            order = order.to(self.inputs.device, non_blocking=True)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            if self.shuffle:
                index = order[start : start + self.batch_size]
                x, y = self.inputs[index], self.targets[index]
            else:
                x = self.inputs[start : start + self.batch_size]
                y = self.targets[start : start + self.batch_size]
            yield (self.transform(x) if self.transform else x), y


class Normalize:
    """uint8 (or any) batch -> float32, (x - mean) / std with per-channel statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean = mean
        self.std = std

    def to(self, device: torch.device) -> Normalize:
        return Normalize(self.mean.to(device), self.std.to(device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


@dataclass
class Split:
    inputs: torch.Tensor
    targets: torch.Tensor


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train/val/test index sets of a data set of n samples.

    The test split comes from a fixed permutation, so every run (any seed) is scored on the
    same held-out samples; the validation split is drawn from the rest with the run's seed.
    """
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    require(
        n - n_test - n_val >= 1,
        f"data.val_fraction + data.test_fraction leave no training samples "
        f"({val_fraction} + {test_fraction} of {n}); lower one of them.",
    )
    fixed = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    test, rest = fixed[:n_test], fixed[n_test:]
    rest = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed))]
    return rest[n_val:], rest[:n_val], test


class InMemoryData:
    """Base of the data sets that fit in memory.

    Subclasses fill self.splits (uint8 images or float features, on the CPU), num_classes,
    input_shape and class_names in __init__, and may set self.transform (run on each batch on
    the device). setup(device) moves everything to the training device once.
    """

    name: str = "data"
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: list[str]

    def __init__(self, batch_size: int, val_fraction: float, test_fraction: float, seed: int):
        self.batch_size = check_positive_int("data.batch_size", batch_size, example=64)
        self.val_fraction = check_fraction("data.val_fraction", val_fraction)
        self.test_fraction = check_fraction("data.test_fraction", test_fraction, example=0.2)
        self.seed = seed
        self.splits: dict[str, Split] = {}
        self.transform: Normalize | None = None
        self.device = torch.device("cpu")

    def _set_splits(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        train, val, test = split_indices(
            len(inputs), self.val_fraction, self.test_fraction, self.seed
        )
        for name, index in (("train", train), ("val", val), ("test", test)):
            self.splits[name] = Split(inputs[index], targets[index])

    def setup(self, device: torch.device) -> None:
        self.device = device
        for split in self.splits.values():
            split.inputs = split.inputs.to(device)
            split.targets = split.targets.to(device)
        if self.transform is not None:
            self.transform = self.transform.to(device)

    def _loader(self, split: str, train: bool) -> TensorLoader:
        data = self.splits[split]
        return TensorLoader(
            data.inputs,
            data.targets,
            self.batch_size,
            shuffle=train,
            seed=self.seed,
            drop_last=train,
            transform=self.transform,
        )

    def train_loader(self) -> TensorLoader:
        return self._loader("train", train=True)

    def val_loader(self) -> TensorLoader:
        return self._loader("val", train=False)

    def test_loader(self) -> TensorLoader:
        return self._loader("test", train=False)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(split.targets) for name, split in self.splits.items()}
