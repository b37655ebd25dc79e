"""Small in-memory data for trainer tests (the real data sets are tested in test_data.py)."""

from __future__ import annotations

import torch

from nntrain.data.in_memory import InMemoryData, Normalize


class BlobData(InMemoryData):
    """Gaussian blobs: n samples of `features` floats, one blob per class."""

    name = "blobs"

    def __init__(
        self, n: int = 400, features: int = 4, classes: int = 3, batch_size: int = 16, seed: int = 0
    ):
        super().__init__(batch_size, val_fraction=0.2, test_fraction=0.2, seed=seed)
        gen = torch.Generator().manual_seed(123)
        centers = 3 * torch.randn(classes, features, generator=gen)
        targets = torch.arange(n) % classes
        inputs = centers[targets] + torch.randn(n, features, generator=gen)
        self._set_splits(inputs, targets)
        self.num_classes, self.input_shape = classes, (features,)
        self.class_names = [f"c{i}" for i in range(classes)]


class ImageBlobData(InMemoryData):
    """uint8 colour images whose mean colour depends on the class (for conv-model tests)."""

    name = "image_blobs"

    def __init__(
        self,
        n: int = 64,
        shape: tuple[int, int, int] = (3, 32, 32),
        classes: int = 4,
        batch_size: int = 8,
        seed: int = 0,
    ):
        super().__init__(batch_size, val_fraction=0.25, test_fraction=0.25, seed=seed)
        gen = torch.Generator().manual_seed(7)
        targets = torch.arange(n) % classes
        colours = torch.randint(0, 200, (classes, shape[0], 1, 1), generator=gen)
        noise = torch.randint(0, 56, (n, *shape), generator=gen)
        self._set_splits((colours[targets] + noise).to(torch.uint8), targets)
        self.transform = Normalize(torch.full((1, 1, 1), 127.0), torch.full((1, 1, 1), 64.0))
        self.num_classes, self.input_shape = classes, shape
        self.class_names = [f"c{i}" for i in range(classes)]
