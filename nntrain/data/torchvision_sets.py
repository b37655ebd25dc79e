"""torchvision's classic data sets (MNIST, FashionMNIST, CIFAR-10, CIFAR-100), held in memory.

torchvision's own classes find, download (with their md5 checks) and decode the files; then each
split becomes one uint8 tensor that moves to the training device once. Batches are cut,
augmented and normalised there: no PIL and no per-sample Python while training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nntrain.data.augment import CropFlip
from nntrain.data.downloads import network_timeout, unreachable_reason
from nntrain.data.in_memory import IMAGENET_MEAN, IMAGENET_STD, InMemoryData, Normalize
from nntrain.data.mixing import Mixing
from nntrain.data.settings import TorchvisionSettings
from nntrain.errors import UserError, first_line, require


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


def archives(cls: Any, root: Path) -> tuple[list[tuple[Path, str]], str]:
    """The files torchvision downloads for a data set with their md5 sums, and where it gets
    them."""
    if hasattr(cls, "resources"):  # MNIST family: four .gz files in <root>/<Class>/raw
        folder = root / cls.__name__ / "raw"
        return [(folder / name, md5) for name, md5 in cls.resources], cls.mirrors[0]
    return [(root / cls.filename, cls.tgz_md5)], cls.url.removesuffix(cls.filename)  # CIFAR


def unpacked(cls: Any, root: Path) -> list[tuple[Path, str | None]]:
    """The files torchvision decodes, with the md5 it checks them against (None: none)."""
    if hasattr(cls, "resources"):  # the .gz files' contents, beside them; never md5-checked
        folder = root / cls.__name__ / "raw"
        return [(folder / name.removesuffix(".gz"), None) for name, _md5 in cls.resources]
    folder = root / cls.base_folder
    listed = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
    return [(folder / name, md5) for name, md5 in listed]


def failing_md5(files: Sequence[tuple[Path, str | None]]) -> list[str]:
    """The names of the files that are there but do not have their md5 sum."""
    from torchvision.datasets.utils import check_integrity

    return [p.name for p, md5 in files if md5 and p.is_file() and not check_integrity(p, md5)]


def is_are(names: list[str]) -> str:
    return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'}"


def fails_md5(names: list[str], folder: Path) -> str:
    # A download cut short, a damaged copy, or another data set's file of the same name.
    return f"{is_are(names)} in {folder} but fail{'s' if len(names) == 1 else ''} the md5 check"


def unpacked_problem(cls: Any, root: Path, error: Exception) -> str | None:
    """What is wrong with the decoded files that are there; None when none is."""
    files = unpacked(cls, root)
    folder = files[0][0].parent
    if not any(p.is_file() for p, _md5 in files):
        return None
    missing = [p.name for p, _md5 in files if not p.is_file()]
    if missing:
        return f"{folder} is incomplete: {is_are(missing)} missing"
    bad = failing_md5(files)
    if bad:
        return fails_md5(bad, folder)
    return f"its files in {folder} could not be read ({first_line(error)})"


def unpack(paths: list[Path], cls: Any, root: Path) -> None:
    """Unpack archives placed by hand (checked already), as torchvision's download would."""
    from torchvision.datasets.utils import extract_archive

    for path in paths:
        target = path.parent if hasattr(cls, "resources") else root
        try:
            extract_archive(str(path), str(target))
        except OSError as error:
            raise UserError(
                f"cannot unpack {path} into {target} ({error.strerror or first_line(error)}); "
                "make that folder writable, or set data.root to a writable folder with the archive."
            ) from error


def decoded_problem(dataset: Any) -> str | None:
    """What is wrong with a decoded split (None: nothing): as many labels as images, each
    naming one of the classes (another set's label file would fail only mid-training)."""
    split = "training" if dataset.train else "test"
    images, labels = len(dataset.data), torch.as_tensor(dataset.targets)
    classes = len(dataset.classes)
    if images != len(labels):
        return f"its {split} split has {images} images but {len(labels)} labels"
    if images == 0:
        return f"its {split} split has no images"
    if labels.min() < 0 or labels.max() >= classes:
        return (
            f"its {split} labels run from {labels.min()} to {labels.max()}, but it has "
            f"{classes} classes (labels 0 to {classes - 1})"
        )
    return None


def decode(cls: Any, root: Path, train: bool) -> tuple[Any, str | None]:
    """The decoded split, or None and what is wrong with the files there (None: no files)."""
    try:
        dataset = cls(str(root), train=train, download=False)
    except Exception as error:  # not there, or damaged: torchvision fails in many ways
        return None, unpacked_problem(cls, root, error)
    problem = decoded_problem(dataset)
    return (dataset, None) if problem is None else (None, problem)


def normalization(spec: VisionSpec, channels: int, s: TorchvisionSettings) -> Normalize:
    """The set's own mean and std (in stored units, 0..255), or data.mean/data.std (by default
    a pretrained model's own), or ImageNet's for a model pretrained on it; three values for a
    grey set are averaged. Resized on the device to data.resize with data.interpolation."""
    mean, std = spec.mean, spec.std
    if s.mean is not None and s.std is not None:
        mean, std = tuple(s.mean), tuple(s.std)
    elif s.imagenet_normalization:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if channels == 1 and len(mean) == 3:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    require(
        len(mean) == channels,
        f"data.mean and data.std give {len(mean)} numbers, but {spec.title}'s images have "
        f"{channels} channels; give {channels} numbers each, or null.",
    )
    return Normalize(
        255 * torch.tensor(mean).view(-1, 1, 1),
        255 * torch.tensor(std).view(-1, 1, 1),
        s.resize,
        s.interpolation,
    )


class TorchvisionData(InMemoryData):
    """One of `mnist`, `fashion_mnist`, `cifar10`, `cifar100` as uint8 tensors on the device.

    The validation split is carved from the official training split with the seed; the
    official test split is the test split. `augment` (null = the data set's default: crop +
    flip for CIFAR, none for the MNIST family) runs per batch on the device; crop_padding and
    padding_mode (constant or reflect) set its random translation. `resize` scales
    batches to resize x resize pixels on the device with `interpolation` (by default a
    pretrained timm/torchvision model's input size and interpolation), normalised with `mean`
    and `std` (by default such a model's own, else ImageNet's or the set's).
    """

    def __init__(self, settings: TorchvisionSettings | str | None = None, **values: Any) -> None:
        """data=mnist, fashion_mnist, cifar10, cifar100: settings checked, or as keyword
        arguments, the set's name first: TorchvisionData("cifar10", root="~/data")."""
        if isinstance(settings, str):
            settings, values = None, {"dataset": settings, **values}
        s = self._start(TorchvisionSettings, settings, values)
        self.mixing = Mixing.of(s)
        spec = SPECS[s.dataset]
        self.name = s.dataset
        self.root = Path(os.path.expanduser(s.root or default_root()))
        require(
            not self.root.exists() or self.root.is_dir(),
            f"data.root {self.root} is a file, not a folder; set data.root (or NNTRAIN_DATA_DIR) "
            "to the folder that holds the data sets, e.g. data.root=~/data.",
        )
        train_set = self._load(spec, s.download, train=True)
        test_set = self._load(spec, s.download, train=False)
        train_images, train_targets = as_tensors(train_set)
        sizes = [tuple(split.data.shape[1:]) for split in (train_set, test_set)]
        require(
            sizes[0] == sizes[1],
            f"{spec.title} in {self.root} cannot be used: its training images are {sizes[0]} but "
            f"its test images {sizes[1]}, so one of its files is another data set's; replace "
            "the files with the original ones, or set data.root to a folder that has them.",
        )
        self._set_splits(train_images, train_targets, test=as_tensors(test_set))

        channels = train_images.shape[1]
        self.transform = normalization(spec, channels, s)
        self.augment = (
            CropFlip(s.crop_padding, s.padding_mode)
            if (spec.augment if s.augment is None else s.augment)
            else None
        )
        self.num_classes = len(train_set.classes)
        self.class_names = list(train_set.classes)
        height, width = train_images.shape[-2:]
        self.input_shape = (channels, s.resize, s.resize) if s.resize else (channels, height, width)

    def _load(self, spec: VisionSpec, download: bool, train: bool) -> Any:
        """torchvision's data set object. Archives placed by hand are checked (md5) and
        unpacked without the network, whatever data.download says; otherwise it downloads
        when allowed, or stops with a UserError saying what to place where."""
        import torchvision

        cls = getattr(torchvision.datasets, spec.torchvision_class)
        root = self.root
        dataset, problem = decode(cls, root, train)
        if dataset is not None:
            return dataset
        placed, source = archives(cls, root)
        paths = [path for path, _md5 in placed]
        bad = failing_md5(placed)
        if not bad and all(path.is_file() for path in paths):
            unpack(paths, cls, root)
            dataset, problem = decode(cls, root, train)
            if dataset is not None:
                return dataset
        if bad:
            problem = fails_md5(bad, paths[0].parent)
        files = f"{', '.join(p.name for p in paths)} from {source} into {paths[0].parent}"
        if download:
            return self._download(cls, spec, train, (source, files), problem)
        where = (
            f"was not found in {root}"
            if problem is None
            else f"in {root} cannot be used: {problem}"
        )
        raise UserError(
            f"{spec.title} {where}; download {files} (nntrain checks and unpacks them), or set "
            "data.download=true to fetch it."
        )

    def _download(
        self, cls: Any, spec: VisionSpec, train: bool, place: tuple[str, str], problem: str | None
    ) -> Any:
        """torchvision's download (every connection with a timeout), or a clear UserError."""
        source, files = place
        reason = unreachable_reason(source)
        if reason is None:
            try:
                with network_timeout(DOWNLOAD_TIMEOUT_S):
                    dataset = cls(str(self.root), train=train, download=True)
            except Exception as error:  # a failed download, or files that still do not decode
                reason = first_line(error)
            else:
                reason = decoded_problem(dataset)
                if reason is None:
                    return dataset
        what = (
            f"is not in {self.root} and could not be downloaded"
            if problem is None
            else f"in {self.root} cannot be used: {problem}, and it could not be downloaded again"
        )
        raise UserError(
            f"{spec.title} {what} ({reason}); download {files} (nntrain checks and unpacks them), "
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
