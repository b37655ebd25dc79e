"""torchvision's ResNet-18 with the tutorial's head, for fine-tuning or training from scratch.

The backbone is torchvision's resnet18 (fc removed); the head is Linear(512, 256) -> ReLU ->
Dropout(0.4) -> Linear(256, classes). Pretrained ImageNet weights come through torchvision's
weights API and the torch hub cache ($TORCH_HOME), or from a local state dict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nntrain.data.downloads import network_timeout, unreachable_reason
from nntrain.errors import UserError, first_line, is_number, require
from nntrain.models.backbones import FineTuned, check_backbone_settings, unwrapped
from nntrain.models.layers import Dropout

log = logging.getLogger("nntrain")

DOWNLOAD_TIMEOUT_S = 30.0


def imagenet_state_dict() -> dict[str, Tensor]:
    """torchvision's ImageNet weights for resnet18, from the hub cache or downloaded into it."""
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    file = cache / Path(weights.url).name
    # Offline, stop before torch.hub prints "Downloading: ..." above the one sentence.
    reason = None if file.is_file() else unreachable_reason(weights.url)
    try:
        if reason is None:
            with network_timeout(DOWNLOAD_TIMEOUT_S):
                return weights.get_state_dict(progress=False, check_hash=True)
    except OSError as error:  # URLError and socket timeouts are OSErrors
        reason = str(getattr(error, "reason", None) or error)
    except (RuntimeError, EOFError) as error:
        raise UserError(
            f"the cached pretrained weights {file} are damaged ({first_line(error)}); "
            "delete the file so it is downloaded again."
        ) from error
    raise UserError(
        f"the pretrained ResNet-18 weights are not in {cache} and could not be downloaded "
        f"({reason}); download {weights.url} and put it there as {file.name} (TORCH_HOME "
        "moves this cache), or pass model.weights_path=FILE."
    )


def local_state_dict(path: str) -> dict[str, Tensor]:
    file = Path(path).expanduser()
    run_best = file / "checkpoints" / "best.pt"
    hint = f" (for that run's weights: model.weights_path={run_best})" if run_best.is_file() else ""
    require(
        not file.is_dir(),
        f"model.weights_path {file} is a folder, not a file{hint}; pass the file of a saved "
        "resnet18 state dict.",
    )
    require(file.is_file(), f"model.weights_path {file} does not exist; pass a saved state dict.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(
            f"model.weights_path {file} could not be read as a state dict "
            f"({first_line(error)}); save one with torch.save(model.state_dict(), path)."
        ) from error
    require(isinstance(state, dict), f"model.weights_path {file} does not hold a state dict.")
    # torchvision's names, unpacked from a container and without wrappers' key prefixes
    return unwrapped(state, {"conv1.weight"})


def check_settings(
    input_shape: Sequence[int],
    pretrained: object,
    freeze_backbone: object,
    unfreeze_at_epoch: object,
    dropout: object,
    backbone_lr_scale: object,
) -> None:
    """model=resnet18's settings, each refused in one sentence when it cannot work: those
    every fine-tuned backbone shares, then its head's dropout."""
    check_backbone_settings(
        "resnet18",
        input_shape,
        pretrained,
        freeze_backbone,
        unfreeze_at_epoch,
        backbone_lr_scale,
        drop_path_rate=None,
    )
    require(
        is_number(dropout) and 0 <= dropout < 1,  # type: ignore[operator]
        f"model.dropout must be a number in [0, 1), got {dropout!r}.",
    )


class ResNet18(FineTuned):
    """ResNet-18 backbone + the tutorial's head; optional pretrained weights and freezing.

    freeze_backbone trains only the head (the frozen backbone, BatchNorm included, stays in
    eval mode); unfreeze_at_epoch=k trains the backbone too from the k-th epoch (1-based).
    backbone_lr_scale: a pretrained backbone trains at this multiple of the optimizer's lr
    (models.hooks.PretrainedBackbone); a backbone trained from scratch gets the plain lr.
    small_input (null = auto: on for images under 64 pixels unless pretrained) swaps the
    7x7/stride-2 stem and max-pool for a 3x3/stride-1 stem, the usual CIFAR ResNet.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        pretrained: bool = False,
        weights_path: str | None = None,
        freeze_backbone: bool = False,
        unfreeze_at_epoch: int | None = None,
        small_input: bool | None = None,
        head_hidden: int = 256,
        dropout: float = 0.4,
        backbone_lr_scale: float = 0.1,
    ) -> None:
        from torchvision.models import resnet18

        check_settings(
            input_shape, pretrained, freeze_backbone, unfreeze_at_epoch, dropout, backbone_lr_scale
        )
        channels, height, width = input_shape
        backbone = resnet18(weights=None)
        pretrained_backbone = bool(pretrained or weights_path)
        if pretrained_backbone:
            state = local_state_dict(weights_path) if weights_path else imagenet_state_dict()
            load_backbone_weights(backbone, state, source=weights_path or "ImageNet")
        require(
            small_input in (None, True, False),
            f"model.small_input must be true, false or null (auto), got {small_input!r}.",
        )
        if small_input is None:
            small_input = min(height, width) < 64 and not pretrained_backbone
        if small_input:
            backbone.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            backbone.maxpool = nn.Identity()
        elif channels != 3:
            backbone.conv1 = adapt_stem(backbone.conv1, channels, pretrained_backbone)
        backbone.fc = nn.Identity()
        head = nn.Sequential(
            nn.Linear(512, head_hidden),
            nn.ReLU(inplace=True),
            Dropout(dropout),
            nn.Linear(head_hidden, num_classes),
        )
        super().__init__(
            backbone,
            head,
            pretrained_backbone,
            freeze_backbone,
            unfreeze_at_epoch,
            backbone_lr_scale,
        )


def load_backbone_weights(backbone: nn.Module, state: dict[str, Any], source: str) -> None:
    # The classifier (fc) is replaced by our head, so its weights may be absent or any shape.
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = backbone.state_dict()
    # load_state_dict raises a RuntimeError (a page of text) for a tensor of another shape,
    # as in a resnet34/50 file: name the first such key in the sentence instead.
    wrong = [
        f"{k} is {list(getattr(v, 'shape', []))}, not {list(own[k].shape)}"
        for k, v in state.items()
        if k in own and getattr(v, "shape", None) != own[k].shape
    ]
    require(
        not wrong,
        f"the weights from {source} do not fit torchvision's resnet18 ({len(wrong)} tensors of "
        f"another shape, such as {wrong[0] if wrong else ''}); pass a resnet18 state dict.",
    )
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    counts = [
        f"{len(keys)} {what} keys such as {keys[:2]}"
        for what, keys in (("missing", missing), ("unexpected", unexpected))
        if keys
    ]
    require(
        not counts,
        f"the weights from {source} do not fit torchvision's resnet18 ({', '.join(counts)}); "
        "pass a resnet18 state dict.",
    )


def adapt_stem(conv: nn.Conv2d, channels: int, pretrained: bool) -> nn.Conv2d:
    """The 7x7 stem for `channels` input channels.

    Grayscale with pretrained weights: the stem's weights summed over RGB. A convolution is
    linear, so this gives exactly the output of the pretrained stem on the gray image replicated
    to three channels, without tripling the input (averaging instead would scale the
    activations by 1/3 and mismatch the pretrained BatchNorm statistics).
    """
    stem = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if pretrained and channels == 1:
        with torch.no_grad():
            stem.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
    return stem
