"""MixUp and CutMix of whole training batches on the device, with soft targets.

MixUp (Zhang et al. 2018) blends each image with a partner, x = lam x_i + (1 - lam) x_j; CutMix
(Yun et al. 2019) pastes a box of the partner into it and lam becomes the area kept. The target
is the same blend of the two one-hot labels; the loss is cross-entropy against it (label
smoothing on top, as F.cross_entropy applies it to probability targets, which equals timm's
mixup_target). The partner of image i is image B-1-i of the same batch (timm's batch mode: the
batch is already in random order), so no permutation is drawn.

The random choices of a batch (mix or not, MixUp or CutMix, lam, the box) are a few host-side
numbers drawn from a generator seeded by (seed, epoch, batch index, rank): a batch mixes the
same way in any run with the same seed, and a resumed run mixes exactly as an uninterrupted one,
with no generator state to save. The arithmetic runs where the batch is (the GPU), with no sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nntrain.data.settings import MixingSettings

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Mixing:
    """data.mixup_alpha, data.cutmix_alpha (0 = off), data.mix_switch_prob (CutMix's share of
    the mixed batches when both are on) and data.mix_prob (the share of batches mixed);
    checked as data.* (nntrain.data.settings)."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    switch_prob: float = 0.5
    prob: float = 1.0
    seed: int = 0

    @classmethod
    def of(cls, settings: MixingSettings) -> Mixing:
        return cls(
            settings.mixup_alpha,
            settings.cutmix_alpha,
            settings.mix_switch_prob,
            settings.mix_prob,
            settings.seed,
        )

    @property
    def enabled(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0

    def mix_group(
        self, micro_batches: list[Batch], num_classes: int, epoch: int, first_batch: int, rank: int
    ) -> list[Batch]:
        """An optimizer step's micro-batches, mixed; first_batch: the index of the first in its
        epoch (each batch's draws depend on its own index)."""
        return [
            self.mix(inputs, targets, num_classes, (epoch, first_batch + offset, rank))
            for offset, (inputs, targets) in enumerate(micro_batches)
        ]

    def mix(
        self, inputs: torch.Tensor, targets: torch.Tensor, num_classes: int, key: tuple[int, ...]
    ) -> Batch:
        """One batch (B, C, H, W) with integer targets, mixed: (inputs, (B, num_classes) soft
        targets); a batch left unmixed (mix_prob < 1) keeps its integer targets."""
        draws = np.random.default_rng([self.seed, *key])
        if draws.random() >= self.prob:
            return inputs, targets
        cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or draws.random() < self.switch_prob
        )
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = float(draws.beta(alpha, alpha))
        partner = inputs.flip(0)
        if cutmix:
            (top, bottom, left, right), lam = cutmix_box(inputs.shape[-2:], lam, draws)
            mixed = inputs.clone()
            mixed[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
        else:
            mixed = torch.lerp(inputs, partner, 1.0 - lam)  # lam x + (1 - lam) x_partner
        one_hot = F.one_hot(targets, num_classes).to(torch.float32)
        return mixed, torch.lerp(one_hot, one_hot.flip(0), 1.0 - lam)


def cutmix_box(
    size: torch.Size | tuple[int, int], lam: float, draws: np.random.Generator
) -> tuple[tuple[int, int, int, int], float]:
    """A box of about (1 - lam) of the image's area at a uniform centre, clipped at the border
    (as in the CutMix paper, timm and torchvision), and lam corrected to the area kept."""
    height, width = int(size[0]), int(size[1])
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(draws.integers(height)), int(draws.integers(width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    kept = 1.0 - (bottom - top) * (right - left) / (height * width)
    return (top, bottom, left, right), kept


def dominant_labels(targets: torch.Tensor) -> torch.Tensor:
    """The label a (possibly soft) target is mostly made of: what train accuracy counts a
    prediction against under MixUp/CutMix (a tie, lam = 0.5 exactly, goes to the lower class
    index)."""
    return targets.argmax(dim=1) if targets.dim() == 2 else targets
