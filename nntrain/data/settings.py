"""data.*: the settings of nntrain's data options, declared once (nntrain.schema). Every data
option shares the loader settings (batch size, splits, class weights, sampler, seed); image
options add MixUp/CutMix. A data class of the user's own (data._target_=...) brings its own.

Checks that need the files (does data.path exist, is the target a column) stay with the data
classes: they are about the data, not the values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from omegaconf import OmegaConf

from nntrain.errors import require
from nntrain.schema import Settings, setting

SEED = "${seed}"  # the run's seed, unless data.seed is set
WEIGHTS = "null (off), balanced, or one weight per class such as [1.0,5.0]"
PRETRAINED = (
    "${nntrain.starts_pretrained:${oc.select:model.pretrained,false},"
    "${oc.select:model.weights_path,null}}"
)
FRACTION = "a number between 0 and 1 (exclusive)"
Interpolation = Literal["bilinear", "bicubic", "nearest"]


def model_data(key: str, default: Any, *, _parent_: Any, _root_: Any) -> Any:
    """${nntrain.model_data:KEY,DEFAULT}: an image setting's default taken from the model's own
    data config (model=timm: its pretrained config, timm's resolve_data_config; model=torchvision:
    its weights' preprocessing), else DEFAULT. A value the user sets replaces the interpolation,
    so the model's config applies exactly where the user said nothing.

    The model's class is asked by the name model._target_ gives, as Hydra finds it to build it:
    a class with a data_config(settings) staticmethod offers one (models/timm_backbone.py). The
    mean and std are the pretrained weights': taken only while data.imagenet_normalization is
    on (by default: the model starts pretrained). RESIZE (an in-memory set's data.resize) is the
    model's input size where the model needs it: pretrained weights (they saw images of that
    scale) or a fixed input size (a ViT's position embedding). Nothing here fails: a model that
    cannot be built says why when it is built, in one sentence."""
    if key in ("mean", "std") and _parent_.get("imagenet_normalization") is not True:
        return default
    try:
        from hydra.utils import get_object

        model = _root_.get("model")
        target = get_object(str(model.get("_target_")))
        data_config = getattr(target, "data_config", None)
        if not callable(data_config):
            return default
        settings = OmegaConf.to_container(model, resolve=True)
        assert isinstance(settings, dict)
        config = data_config(settings)
        if key == "resize":  # an in-memory set's images: see RESIZE
            pretrained = starts_pretrained(settings.get("pretrained"), settings.get("weights_path"))
            wanted = config.get("fixed_input_size") or pretrained
            return config.get("image_size", default) if wanted else default
        return config.get(key, default)
    except Exception:
        return default


def starts_pretrained(pretrained: object, weights_path: object) -> bool:
    """Whether the model starts from pretrained weights, downloaded (model.pretrained) or from
    a file (model.weights_path: a state dict, trained on ImageNet-normalised images); the
    default of data.imagenet_normalization (${nntrain.starts_pretrained:...}, registered by
    nntrain.launch.resolvers). A pretrained that is no bool counts as false here: the model
    refuses it under its own name."""
    if weights_path not in (None, ""):
        return True
    return pretrained if isinstance(pretrained, bool) else False


OmegaConf.register_new_resolver("nntrain.model_data", model_data, replace=True)


def from_model(key: str, default: str) -> str:
    return f"${{nntrain.model_data:{key},{default}}}"


VAL_FRACTION = f"{FRACTION}, or 0 (no validation split)"
COLUMNS = "a list of column names"
Dataset = Literal["mnist", "fashion_mnist", "cifar10", "cifar100"]


@dataclass
class DataSettings(Settings):
    """What every data option has: batches, splits, class balance and the seed."""

    SHARED: ClassVar[bool] = True  # listed after an option's own settings

    KEY: ClassVar[str] = "data"

    _target_: str = setting("nntrain.data.digits.Digits", "the data class")
    batch_size: int = setting(32, "samples per batch", expects="a positive integer", example=64)
    val_fraction: float = setting(
        0.1,
        "of the training samples, drawn with `seed`; 0 = no validation split",
        expects=VAL_FRACTION,
    )
    class_weights: str | list[float] | None = setting(
        None,
        "training-loss weight per class: null, balanced, or a list such as [1.0,5.0]",
        expects=WEIGHTS,
    )
    sampler: Literal["balanced"] | None = setting(
        None,
        "null: every training sample once per epoch; balanced: classes drawn equally often",
        expects="null (shuffle every sample once per epoch) or balanced (draw every class "
        "equally often)",
    )
    seed: int = setting(
        SEED,
        "seeds the validation split and the data order (the run's seed)",
        expects="an integer >= 0",
        example=42,
        fallback=42,
    )

    def __post_init__(self) -> None:
        self.must("batch_size", self.batch_size >= 1)
        self.must("seed", self.seed >= 0)
        self.must("val_fraction", self.val_fraction == 0 or 0 < self.val_fraction < 1)
        weights = self.class_weights
        self.must(
            "class_weights", weights is None or weights == "balanced" or isinstance(weights, list)
        )


@dataclass
class HeldOutSettings(DataSettings):
    """Options that hold out their own test split (torchvision's sets bring an official one)."""

    SHARED: ClassVar[bool] = True  # listed after an option's own settings

    test_fraction: float = setting(
        0.2,
        "fixed held-out samples, the same in every run; 0 = no test split",
        expects=f"{FRACTION}, or 0 (no test split)",
        example=0.2,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.must("test_fraction", 0 <= self.test_fraction < 1)


@dataclass
class MixingSettings(DataSettings):
    """Image options: MixUp and CutMix on training batches."""

    SHARED: ClassVar[bool] = True  # listed after an option's own settings

    mixup_alpha: float = setting(
        0.0,
        "MixUp on training batches: lam ~ Beta(alpha, alpha); 0 = off (0.2 to 1 are usual)",
        expects="a number >= 0 (0 = off; 0.2 to 1 are usual)",
    )
    cutmix_alpha: float = setting(
        0.0,
        "CutMix on training batches; 0 = off (1.0 is usual)",
        expects="a number >= 0 (0 = off; 1.0 is usual)",
    )
    mix_switch_prob: float = setting(
        0.5,
        "with both on: the share of mixed batches that use CutMix",
        expects="a probability in [0, 1]",
    )
    mix_prob: float = setting(
        1.0, "the share of training batches mixed at all", expects="a probability in [0, 1]"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.must("mixup_alpha", self.mixup_alpha >= 0)
        self.must("cutmix_alpha", self.cutmix_alpha >= 0)
        self.must("mix_switch_prob", 0 <= self.mix_switch_prob <= 1)
        self.must("mix_prob", 0 <= self.mix_prob <= 1)


@dataclass
class DigitsSettings(MixingSettings, HeldOutSettings):
    """scikit-learn's bundled 8x8 digits: offline, seconds on a CPU (data=digits, the default)."""

    _target_: str = setting("nntrain.data.digits.Digits", "the data class")
    batch_size: int = setting(64, "samples per batch", expects="a positive integer", example=64)


@dataclass
class GeneratedTableSettings(HeldOutSettings):
    """A table generated from a fixed seed (data=moons, xor, subscription)."""

    n_samples: int = setting(1000, "rows generated", expects="a positive integer")
    generator_seed: int = setting(0, "the data set itself; `seed` does not change it")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.must("n_samples", self.n_samples >= 1)


@dataclass
class MoonsSettings(GeneratedTableSettings):
    """Two interleaved half-moons, 2 features (data=moons)."""

    _target_: str = setting("nntrain.data.tabular.Moons", "the data class")
    noise: float = setting(0.2, "Gaussian noise on the points", expects="a number >= 0")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.must("noise", self.noise >= 0)


@dataclass
class XorSettings(MoonsSettings):
    """The four corners of a square, labelled by XOR, 2 features (data=xor)."""

    _target_: str = setting("nntrain.data.tabular.Xor", "the data class")
    n_samples: int = setting(400, "rows generated", expects="a positive integer")
    noise: float = setting(0.15, "Gaussian noise on the points", expects="a number >= 0")


@dataclass
class SubscriptionSettings(GeneratedTableSettings):
    """The tutorial's tabular exercise: will a customer subscribe? 4 features
    (data=subscription)."""

    _target_: str = setting("nntrain.data.tabular.Subscription", "the data class")
    n_samples: int = setting(500, "rows generated", expects="a positive integer")


@dataclass
class CsvSettings(HeldOutSettings):
    """Your own table: a CSV file with a header row, one row per sample (data=csv)."""

    _target_: str = setting("nntrain.data.csv_table.CsvTable", "the data class")
    path: str | None = setting(
        None, "one CSV file, split into train/val/test like the built-in sets"
    )
    target: str = setting("???", "the column to predict", example="bought")
    train_path: str | None = setting(
        None,
        "or separate files: train (required), val and test (optional; drawn from train "
        "when absent)",
    )
    val_path: str | None = setting(None, "the validation rows' file (with train_path)")
    test_path: str | None = setting(None, "the test rows' file (with train_path)")
    features: list[str | int | float] | None = setting(
        None,
        "the input columns; null = every column but the target, data.drop and identifiers",
        expects=COLUMNS,
        example="[age,income]",
    )
    drop: list[str | int | float] = setting(
        [], "columns to leave out", expects=COLUMNS, example="[age,income]"
    )
    categorical: list[str | int | float] = setting(
        [],
        "numeric-looking columns to treat as categories (e.g. codes such as zip)",
        expects=COLUMNS,
        example="[age,income]",
    )
    task: Literal["auto", "classification", "regression"] = setting(
        "auto",
        "classification, regression, or auto (regression for a numeric target with > 20 values)",
        expects="one of auto, classification, regression",
    )
    missing: Literal["impute", "error"] = setting(
        "impute",
        "impute: numeric -> training median + a missing-indicator input, text -> its own "
        "category; error: refuse",
        expects="one of impute, error",
    )
    missing_target: Literal["drop", "error"] = setting(
        "drop",
        "rows whose target is empty: drop (left out, said in one line) or error (refused)",
        expects="one of drop, error",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_files(self.path, self.train_path, self.val_path, self.test_path)


def check_files(
    path: str | None, train_path: str | None, val_path: str | None, test_path: str | None
) -> None:
    """One file to split (data.path) or the splits' own files (data.train_path, ...)."""
    require(
        (path is None) != (train_path is None),
        "give the table as data.path=FILE (split into train/val/test) or as "
        "data.train_path=FILE (with optional data.val_path and data.test_path), not both "
        "and not neither.",
    )
    require(
        train_path is not None or (val_path is None and test_path is None),
        "data.val_path and data.test_path go with data.train_path; with data.path the "
        "splits are drawn from that one file (set data.path=null to give the files).",
    )


@dataclass
class ImageFolderSettings(MixingSettings, HeldOutSettings):
    """Your own images: one sub-folder per class under train/ (and optional val/, test/)
    (data=imagefolder)."""

    _target_: str = setting("nntrain.data.image_folder.ImageFolderData", "the data class")
    root: str = setting(
        "???", "the folder that holds train/ (and val/, test/)", example="~/flowers"
    )
    image_size: int = setting(
        from_model("image_size", "224"),
        "side of the square crops the model sees (3 x image_size x image_size); default: the "
        "model's pretrained input size (model=timm, torchvision), else 224",
        expects="a positive integer",
        example=224,
        fallback=224,
    )
    interpolation: Interpolation = setting(
        from_model("interpolation", "bilinear"),
        "how images are resized: bilinear, bicubic or nearest; default: the model's pretrained "
        "config's, else bilinear",
        expects="one of bilinear, bicubic, nearest",
        example="bicubic",
        fallback="bilinear",
    )
    crop_fraction: float = setting(
        from_model("crop_fraction", "0.875"),
        "evaluation resizes the shorter side to image_size / crop_fraction, then centre-crops; "
        "default: the model's pretrained config's, else 0.875",
        expects="a number in (0, 1]",
        example=0.875,
        fallback=0.875,
    )
    mean: list[float] | None = setting(
        from_model("mean", "null"),
        "per-channel mean to normalise with (with data.std); null = ImageNet's with "
        "imagenet_normalization, else measured; default: the pretrained model's own",
        expects="three numbers or null",
        example="[0.5,0.5,0.5]",
        fallback=None,
    )
    std: list[float] | None = setting(
        from_model("std", "null"),
        "per-channel standard deviation to normalise with (with data.mean)",
        expects="three numbers > 0 or null",
        example="[0.5,0.5,0.5]",
        fallback=None,
    )
    val_fraction: float = setting(
        0.1,
        "of train/, drawn with `seed`; used only when there is no val/ folder",
        expects=FRACTION,
    )
    test_fraction: float = setting(
        0.1,
        "of train/, the same in every run; used only when there is no test/ folder",
        expects=FRACTION,
    )
    num_workers: int | Literal["auto"] = setting(
        "auto",
        "DataLoader processes that decode images: auto = 4, or fewer on a machine with fewer "
        "CPUs; 0 = in the training process",
        expects="auto or an integer >= 0",
        example=4,
    )
    imagenet_normalization: Any = setting(
        PRETRAINED,
        "ImageNet mean/std (on for a pretrained model)",
        expects="true or false",
        example="true",
        fallback=False,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.must("val_fraction", 0 < self.val_fraction < 1)
        self.must("test_fraction", 0 < self.test_fraction < 1)
        self.must("image_size", self.image_size >= 1)
        self.must("crop_fraction", 0 < self.crop_fraction <= 1)
        self.must("num_workers", self.num_workers == "auto" or self.num_workers >= 0)
        self.must("imagenet_normalization", isinstance(self.imagenet_normalization, bool))
        check_mean_std(self, (3,))


def check_mean_std(settings: Settings, lengths: tuple[int, ...]) -> None:
    """data.mean and data.std (as many numbers as lengths allows, std > 0): both or neither."""
    mean, std = getattr(settings, "mean"), getattr(settings, "std")  # noqa: B009
    settings.must("mean", mean is None or len(mean) in lengths)
    settings.must("std", std is None or (len(std) in lengths and min(std) > 0))
    require(
        (mean is None) == (std is None) and len(mean or ()) == len(std or ()),
        "data.mean and data.std go together; set both, as many numbers each (e.g. "
        "data.mean=[0.5,0.5,0.5] data.std=[0.5,0.5,0.5]), or neither.",
    )


@dataclass
class TorchvisionSettings(MixingSettings):
    """MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision (data=mnist,
    fashion_mnist, cifar10, cifar100): the official test split, downloaded once."""

    _target_: str = setting("nntrain.data.torchvision_sets.TorchvisionData", "the data class")
    dataset: Dataset = setting("???", "which set (set by the data= option)", example="cifar10")
    root: str | None = setting(None, "null = $NNTRAIN_DATA_DIR, else ~/.cache/nntrain/data")
    download: bool = setting(True, "false = never touch the network; stop if files are missing")
    batch_size: int = setting(128, "samples per batch", expects="a positive integer", example=64)
    augment: bool | None = setting(
        None, "null = default (random crop + flip for CIFAR, none for the MNIST family)"
    )
    crop_padding: int = setting(
        4,
        "the augmentation's random translation: up to this many pixels",
        expects="an integer >= 0",
    )
    padding_mode: Literal["constant", "reflect"] = setting(
        "constant", "how the border is filled for it: constant (zeros) or reflect"
    )
    imagenet_normalization: Any = setting(
        PRETRAINED,
        "ImageNet mean/std (on for a pretrained model)",
        expects="true or false",
        example="true",
        fallback=False,
    )
    resize: int | None = setting(
        from_model("resize", "null"),
        "e.g. 224: resize batches on the device to resize x resize; default: the model's input "
        "size when it starts pretrained or takes one size only (model=timm, torchvision), else "
        "null (the set's own size)",
        expects="a positive integer or null",
        example=224,
        fallback=None,
    )
    interpolation: Interpolation = setting(
        from_model("interpolation", "bilinear"),
        "how data.resize resizes: bilinear, bicubic or nearest; default: the model's "
        "pretrained config's, else bilinear",
        expects="one of bilinear, bicubic, nearest",
        example="bicubic",
        fallback="bilinear",
    )
    mean: list[float] | None = setting(
        from_model("mean", "null"),
        "per-channel mean to normalise with (with data.std; a grey set takes their average); "
        "null = ImageNet's with imagenet_normalization, else the set's own; default: the "
        "pretrained model's own",
        expects="three numbers (or one for a grey set) or null",
        example="[0.5,0.5,0.5]",
        fallback=None,
    )
    std: list[float] | None = setting(
        from_model("std", "null"),
        "per-channel standard deviation to normalise with (with data.mean)",
        expects="three numbers > 0 (or one for a grey set) or null",
        example="[0.5,0.5,0.5]",
        fallback=None,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.must("crop_padding", self.crop_padding >= 0)
        self.must("resize", self.resize is None or self.resize >= 1)
        self.must("imagenet_normalization", isinstance(self.imagenet_normalization, bool))
        check_mean_std(self, (1, 3))


def torchvision_set(name: str, dataset: Dataset, doc: str) -> type[TorchvisionSettings]:
    """The option data=<dataset>: TorchvisionSettings with that set as data.dataset."""
    field = ("dataset", Dataset, setting(dataset, "which set (set by the data= option)"))
    option = dataclasses.make_dataclass(name, [field], bases=(TorchvisionSettings,))
    option.__doc__ = doc
    option.__module__ = __name__
    return option


MnistSettings = torchvision_set(
    "MnistSettings", "mnist", "MNIST's handwritten digits, 28x28 grey (data=mnist)."
)
FashionMnistSettings = torchvision_set(
    "FashionMnistSettings",
    "fashion_mnist",
    "Fashion-MNIST's clothes, 28x28 grey (data=fashion_mnist).",
)
Cifar10Settings = torchvision_set(
    "Cifar10Settings", "cifar10", "CIFAR-10: 32x32 colour photos of 10 classes (data=cifar10)."
)
Cifar100Settings = torchvision_set(
    "Cifar100Settings",
    "cifar100",
    "CIFAR-100: 32x32 colour photos of 100 classes (data=cifar100).",
)
