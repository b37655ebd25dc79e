"""Data that fits in memory: whole splits as tensors on the training device, batched there.

No Dataset.__getitem__ and no per-sample Python: a batch is one index_select on the device,
and any augmentation or normalisation runs on the whole batch at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nntrain.data.class_weights import (
    balanced_sample_weights,
    epoch_order,
    loss_weights,
)
from nntrain.data.protocols import task_of
from nntrain.data.settings import DataSettings
from nntrain.errors import require
from nntrain.schema import SettingsT, checked

if TYPE_CHECKING:
    from nntrain.data.protocols import DataModule, Loader

# What ImageNet-pretrained weights expect (per RGB channel, pixel values in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BatchTransform = Callable[[torch.Tensor], torch.Tensor]
BatchAugment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def mixed_seed(*numbers: int) -> int:
    """A 64-bit seed mixed from several integers (SeedSequence: (1, 0) and (0, 1) do not collide)."""
    state = np.random.SeedSequence(list(numbers)).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose state is a function of (seed, epoch) only, so the order of epoch e never
    depends on how many epochs ran before it (what an exact resume needs)."""
    return torch.Generator(device=device).manual_seed(mixed_seed(seed, epoch))


class TensorLoader:
    """Iterates (inputs, targets) batches of tensors that already live on the device.

    Shuffled loaders draw a fresh permutation per epoch from (seed, epoch); call set_epoch
    before iterating. Training loaders drop the last partial batch (a batch of one breaks
    BatchNorm, and shuffling means every sample is still seen across epochs). `augment` runs on
    the raw (uint8) batch with a device generator seeded by (seed, epoch, batch index), so every
    batch's augmentation is reproducible on its own; `transform` then turns it into model input.
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
        augment: BatchAugment | None = None,
        sample_weights: torch.Tensor | None = None,
    ) -> None:
        self.inputs = inputs
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last and len(inputs) >= batch_size
        self.transform = transform
        self.augment = augment
        self.sample_weights = sample_weights  # data.sampler=balanced: drawn, not permuted
        self.epoch = 0
        self.start_batch = 0
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> None:
        """Under torchrun: this rank takes every world-th sample of each epoch's order (all ranks
        the same number, so that they take the same number of steps)."""
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch `epoch` from batch `start_batch` on (a resumed run skips the done ones)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        n = len(self.inputs) // self.world
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shuffle:
            order = epoch_order(
                len(self.inputs), epoch_generator(self.seed, self.epoch), self.sample_weights
            )
            shard_size = len(self.inputs) // self.world
            order = order[self.rank :: self.world][:shard_size]
            order = order.to(self.inputs.device, non_blocking=True)
        for batch in range(self.start_batch, len(self)):
            start = batch * self.batch_size
            if self.shuffle:
                index = order[start : start + self.batch_size]
                x, y = self.inputs[index], self.targets[index]
            else:
                x = self.inputs[start : start + self.batch_size]
                y = self.targets[start : start + self.batch_size]
            if self.augment is not None:
                generator = torch.Generator(device=x.device)
                x = self.augment(x, generator.manual_seed(mixed_seed(self.seed, self.epoch, batch)))
            yield (self.transform(x) if self.transform else x), y


class Normalize:
    """uint8 (or any) batch -> float32, (x - mean) / std with per-channel statistics (given in
    the units of the stored data, e.g. 0..255), then optionally resized to size x size with
    `interpolation` (bilinear, bicubic or nearest)."""

    def __init__(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        size: int | tuple[int, int] | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        self.mean = mean
        self.std = std
        self.size = size
        self.interpolation = interpolation

    def to(self, device: torch.device) -> Normalize:
        return Normalize(self.mean.to(device), self.std.to(device), self.size, self.interpolation)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        size = (self.size, self.size) if isinstance(self.size, int) else self.size
        if size is not None and x.shape[-2:] != tuple(size):
            smooth = self.interpolation != "nearest"  # antialias and align_corners: not for nearest
            x = torch.nn.functional.interpolate(
                x,
                size=tuple(size),
                mode=self.interpolation,
                antialias=smooth,
                align_corners=False if smooth else None,
            )
        return x


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
    test_fraction=0 means the data set has its own test split: only train/val are drawn;
    val_fraction=0, no validation split.
    """
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0  # 0: train on all
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
    the device) and self.augment (run on training batches only, before transform).
    setup(device) moves everything to the training device once.
    """

    name: str = "data"
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: list[str]

    def __init__(
        self,
        batch_size: int,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        class_weights: object = None,
        sampler: str | None = None,
    ):
        """test_fraction=0: the data set brings its own test split (see _set_splits);
        class_weights and sampler: data.class_weights and data.sampler
        (nntrain.data.class_weights)."""
        # Checked as data.* (nntrain.data.settings). val_fraction 0: no validation split, every
        # training sample trains (the speedrun, which tests its final weights).
        self.batch_size = batch_size
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.seed = seed
        self.class_weights_setting = (
            list(class_weights) if isinstance(class_weights, list | tuple) else class_weights
        )
        self.sampler = sampler
        self.splits: dict[str, Split] = {}
        self.transform: Normalize | None = None
        self.augment: BatchAugment | None = None
        self.device = torch.device("cpu")

    def _start(self, schema: type[SettingsT], settings: SettingsT | None, values: Any) -> SettingsT:
        """An option's own start (Digits, Moons, ...): its settings, checked as its schema says
        (given checked, or as keyword arguments, Moons(n_samples=200)), then the loader's."""
        s = settings if settings is not None else checked(schema, values)
        if not isinstance(s, schema) or not isinstance(s, DataSettings):
            raise TypeError(
                f"{type(self).__name__} takes its settings as a {schema.__name__} or as keyword "
                f"arguments, got {settings!r}"
            )
        InMemoryData.__init__(
            self,
            batch_size=s.batch_size,
            val_fraction=s.val_fraction,
            test_fraction=getattr(s, "test_fraction", 0.0),  # 0: the set brings its own
            seed=s.seed,
            class_weights=s.class_weights,
            sampler=s.sampler,
        )
        return s

    def _set_splits(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        test: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Split (inputs, targets) into train/val(/test); an official test split comes as `test`."""
        train, val, held_out = split_indices(
            len(inputs), self.val_fraction, 0.0 if test else self.test_fraction, self.seed
        )
        self.splits["train"] = Split(inputs[train], targets[train])
        self.splits["val"] = Split(inputs[val], targets[val])
        self.splits["test"] = Split(*test) if test else Split(inputs[held_out], targets[held_out])

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
            augment=self.augment if train else None,
            sample_weights=self._sample_weights() if train and self.sampler else None,
        )

    def _sample_weights(self) -> torch.Tensor:
        return balanced_sample_weights(self.splits["train"].targets, task_of(self))

    def train_loader(self) -> TensorLoader:
        return self._loader("train", train=True)

    def ordered_train_loader(self) -> TensorLoader:
        """The training split in its stored order, unaugmented, all of it (trainer.overfit_batches)."""
        return self._loader("train", train=False)

    def train_targets(self) -> torch.Tensor:
        """The training split's targets (data.class_weights counts the classes in them)."""
        return self.splits["train"].targets

    @functools.cached_property
    def class_weights(self) -> torch.Tensor | None:
        """The training loss's weight per class that data.class_weights asks for (None: off)."""
        return loss_weights(
            self.class_weights_setting, self.train_targets, self.class_names, task_of(self)
        )

    def val_loader(self) -> TensorLoader:
        return self._loader("val", train=False)

    def test_loader(self) -> TensorLoader:
        return self._loader("test", train=False)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(split.targets) for name, split in self.splits.items()}

    # The brightest stored pixel value: images from files (0..255) are scaled to this range.
    pixel_max: float = 255.0

    def input_spec(self) -> dict[str, Any]:
        """How to turn a new input into model input without the data set: saved in every
        checkpoint, used by nntrain-predict. Images: resize to size, scale to pixel_max,
        normalise with mean/std (in stored units)."""
        if len(self.input_shape) == 1:  # features used as they are
            n = self.input_shape[0]
            names = getattr(self, "feature_names", [f"x{i}" for i in range(n)])
            return {"kind": "tabular", "feature_names": names, "mean": [0.0] * n, "std": [1.0] * n}
        channels, height, width = self.input_shape
        normalize = self.transform or Normalize(torch.zeros(channels), torch.ones(channels))
        return {
            "kind": "image",
            "channels": channels,
            "size": [height, width],
            "pixel_max": self.pixel_max,
            "mean": normalize.mean.flatten().tolist(),
            "std": normalize.std.flatten().tolist(),
            "resize_shorter": None,
            "interpolation": normalize.interpolation,
        }


if TYPE_CHECKING:  # mypy checks that the classes answer the protocols the trainer relies on
    _loader: type[Loader] = TensorLoader
    _data: type[DataModule] = InMemoryData
