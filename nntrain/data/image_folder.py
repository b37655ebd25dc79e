"""Your own images (`data=imagefolder`): root/train/<class>/<image>, and val/, test/ if present.

The one data set that may not fit in memory, so it does not follow memory.py: PIL decodes one
image at a time in DataLoader workers, torchvision's transforms v2 augment it there, and only
finished batches move to the training device. The training order is a permutation drawn from
(seed, epoch), and so is one seed per sample for its random crop and flip: a sample's
augmentation is a function of (seed, epoch, position) whatever the number of workers, and an
interrupted run resumes to the same batches.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from nntrain.data.class_weights import (
    balanced_sample_weights,
    epoch_order,
    loss_weights,
)
from nntrain.data.in_memory import IMAGENET_MEAN, IMAGENET_STD, epoch_generator, split_indices
from nntrain.data.mixing import Mixing
from nntrain.data.settings import ImageFolderSettings
from nntrain.errors import UserError, require
from nntrain.schema import checked

if TYPE_CHECKING:
    from nntrain.data.protocols import DataModule, Loader

log = logging.getLogger("nntrain")

STATS_IMAGES = 200  # enough for stable per-channel statistics, quick to decode at start-up

Sample = tuple[Path, int]  # (image file, class index)


# PIL converts these to 8-bit L/RGB faithfully; 16-bit and float modes (I;16, I, F) come out
# clipped to white, which would train (or predict) on nonsense instead of stopping.
CONVERTIBLE_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr")


def unreadable(path: Path) -> str:
    return f"cannot read the image file {path}; replace or delete it."


def too_large(path: Path) -> str:
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # PIL refuses above twice its warning limit
    return (
        f"the image {path} has more than the {limit:,} pixels PIL opens (its guard against "
        "decompression bombs); downscale it or delete it."
    )


@contextlib.contextmanager
def quiet_pil() -> Iterator[None]:
    """PIL's warnings while opening and converting, silenced: an image between its pixel limit
    and twice that (which it refuses: too_large) and a palette image's byte transparency are
    no error of the user's, and each worker printed them with PIL's source line, every epoch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def check_mode(image: Image.Image, path: Path) -> None:
    require(
        image.mode in CONVERTIBLE_MODES,
        f"cannot use the image {path}: its mode {image.mode!r} does not convert "
        "faithfully to 8-bit grayscale or RGB; save it as an 8-bit image "
        f"(one of the modes {', '.join(CONVERTIBLE_MODES)}).",
    )


def find_classes(folder: Path) -> list[str]:
    # Hidden entries are skipped: .ipynb_checkpoints is no class, macOS's ._x.jpg no image.
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def is_image_name(name: str) -> bool:
    # Hidden files are skipped: macOS's ._x.jpg is no image.
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def walk_files(folder: Path) -> list[Path]:
    """Every file under folder at any depth, sorted (os.walk's order depends on the file
    system); hidden files and folders (.ipynb_checkpoints, macOS's ._x.jpg) are skipped.
    Linked folders are followed, each real folder once: a link to a folder above it (a loop)
    would otherwise list every file again at each of the ~40 levels the system resolves."""
    found: list[Path] = []
    seen: set[str] = set()
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
        found += [Path(directory, name) for name in files if not name.startswith(".")]
    return sorted(found)


def list_images(folder: Path) -> list[Path]:
    """The image files under folder (walk_files). Training reads class folders with it and
    nntrain-predict its input folder, so both see the same files."""
    return [path for path in walk_files(folder) if is_image_name(path.name)]


def warn_unused(folder: Path, class_names: list[str]) -> None:
    """Say which files of a split folder training does not read: files beside the class
    folders, and files in them that are no image type nntrain reads (a .gif, a .heic). A photo
    left out must not go unnoticed; a notes.txt is listed too, which costs one line."""
    unused = [e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
    for name in class_names:
        unused += [
            str(path.relative_to(folder))
            for path in walk_files(folder / name)
            if not is_image_name(path.name)
        ]
    if unused:
        log.warning(
            f"{folder}: {len(unused)} file{'s' if unused[1:] else ''} not used, "
            f"outside the class folders or not of a type nntrain reads "
            f"({' '.join(IMG_EXTENSIONS)}): {', '.join(sorted(unused)[:3])}"
            f"{', ...' if unused[3:] else ''}"
        )


def read_class(folder: Path) -> list[Path]:
    """The image files of a class folder, each checked to open: a corrupt file should stop the
    run now, not hours into training (PIL reads only the header here)."""
    images = list_images(folder)
    split = folder.parent
    # Removing an empty class folder of val/ or test/ would only break the rule that they
    # have train/'s class folders: the way out there is to drop the whole folder.
    fix = (
        "add images to it or remove it"
        if split.name == "train"
        else f"add images to it, or remove {split} to split {split.name} images off train/"
    )
    require(
        bool(images), f"class folder {folder} has no images ({' '.join(IMG_EXTENSIONS)}); {fix}."
    )
    for path in images:
        try:
            with quiet_pil(), Image.open(path) as image:
                check_mode(image, path)
        except Image.DecompressionBombError as error:
            raise UserError(too_large(path)) from error
        except OSError as error:  # PIL.UnidentifiedImageError is an OSError
            raise UserError(unreadable(path)) from error
    return images


def check_same_classes(folder: Path, train_dir: Path, class_names: list[str]) -> None:
    found = find_classes(folder)
    lacks = sorted(set(class_names) - set(found))
    extra = sorted(set(found) - set(class_names))
    problems = [f"lacks {', '.join(lacks)}"] if lacks else []
    problems += [f"has {', '.join(extra)}, which {train_dir} does not"] if extra else []
    require(
        not problems,
        f"{folder} must have the same class folders as {train_dir}, but it "
        f"{' and '.join(problems)}; add, rename or remove class folders so that they match.",
    )


def check_every_class_trains(
    splits: dict[str, list[Sample]], class_names: list[str], train_dir: Path
) -> None:
    """Refuse a class whose every image the val/test split drew from train/: the model would
    train without ever seeing it and only score it (the split is not stratified)."""
    trained = {target for _, target in splits["train"]}
    absent = [name for index, name in enumerate(class_names) if index not in trained]
    folders, them = ("folders", "them") if absent[1:] else ("folder", "it")
    require(
        not absent,
        f"the class {folders} {', '.join(absent)} of {train_dir} would have no training images: "
        "the validation and test images split off train/ took all of them; add images to "
        f"{them}, or put val/ and test/ folders beside {train_dir.name}/.",
    )


def upright(image: Image.Image) -> Image.Image:
    """The image turned (or mirrored) as its EXIF orientation tag says; as it is without one,
    or with an EXIF block Pillow cannot parse (a photo is not refused for its metadata)."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF raises many types (struct.error, KeyError, ...)
        return image


def load_rgb(path: Path, draft: int | None = None) -> Image.Image:
    """The image as RGB (from grayscale, palette, RGBA too). draft: let JPEGs decode at a reduced
    scale that still covers draft x draft pixels, far faster for large photos."""
    try:
        with quiet_pil(), Image.open(path) as image:
            if draft is not None:
                image.draft("RGB", (draft, draft))
            # Upright as a photo viewer shows it: cameras store pixels as the sensor saw them and
            # the turn in EXIF's orientation tag (loads the pixels before the file closes).
            return upright(image).convert("RGB")
    except Image.DecompressionBombError as error:
        raise UserError(too_large(path)) from error
    except (OSError, SyntaxError, ValueError) as error:  # e.g. truncated after a good header
        raise UserError(unreadable(path)) from error


def to_float() -> list[Any]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]  # uint8 PIL -> float in [0, 1]


def eval_steps(image_size: int, crop_fraction: float, interpolation: str) -> list[Any]:
    """Resize the shorter side to image_size / crop_fraction, centre-crop (0.875 for ImageNet's
    classic 256 -> 224; a timm model's pretrained config may have another)."""
    mode = v2.InterpolationMode(interpolation)
    resize = v2.Resize(round(image_size / crop_fraction), interpolation=mode, antialias=True)
    return [resize, v2.CenterCrop(image_size), *to_float()]


@dataclass(eq=False)
class ImageDataset(Dataset):
    """Decodes and transforms one image per item: an index, or (index, seed) for a random
    transform, which then draws from a private generator stream seeded with seed."""

    samples: list[Sample]
    transform: Any
    draft: int | None = None  # see load_rgb

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        path, target = self.samples[index]
        image = load_rgb(path, self.draft)
        if seed is None:
            with quiet_pil():  # PIL's crop warns about a large image's size again
                return self.transform(image), target
        # Forked: with num_workers=0 this runs in the training process, whose global generator
        # (dropout, ...) must not depend on the data.
        with torch.random.fork_rng(devices=[]), quiet_pil():
            torch.manual_seed(seed)
            return self.transform(image), target


@dataclass(eq=False)
class EpochSampler(Sampler):
    """A permutation of range(n) with one augmentation seed per sample, from (seed, epoch) only."""

    n: int
    seed: int
    epoch: int
    skip: int = 0  # samples of the epoch already trained on (a resumed run)
    rank: int = 0  # under torchrun: this rank takes every world-th sample
    world: int = 1
    sample_weights: torch.Tensor | None = None  # data.sampler=balanced: drawn, not permuted

    def __len__(self) -> int:
        return self.n // self.world - self.skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = epoch_generator(self.seed, self.epoch)
        order = epoch_order(self.n, generator, self.sample_weights)
        seeds = torch.randint(2**62, (self.n,), generator=generator)
        pairs = list(zip(order.tolist(), seeds.tolist(), strict=True))
        shard = pairs[self.rank :: self.world][: self.n // self.world]
        return iter(shard[self.skip :])


@dataclass(eq=False)
class FolderLoader:
    """One split's batches, on the device. Training shuffles per (seed, epoch) and drops the last
    partial batch if there is a full one (a batch of one breaks BatchNorm); evaluation keeps
    every sample, in order."""

    dataset: ImageDataset
    batch_size: int
    shuffle: bool
    seed: int
    num_workers: int
    device: torch.device
    epoch: int = 0

    start_batch: int = 0
    rank: int = 0
    world: int = 1
    sample_weights: torch.Tensor | None = None  # data.sampler=balanced

    def shard(self, rank: int, world: int) -> None:
        """Under torchrun: this rank takes every world-th sample of each epoch's order."""
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch `epoch` from batch `start_batch` on (a resumed run skips the done ones)."""
        self.epoch, self.start_batch = epoch, start_batch

    @property
    def drop_last(self) -> bool:
        return self.shuffle and len(self.dataset) >= self.batch_size

    def __len__(self) -> int:
        n = len(self.dataset) // (self.world if self.shuffle else 1)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        skip = self.start_batch * self.batch_size
        sampler = (
            EpochSampler(
                len(self.dataset),
                self.seed,
                self.epoch,
                skip,
                self.rank,
                self.world,
                self.sample_weights,
            )
            if self.shuffle
            else None
        )
        loader = DataLoader(
            self.dataset,
            self.batch_size,
            sampler=sampler,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            # Workers' base seeds come from here, per epoch, never from the global generator.
            generator=epoch_generator(self.seed, self.epoch),
        )
        try:
            for x, y in loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        except UserError as error:
            if self.num_workers == 0:
                raise
            # From a worker, the message holds the worker's traceback, whose last line is ours.
            sentence = str(error).strip().splitlines()[-1]
            # torch's re-raise leaves that traceback in a reference cycle with the DataLoader's
            # iterator: cut it, so that the workers stop now, not when the cycle is collected.
            error.__traceback__ = None
        raise UserError(sentence.removeprefix("nntrain.errors.UserError: "))


def auto_workers() -> int:
    """data.num_workers=auto: 4 decoding processes, or one per CPU this process may use when
    there are fewer (more only compete for the cores; torch warns about them)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(4, cpus or 1)


class ImageFolderData:
    """Images in root/train/<class>/*, and in root/val/, root/test/ with the same class folders.

    A missing val/ or test/ is split off train/ (test: a fixed split, the same for every seed;
    val: drawn with seed). Training: RandomResizedCrop + horizontal flip; evaluation: resize to
    image_size / crop_fraction, centre crop; both with the interpolation setting (the image
    size, crop fraction and interpolation default to the model's pretrained config:
    data.settings.model_data). Normalisation: data.mean and data.std when given (by default a
    pretrained model's own), else ImageNet's if imagenet_normalization (what pretrained weights
    expect), else the per-channel mean and std of up to 200 training images spread evenly over
    the sorted file list, measured once here after the evaluation resize and crop.
    """

    name = "imagefolder"
    class_names: list[str]  # sorted folder names of train/
    input_shape: tuple[int, ...]

    def __init__(self, settings: ImageFolderSettings | str | None = None, **values: Any) -> None:
        """data=imagefolder: settings checked (nntrain.data.settings.ImageFolderSettings), or
        as keyword arguments, the root first: ImageFolderData("~/flowers", image_size=64)."""
        if isinstance(settings, str):
            settings, values = None, {"root": settings, **values}
        s = settings if settings is not None else checked(ImageFolderSettings, values)
        self.image_size = image_size = s.image_size
        self.crop_fraction, self.interpolation = float(s.crop_fraction), str(s.interpolation)
        self.mixing = Mixing.of(s)
        self.batch_size = s.batch_size
        self.val_fraction, self.test_fraction = s.val_fraction, s.test_fraction
        self.num_workers = auto_workers() if s.num_workers == "auto" else int(s.num_workers)
        self.seed, self.device = s.seed, torch.device("cpu")
        self.class_weights_setting, self.sampler = s.class_weights, s.sampler
        self.root = Path(str(s.root)).expanduser().absolute()
        self.samples = self._read_splits()
        self.num_classes = len(self.class_names)
        self.input_shape = (3, image_size, image_size)

        self.mean, self.std = self._normalization(s)
        normalize = v2.Normalize(list(self.mean), list(self.std))
        mode = v2.InterpolationMode(self.interpolation)
        crop = v2.RandomResizedCrop(image_size, interpolation=mode, antialias=True)
        self.train_transform = v2.Compose([crop, v2.RandomHorizontalFlip(), *to_float(), normalize])
        self.eval_transform = v2.Compose([*self._eval_steps(), normalize])

    def _eval_steps(self) -> list[Any]:
        return eval_steps(self.image_size, self.crop_fraction, self.interpolation)

    def _normalization(self, s: ImageFolderSettings) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if s.mean is not None and s.std is not None:
            return tuple(s.mean), tuple(s.std)
        return (IMAGENET_MEAN, IMAGENET_STD) if s.imagenet_normalization else self._measure()

    def _read_splits(self) -> dict[str, list[Sample]]:
        root, train_dir = self.root, self.root / "train"
        require(
            root.is_dir(),
            f"data.root {root} {'is not a folder' if root.exists() else 'does not exist'}; set "
            "data.root to a folder laid out as train/<class>/<image> (val/ and test/ optional, "
            "with the same class folders), e.g. data.root=$HOME/flowers.",
        )
        require(
            root.name != "train" or train_dir.is_dir(),  # pointing at train/ itself
            f"data.root {root} is a train/ folder; set data.root to the folder that holds it, "
            f"data.root={root.parent}.",
        )
        require(
            train_dir.is_dir(),
            f"{root} has no train/ folder; put the training images in {train_dir}/<class>/, "
            "one sub-folder per class.",
        )
        self.class_names = find_classes(train_dir)
        require(
            bool(self.class_names),
            f"{train_dir} has no class folders; put each class's images in a sub-folder named "
            f"after the class, e.g. {train_dir}/cats/001.jpg.",
        )
        splits: dict[str, list[Sample]] = {}
        for name in ("train", "val", "test"):
            folder = root / name
            if not folder.is_dir():
                continue
            check_same_classes(folder, train_dir, self.class_names)
            warn_unused(folder, self.class_names)
            splits[name] = [
                (path, index)
                for index, class_name in enumerate(self.class_names)
                for path in read_class(folder / class_name)
            ]
        if len(splits) < 3:
            train = splits["train"]
            train_index, val_index, test_index = split_indices(
                len(train), self.val_fraction, self.test_fraction, self.seed
            )
            for name, index in (("val", val_index), ("test", test_index)):
                if name in splits:  # that folder exists: these files stay in training
                    train_index = torch.cat([train_index, index])
                else:
                    splits[name] = [train[i] for i in index.tolist()]
            splits["train"] = [train[i] for i in sorted(train_index.tolist())]
            check_every_class_trains(splits, self.class_names, train_dir)
        return {name: splits[name] for name in ("train", "val", "test")}

    def _measure(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of evenly spaced training images (every class counts)."""
        train = self.samples["train"]
        count = min(STATS_IMAGES, len(train))
        picks = [train[i * len(train) // count] for i in range(count)]
        draft = round(self.image_size / self.crop_fraction)
        dataset = ImageDataset(picks, v2.Compose(self._eval_steps()), draft)
        loader = FolderLoader(dataset, self.batch_size, False, 0, self.num_workers, self.device)
        total, squares, pixels = torch.zeros(3, dtype=torch.float64), torch.zeros(3).double(), 0
        for images, _ in loader:
            total += images.double().sum((0, 2, 3))
            squares += images.double().square().sum((0, 2, 3))
            pixels += images[:, 0].numel()
        mean = total / pixels
        # A floor of one grey level: a channel that hardly varies must not be blown up.
        std = (squares / pixels - mean.square()).clamp_min(0).sqrt().clamp_min(1 / 255)
        return tuple(mean.tolist()), tuple(std.tolist())

    def setup(self, device: torch.device) -> None:
        self.device = device

    def input_spec(self) -> dict[str, Any]:
        """The evaluation transform as data (see InMemoryData.input_spec): resize the shorter
        side (with `interpolation`), centre-crop, scale to [0, 1], normalise."""
        return {
            "kind": "image",
            "channels": 3,
            "size": [self.image_size, self.image_size],
            "pixel_max": 1.0,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_shorter": round(self.image_size / self.crop_fraction),
            "interpolation": self.interpolation,
        }

    def _loader(self, split: str, train: bool) -> FolderLoader:
        transform = self.train_transform if train else self.eval_transform
        dataset = ImageDataset(self.samples[split], transform)
        loader = FolderLoader(
            dataset, self.batch_size, train, self.seed, self.num_workers, self.device
        )
        if train and self.sampler:
            loader.sample_weights = balanced_sample_weights(self.train_targets())
        return loader

    def train_loader(self) -> FolderLoader:
        return self._loader("train", train=True)

    def ordered_train_loader(self) -> FolderLoader:
        """The training images in order, with the evaluation transform (trainer.overfit_batches)."""
        return self._loader("train", train=False)

    def train_targets(self) -> torch.Tensor:
        """The training split's targets (data.class_weights counts the classes in them)."""
        return torch.tensor([target for _, target in self.samples["train"]])

    @functools.cached_property
    def class_weights(self) -> torch.Tensor | None:
        """The training loss's weight per class that data.class_weights asks for (None: off)."""
        return loss_weights(self.class_weights_setting, self.train_targets, self.class_names)

    def val_loader(self) -> FolderLoader:
        return self._loader("val", train=False)

    def test_loader(self) -> FolderLoader:
        return self._loader("test", train=False)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(samples) for name, samples in self.samples.items()}


if TYPE_CHECKING:  # mypy checks that the classes answer the protocols the trainer relies on
    _loader: type[Loader] = FolderLoader
    _data: type[DataModule] = ImageFolderData
