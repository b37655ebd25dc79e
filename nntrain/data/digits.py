"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes): offline, real data."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from nntrain.data.in_memory import InMemoryData, Normalize
from nntrain.data.mixing import Mixing
from nntrain.errors import UserError


def read_bundled_digits() -> np.ndarray:
    """scikit-learn's digits.csv.gz (1797 rows: 64 pixel values 0..16, then the label), read
    straight from its installed package: importing scikit-learn would cost about a second."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "data=digits needs scikit-learn, which bundles the data: pip install scikit-learn."
        )
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as file:
        return np.loadtxt(file, delimiter=",", dtype=np.int64)


class Digits(InMemoryData):
    """The digits as 1x8x8 uint8 images (pixel values 0..16), normalised per batch on the device."""

    name = "digits"
    pixel_max = 16.0  # scikit-learn's digits are 4-bit grey levels

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 42,
        class_weights: str | list[float] | None = None,  # data.class_weights
        sampler: str | None = None,  # data.sampler
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_switch_prob: float = 0.5,
        mix_prob: float = 1.0,
    ) -> None:
        super().__init__(batch_size, val_fraction, test_fraction, seed, class_weights, sampler)
        self.mixing = Mixing(mixup_alpha, cutmix_alpha, mix_switch_prob, mix_prob, seed)
        table = read_bundled_digits()
        images = torch.from_numpy(table[:, :-1]).to(torch.uint8).view(-1, 1, 8, 8)
        targets = torch.from_numpy(table[:, -1]).long()
        self._set_splits(images, targets)
        train = self.splits["train"].inputs.float()
        self.transform = Normalize(train.mean().view(1, 1, 1), train.std().view(1, 1, 1))
        self.num_classes = 10
        self.input_shape = (1, 8, 8)
        self.class_names = [str(d) for d in range(10)]
