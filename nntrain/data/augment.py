"""Batched image augmentation on the device: whole (B, C, H, W) batches, no per-sample Python.

Works on uint8 batches as stored (before conversion to float), with an explicit generator so a
batch's augmentation is reproducible from (seed, epoch, batch index).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(
    images: torch.Tensor, padding: int, generator: torch.Generator, mode: str = "constant"
) -> torch.Tensor:
    """Pad by `padding` pixels (zeros, or the image mirrored at its border with mode="reflect"),
    then cut each image back to its size at a random offset: a random translation."""
    b, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding), mode=mode)
    dy = torch.randint(0, 2 * padding + 1, (b, 1), device=device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b, 1), device=device, generator=generator)
    rows = (dy + torch.arange(h, device=device))[:, None, :, None]  # b,1,h,1
    cols = (dx + torch.arange(w, device=device))[:, None, None, :]  # b,1,1,w
    batch = torch.arange(b, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, channel, rows, cols]  # one gather for the whole batch


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


class CropFlip:
    """The standard CIFAR augmentation: random crop with `padding` pixels + horizontal flip
    (the airbench speedruns: padding 2, reflected)."""

    def __init__(self, padding: int = 4, mode: str = "constant") -> None:
        # Checked as data.crop_padding and data.padding_mode (nntrain.data.settings).
        self.padding, self.mode = padding, mode

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.padding > 0:
            images = random_crop(images, self.padding, generator, self.mode)
        return random_flip(images, generator)
