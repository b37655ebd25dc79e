"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes): offline, real data."""

from __future__ import annotations

import torch

from nntrain.data.memory import InMemoryData, Normalize


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
    ) -> None:
        super().__init__(batch_size, val_fraction, test_fraction, seed)
        # Imported here: scikit-learn costs about a second to import and only this set needs it.
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.from_numpy(bunch.images).to(torch.uint8).unsqueeze(1)  # N,1,8,8
        targets = torch.from_numpy(bunch.target).long()
        self._set_splits(images, targets)
        train = self.splits["train"].inputs.float()
        self.transform = Normalize(train.mean().view(1, 1, 1), train.std().view(1, 1, 1))
        self.num_classes = 10
        self.input_shape = (1, 8, 8)
        self.class_names = [str(d) for d in range(10)]
