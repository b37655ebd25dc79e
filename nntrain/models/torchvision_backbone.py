"""model=torchvision: torchvision's classification models by name (model.name=mobilenet_v3_small),
fine-tuned with a new head.

Pretrained weights are torchvision's default ones for the name (its weights API), from torch's
hub cache ($TORCH_HOME/hub/checkpoints) or downloaded into it when the host is reachable;
model.weights_path loads a file instead. The weights' own preprocessing (resize, crop, mean,
std, interpolation) is the data's default (TorchvisionModel.data_config: data=imagefolder's
image settings, the in-memory sets' resize, interpolation, mean and std).

torchvision has no notion of "the classifier"; every classification model it has ends in one
Linear layer with the 1000 ImageNet outputs (squeezenet, a convolution, is refused), which is
taken out of the body and replaced by the head.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nntrain.data.downloads import network_timeout, unreachable_reason
from nntrain.errors import UserError, first_line, require
from nntrain.models.backbones import (
    FineTuned,
    adapted_first_conv,
    check_backbone_settings,
    check_forward,
    closest_names,
    described,
    load_exactly,
    read_weights,
    resize_hint,
    unwrapped,
    without_keys,
)

log = logging.getLogger("nntrain")

IMAGENET_CLASSES = 1000
DOWNLOAD_TIMEOUT_S = 30.0
# GoogLeNet and Inception v3 train with auxiliary heads by default and re-normalise their input
# when built with weights: fixed here, so that the architecture is the same with or without
# weights (a checkpoint is rebuilt without them).
GOOGLE_NETS = {"googlenet", "inception_v3"}
AUXILIARY = ("aux1", "aux2", "AuxLogits")
FIXED_SIZE = ("vit_", "maxvit_")  # models built for one input size (their weights' crop size)


@functools.lru_cache(maxsize=1)
def classification_models() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def listing(part: str) -> str:
    """The command that lists torchvision's classification models (those containing part)."""
    wildcard = f", include='*{part}*'" if part else ""
    return (
        'python -c "import torchvision; print(torchvision.models.list_models('
        f'torchvision.models{wildcard}))"'
    )


def check_name(name: object) -> str:
    require(
        isinstance(name, str) and bool(name),
        f"model.name must name a torchvision model, got {name!r}; e.g. model.name=resnet50.",
    )
    assert isinstance(name, str)
    if name not in classification_models():
        raise UserError(closest_names(name, classification_models(), "torchvision", listing))
    return name


def default_weights(name: str) -> Any:
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT


@functools.lru_cache(maxsize=32)
def data_config_of(name: str) -> dict[str, Any]:
    """The data settings of the name's default weights' own preprocessing, and whether the
    model takes that input size only (fixed_input_size: ViT's position embedding, MaxViT's
    windows; an in-memory set is then resized to it by default, data.settings)."""
    if name not in classification_models():
        return {}
    transforms = default_weights(name).transforms()
    crop, resize = int(transforms.crop_size[0]), int(transforms.resize_size[0])
    return {
        "image_size": crop,
        "crop_fraction": round(crop / resize, 4),
        "interpolation": str(transforms.interpolation.value),
        "mean": [float(v) for v in transforms.mean],
        "std": [float(v) for v in transforms.std],
        "fixed_input_size": name.startswith(FIXED_SIZE),
    }


def build_options(
    name: str, input_shape: Sequence[int], drop_path_rate: float | None
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if name in GOOGLE_NETS:
        options.update(aux_logits=False, transform_input=True)
    if name.startswith("vit_") and input_shape[1] != 224:
        options["image_size"] = int(input_shape[1])  # its position embedding's image size
    if drop_path_rate is not None:
        options["stochastic_depth_prob"] = float(drop_path_rate)
    return options


def create(
    name: str, weights: Any, options: dict[str, Any], input_shape: Sequence[int]
) -> nn.Module:
    from torchvision.models import get_model

    if weights is None and name in GOOGLE_NETS:
        options = {**options, "init_weights": True}  # torchvision's warning otherwise
    try:
        return get_model(name, weights=weights, **options)
    except TypeError as error:
        require(
            "stochastic_depth_prob" not in str(error),
            f"torchvision's {name} has no stochastic depth; leave model.drop_path_rate null.",
        )
        raise UserError(f"torchvision could not build {name} ({first_line(error)}).") from error
    except ValueError as error:  # weights for another image size than the data's
        raise UserError(
            f"torchvision could not build {name} for inputs of shape {tuple(input_shape)} "
            f"({first_line(error)}); {resize_hint(default_weights(name).meta['min_size'][0])}."
        ) from error
    except (RuntimeError, EOFError) as error:  # a damaged file in the hub cache
        raise UserError(
            f"the cached pretrained weights of torchvision's {name} are damaged "
            f"({first_line(error)}); delete {cached_file(weights)} so it is downloaded again."
        ) from error


def cached_file(weights: Any) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def pretrained_body(
    name: str, options: dict[str, Any], input_shape: Sequence[int]
) -> tuple[nn.Module, str]:
    """torchvision's model with its default weights, from the hub cache or downloaded into it
    (torchvision loads them exactly); else one sentence saying where it looked."""
    weights = default_weights(name)
    file = cached_file(weights)
    # Offline, stop before torch.hub prints "Downloading: ..." above the one sentence.
    reason = None if file.is_file() else unreachable_reason(weights.url)
    if reason is None:
        try:
            with network_timeout(DOWNLOAD_TIMEOUT_S):
                return create(name, weights, options, input_shape), str(file)
        except OSError as error:  # URLError and socket timeouts are OSErrors
            reason = str(getattr(error, "reason", None) or error)
    raise UserError(
        f"the pretrained weights of torchvision's {name} ({weights}) are not in {file.parent} "
        f"and could not be downloaded ({reason}); download {weights.url} and put it there as "
        f"{file.name} (TORCH_HOME moves this cache), or pass model.weights_path=FILE."
    )


def classifier_path(body: nn.Module, name: str) -> str:
    """The name of the model's last Linear layer with the 1000 ImageNet outputs."""
    found = [
        path
        for path, module in body.named_modules()
        if isinstance(module, nn.Linear) and module.out_features == IMAGENET_CLASSES
    ]
    require(
        bool(found),
        f"torchvision's {name} does not end in a Linear classifier that nntrain can replace; "
        "pick another model (e.g. model.name=mobilenet_v3_small).",
    )
    return found[-1]


def replace(body: nn.Module, path: str, module: nn.Module) -> nn.Module:
    """Put module at path (a.b.c) in body; returns the module it replaced."""
    parent, _, last = path.rpartition(".")
    owner = body.get_submodule(parent) if parent else body
    old = owner.get_submodule(last)
    setattr(owner, last, module)
    return old


def adapt_stem(body: nn.Module, channels: int, pretrained: bool) -> None:
    """The first convolution for `channels` input channels (torchvision's take RGB only)."""
    path, conv = next((p, m) for p, m in body.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == channels:
        return
    stem = nn.Conv2d(
        channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        conv.dilation,  # type: ignore[arg-type]
        conv.groups,
        conv.bias is not None,
    )
    if pretrained:
        with torch.no_grad():
            stem.weight.copy_(adapted_first_conv(conv.weight, channels))
            if conv.bias is not None:
                stem.bias.copy_(conv.bias)  # type: ignore[union-attr]
    replace(body, path, stem)


class TorchvisionModel(FineTuned):
    """One of torchvision's classification models (model.name) with a new head for the data's
    classes. pretrained: its default weights (hub cache); weights_path: a .safetensors or .pt
    file instead, every tensor but the classifier's loaded exactly. drop_path_rate: the
    stochastic depth of the models that have it (null: the model's default)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        name: str = "resnet50",
        pretrained: bool = False,
        weights_path: str | None = None,
        freeze_backbone: bool = False,
        unfreeze_at_epoch: int | None = None,
        drop_path_rate: float | None = None,
        backbone_lr_scale: float = 0.1,
    ) -> None:
        check_backbone_settings(
            "torchvision",
            input_shape,
            pretrained,
            freeze_backbone,
            unfreeze_at_epoch,
            backbone_lr_scale,
            drop_path_rate,
        )
        name = check_name(name)
        options = build_options(name, input_shape, drop_path_rate)
        source = None
        if pretrained and not weights_path:
            body, source = pretrained_body(name, options, input_shape)
        else:
            body = create(name, None, options, input_shape)
        path = classifier_path(body, name)
        replace(body, path, nn.Identity())
        if weights_path:
            source = load_file_weights(body, name, weights_path, path)
        adapt_stem(body, int(input_shape[0]), bool(source))
        size = data_config_of(name).get("image_size", 224)
        width = check_forward(
            body, input_shape, f"torchvision's {name}", f"use larger images: {resize_hint(size)}"
        )
        super().__init__(
            body,
            nn.Linear(width, num_classes),
            bool(source),
            freeze_backbone,
            unfreeze_at_epoch,
            backbone_lr_scale,
        )
        self.name = name
        log.info(f"torchvision {name}: {described(self, source, data_config_of(name))}")

    @staticmethod
    def data_config(settings: Mapping[str, Any]) -> dict[str, Any]:
        """The preprocessing of the name's default weights as data settings ({} if unknown)."""
        name = settings.get("name")
        return data_config_of(name) if isinstance(name, str) else {}

    def no_weight_decay(self) -> set[str]:
        """No weight decay on 1-D parameters (norms, biases), as timm's recipe has it."""
        return {f"backbone.{n}" for n, p in self.backbone.named_parameters() if p.ndim <= 1}


def load_file_weights(body: nn.Module, name: str, weights_path: str, classifier: str) -> str:
    """model.weights_path into body (its classifier already taken out): every tensor but the
    classifier's (and auxiliary heads') exactly."""
    state = unwrapped(read_weights(weights_path), set(body.state_dict()))
    state = without_keys(state, (classifier, *AUXILIARY))
    load_exactly(body, state, weights_path, f"torchvision's {name}")
    return weights_path
