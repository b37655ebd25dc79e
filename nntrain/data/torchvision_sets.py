"""torchvision's classic data sets (MNIST, FashionMNIST, CIFAR-10, CIFAR-100), held in memory.

torchvision's own classes find, download (with their md5 checks) and decode the files; then each
split becomes one uint8 tensor that moves to the training device once. Batches are cut,
augmented and normalised there: no PIL and no per-sample Python while training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nntrain.data.augment import CropFlip
from nntrain.data.downloads import network_timeout, unreachable_reason
from nntrain.data.in_memory import IMAGENET_MEAN, IMAGENET_STD, InMemoryData, Normalize
from nntrain.data.mixing import Mixing
from nntrain.errors import UserError, check_positive_int, first_line, require


@dataclass(frozen=True)
class VisionSpec:
    title: str
    torchvision_class: str
    mean: tuple[float, ...]  # of the training split, pixel values scaled to [0, 1]
    std: tuple[float, ...]
    augment: bool  # crop + flip by default: right for natural images, wrong for digits


SPECS = {
    "mnist": VisionSpec("MNIST", "MNIST", (0.1307,), (0.3081,), augment=False),
    "fashion_mnist": VisionSpec(
        "FashionMNIST", "FashionMNIST", (0.2860,), (0.3530,), augment=False
    ),
    "cifar10": VisionSpec(
        "CIFAR-10", "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), augment=True
    ),
    "cifar100": VisionSpec(
        "CIFAR-100", "CIFAR100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), augment=True
    ),
}

DOWNLOAD_TIMEOUT_S = 30.0


def default_root() -> str:
    """$NNTRAIN_DATA_DIR, else ~/.cache/nntrain/data (respecting $XDG_CACHE_HOME)."""
    if os.environ.get("NNTRAIN_DATA_DIR"):
        return os.environ["NNTRAIN_DATA_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.join(cache, "nntrain", "data")


def archives(cls: Any, root: Path) -> tuple[list[Path], str]:
    """The files torchvision downloads (and unpacks) for a data set, and where it gets them."""
    if hasattr(cls, "resources"):  # MNIST family: four .gz files in <root>/<Class>/raw
        folder = root / cls.__name__ / "raw"
        return [folder / name for name, _md5 in cls.resources], cls.mirrors[0]
    return [root / cls.filename], cls.url.removesuffix(cls.filename)  # CIFAR: one archive


class TorchvisionData(InMemoryData):
    """One of `mnist`, `fashion_mnist`, `cifar10`, `cifar100` as uint8 tensors on the device.

    The validation split is carved from the official training split with the seed; the
    official test split is the test split. `augment` (null = the data set's default: crop +
    flip for CIFAR, none for the MNIST family) runs per batch on the device; crop_padding and
    padding_mode (constant or reflect) set its random translation. `resize` scales
    batches to resize x resize pixels on the device (e.g. for ImageNet-pretrained models).
    """

    def __init__(
        self,
        dataset: str,
        root: str | None = None,
        download: bool = True,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        augment: bool | None = None,
        crop_padding: int = 4,
        padding_mode: str = "constant",
        imagenet_normalization: bool = False,
        resize: int | None = None,
        seed: int = 42,
        class_weights: str | list[float] | None = None,  # data.class_weights
        sampler: str | None = None,  # data.sampler
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_switch_prob: float = 0.5,
        mix_prob: float = 1.0,
    ) -> None:
        super().__init__(
            batch_size,
            val_fraction,
            test_fraction=0.0,
            seed=seed,
            class_weights=class_weights,
            sampler=sampler,
        )
        self.mixing = Mixing(mixup_alpha, cutmix_alpha, mix_switch_prob, mix_prob, seed)
        require(
            dataset in SPECS,
            f"data.dataset must be one of {', '.join(SPECS)}, got {dataset!r}.",
        )
        spec = SPECS[dataset]
        self.name = dataset
        self.root = Path(os.path.expanduser(root or default_root()))
        train_set = self._load(spec, download, train=True)
        test_set = self._load(spec, download, train=False)
        train_images, train_targets = as_tensors(train_set)
        self._set_splits(train_images, train_targets, test=as_tensors(test_set))

        channels = train_images.shape[1]
        mean, std = spec.mean, spec.std
        if imagenet_normalization:  # what a model pretrained on ImageNet saw
            mean, std = IMAGENET_MEAN, IMAGENET_STD
            if channels == 1:
                mean, std = (sum(mean) / 3,), (sum(std) / 3,)
        if resize is not None:
            check_positive_int("data.resize", resize, example=224)
        self.transform = Normalize(
            255 * torch.tensor(mean).view(-1, 1, 1), 255 * torch.tensor(std).view(-1, 1, 1), resize
        )
        self.augment = (
            CropFlip(crop_padding, padding_mode)
            if (spec.augment if augment is None else augment)
            else None
        )
        self.num_classes = len(train_set.classes)
        self.class_names = list(train_set.classes)
        height, width = train_images.shape[-2:]
        self.input_shape = (channels, resize, resize) if resize else (channels, height, width)

    def _load(self, spec: VisionSpec, download: bool, train: bool) -> Any:
        """torchvision's data set object; downloads when allowed, else a clear UserError."""
        import torchvision

        cls = getattr(torchvision.datasets, spec.torchvision_class)
        try:
            return cls(str(self.root), train=train, download=False)
        except RuntimeError:
            pass  # not there (or damaged): download it, or say what to place where
        paths, source = archives(cls, self.root)
        files = f"{', '.join(p.name for p in paths)} from {source} into {paths[0].parent}"
        if not download:
            raise UserError(
                f"{spec.title} was not found in {self.root}; download {files} "
                "(nntrain checks and unpacks them), or set data.download=true to fetch it."
            )
        # Archives already placed by hand are checked (md5) and unpacked without the network.
        reason = None if all(p.is_file() for p in paths) else unreachable_reason(source)
        if reason is None:
            try:
                with network_timeout(DOWNLOAD_TIMEOUT_S):
                    return cls(str(self.root), train=train, download=True)
            except (OSError, RuntimeError) as error:
                reason = first_line(error)
        raise UserError(
            f"{spec.title} is not in {self.root} and could not be downloaded ({reason}); "
            f"download {files} (nntrain checks and unpacks them), "
            "or set data.root to a folder that has them."
        )


def as_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoded torchvision data set as (uint8 N x C x H x W images, int64 labels)."""
    data = dataset.data
    if isinstance(data, torch.Tensor):  # MNIST family: N x H x W uint8
        images = data.unsqueeze(1)
    else:  # CIFAR: numpy N x H x W x C uint8
        images = torch.from_numpy(data).permute(0, 3, 1, 2)
    targets = torch.as_tensor(dataset.targets, dtype=torch.long)
    return images.contiguous(), targets
