"""Small synthetic tabular tasks from the tutorial: two moons, XOR, the subscription rule.

Each set is generated from a fixed generator_seed, so it is the same data in every run; the
run's seed only changes the validation split, the initialisation and the data order.
Features are standardised with statistics of the training split only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar

import torch

from nntrain import files
from nntrain.data.in_memory import InMemoryData
from nntrain.data.settings import (
    GeneratedTableSettings,
    MoonsSettings,
    SubscriptionSettings,
    XorSettings,
)
from nntrain.data.table_columns import mean_and_std, standardize

GeneratedT = TypeVar("GeneratedT", bound=GeneratedTableSettings)


class TabularData(InMemoryData):
    """Float features (N, F) and integer labels, standardised on the training split.

    Subclasses set feature_names and class_names before calling _set_features.
    """

    feature_names: list[str]
    target_name = "label"  # the target's column in write_csv

    def _generated(
        self, schema: type[GeneratedT], settings: GeneratedT | None, values: Any
    ) -> tuple[GeneratedT, torch.Generator]:
        """A generated table's settings and the random generator its rows come from: seeded
        by data.generator_seed, so the table is the same whatever `seed` the run trains with."""
        s = self._start(schema, settings, values)
        return s, torch.Generator().manual_seed(s.generator_seed)

    def _set_features(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        self.raw = (features.float(), targets.long())  # as generated, for write_csv
        self._set_splits(features.float(), targets.long())
        # In float64, as data=csv standardises (so this set written to CSV trains alike).
        mean, std = mean_and_std(self.splits["train"].inputs.double())
        for split in self.splits.values():
            split.inputs = standardize(split.inputs.double(), mean, std)
        self.feature_mean, self.feature_std = mean, torch.where(std > 0, std, 1.0)
        self.input_shape = (features.shape[1],)
        self.num_classes = len(self.class_names)

    def input_spec(self) -> dict[str, Any]:
        """A CSV row's columns feature_names, standardised with the training statistics."""
        return {
            "kind": "tabular",
            "feature_names": list(self.feature_names),
            "mean": self.feature_mean.tolist(),
            "std": self.feature_std.tolist(),
        }

    def write_csv(self, path: str | Path) -> Path:
        """The whole set as generated (raw features, class names as the target) in one CSV file,
        rows in generation order: `nntrain data=csv data.path=<it> data.target=<target_name>`
        then splits, standardises and trains exactly as this set does (same seed, same figures).
        Floats are written with every digit, so they read back bit for bit."""
        features, targets = self.raw
        rows = [[*self.feature_names, self.target_name]]
        for values, label in zip(features.tolist(), targets.tolist(), strict=True):
            rows.append([repr(v) for v in values] + [self.class_names[label]])
        return files.write_csv(Path(path), rows)


class Moons(TabularData):
    """The tutorial's noisy two-moons "crescent": two interleaving half circles, 2 classes."""

    name = "moons"

    def __init__(self, settings: MoonsSettings | None = None, **values: Any) -> None:
        s, gen = self._generated(MoonsSettings, settings, values)
        n, noise = s.n_samples, s.noise
        n_outer = n // 2
        angle_outer = torch.linspace(0, math.pi, n_outer)
        angle_inner = torch.linspace(0, math.pi, n - n_outer)
        outer = torch.stack([angle_outer.cos(), angle_outer.sin()], dim=1)
        inner = torch.stack([1 - angle_inner.cos(), 0.5 - angle_inner.sin()], dim=1)
        points = torch.cat([outer, inner]) + noise * torch.randn(n, 2, generator=gen)
        labels = torch.cat([torch.zeros(n_outer), torch.ones(n - n_outer)])
        self.feature_names = ["x", "y"]
        self.class_names = ["outer", "inner"]
        self._set_features(points, labels)


class Xor(TabularData):
    """Points jittered around the four corners of the unit square; label = x XOR y."""

    name = "xor"

    def __init__(self, settings: XorSettings | None = None, **values: Any) -> None:
        s, gen = self._generated(XorSettings, settings, values)
        corners = torch.randint(0, 2, (s.n_samples, 2), generator=gen)
        points = corners.float() + s.noise * torch.randn(s.n_samples, 2, generator=gen)
        labels = corners[:, 0] ^ corners[:, 1]
        self.feature_names = ["x", "y"]
        self.class_names = ["0", "1"]
        self._set_features(points, labels)


class Subscription(TabularData):
    """The tutorial's exercise 8: will a customer buy a subscription?

    Features [age, income, browsing_time, previous_purchases]; the true rule is
    income > 50000 AND browsing_time > 10 AND age < 50 (previous_purchases is a distractor).
    """

    name = "subscription"
    target_name = "bought"

    def __init__(self, settings: SubscriptionSettings | None = None, **values: Any) -> None:
        s, gen = self._generated(SubscriptionSettings, settings, values)
        n = s.n_samples

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, generator=gen)

        age = uniform(18, 70)
        income = uniform(20_000, 120_000)
        browsing_time = uniform(0, 30)
        previous_purchases = torch.poisson(torch.full((n,), 3.0), generator=gen)
        labels = (income > 50_000) & (browsing_time > 10) & (age < 50)
        features = torch.stack([age, income, browsing_time, previous_purchases], dim=1)
        self.feature_names = ["age", "income", "browsing_time", "previous_purchases"]
        self.class_names = ["no", "yes"]
        self._set_features(features, labels)
