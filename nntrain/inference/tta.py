"""Test-time augmentation: score each image as the average of the logits of a few views of it.

none: the image as it is; flip: it and its mirror image; flip_translate: airbench's six views,
the mirror pair of the image (weight 1/2) and of its one-pixel shifts up-left and down-right
(1/4 each), with reflected borders.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nntrain.errors import require


def _mirrored(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    return 0.5 * model(images) + 0.5 * model(images.flip(-1))


def tta_logits(
    model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, mode: str
) -> torch.Tensor:
    """The model's logits for a batch, averaged over the views of `mode` (images only)."""
    if mode == "none":
        return model(inputs)
    require(
        inputs.dim() == 4,
        f"trainer.test_time_augmentation={mode} needs image inputs (N, C, H, W), got shape "
        f"{tuple(inputs.shape)}; set trainer.test_time_augmentation=none.",
    )
    logits = _mirrored(model, inputs)
    if mode == "flip":
        return logits
    height, width = inputs.shape[-2:]
    padded = F.pad(inputs, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., :height, :width], padded[..., 2 : height + 2, 2 : width + 2]]
    translated = 0.5 * (_mirrored(model, shifted[0]) + _mirrored(model, shifted[1]))
    return 0.5 * logits + 0.5 * translated
