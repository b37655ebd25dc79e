"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes): offline, real data."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nntrain.data.in_memory import InMemoryData, Normalize
from nntrain.data.mixing import Mixing
from nntrain.data.settings import DigitsSettings
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

    def __init__(self, settings: DigitsSettings | None = None, **values: Any) -> None:
        s = self._start(DigitsSettings, settings, values)
        self.mixing = Mixing.of(s)
        table = read_bundled_digits()
        images = torch.from_numpy(table[:, :-1]).to(torch.uint8).view(-1, 1, 8, 8)
        targets = torch.from_numpy(table[:, -1]).long()
        self._set_splits(images, targets)
        train = self.splits["train"].inputs.float()
        self.transform = Normalize(train.mean().view(1, 1, 1), train.std().view(1, 1, 1))
        self.num_classes = 10
        self.input_shape = (1, 8, 8)
        self.class_names = [str(d) for d in range(10)]
