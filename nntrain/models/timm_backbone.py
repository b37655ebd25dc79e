"""model=timm: any of timm's models by name (model.name=convnext_tiny), fine-tuned with a new head.

timm is an optional extra (pip install 'nntrain[models]'). Pretrained weights come from
Hugging Face's cache ($HF_HOME/hub, where timm keeps them) or timm's older torch hub cache,
downloaded into it when the hub is reachable; model.weights_path loads a file instead. The
model's pretrained config (timm's resolve_data_config: input size, interpolation, crop fraction,
mean and std) is the data's default (TimmModel.data_config, read by nntrain.data.settings:
data=imagefolder's image settings, and the in-memory sets' resize, interpolation, mean, std), and its layers are grouped as timm groups them for layer-wise lr decay.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from nntrain.data.downloads import network_timeout, unreachable_reason
from nntrain.errors import UserError, first_line, is_number, require
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

INSTALL = "pip install 'nntrain[models]'"
HUB = "https://huggingface.co"
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for, in its order
DOWNLOAD_TIMEOUT_S = 30.0


def imported_timm() -> Any:
    try:
        import timm
    except ImportError as error:
        raise UserError(
            f"model=timm needs the timm library, which is not installed here; install it with: "
            f"{INSTALL}."
        ) from error
    return timm


def check_name(timm: Any, name: object) -> str:
    """model.name as timm knows it (an architecture, or one with a pretrained tag:
    convnext_tiny.fb_in1k); else one sentence with the closest names."""
    require(
        isinstance(name, str) and bool(name),
        f"model.name must name a timm model, got {name!r}; e.g. model.name=convnext_tiny.",
    )
    assert isinstance(name, str)
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        raise UserError(closest_names(arch, timm.list_models(), "timm", timm_listing))
    if tag:
        tags = timm.list_pretrained(f"{arch}.*")
        require(
            name in tags,
            f"model.name={name}: timm has no pretrained tag {tag} for {arch}; its tags are "
            f"{', '.join(t.partition('.')[2] for t in tags) or 'none'}.",
        )
    return name


def timm_listing(part: str) -> str:
    wildcard = f"'*{part}*'" if part else ""
    return f'python -c "import timm; print(timm.list_models({wildcard}))"'


@functools.lru_cache(maxsize=32)
def pretrained_config(name: str) -> dict[str, Any]:
    """timm's pretrained config of the name ({} when timm is missing or the name unknown)."""
    try:
        from timm.models import get_pretrained_cfg
    except ImportError:
        return {}
    try:
        config = get_pretrained_cfg(name)
    except Exception:  # an unknown name: building the model says so in one sentence
        return {}
    return config.to_dict() if config is not None else {}


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def pretrained_size(name: str) -> int:
    """The image size of the name's pretrained config (224 when it has none)."""
    return int((pretrained_config(name).get("input_size") or (3, 224, 224))[1])


def data_config_of(name: str) -> dict[str, Any]:
    """The data settings timm's resolve_data_config gives the model's pretrained config, and
    whether the model takes that input size only (fixed_input_size: a ViT's position
    embedding; an in-memory set is then resized to it by default, data.settings)."""
    config = pretrained_config(name)
    if not config:
        return {}
    from timm.data import resolve_data_config

    resolved = resolve_data_config(pretrained_cfg=config)
    found = {
        "image_size": int(resolved["input_size"][1]),
        "crop_fraction": float(resolved["crop_pct"]),
        "mean": [float(v) for v in resolved["mean"]],
        "std": [float(v) for v in resolved["std"]],
        "fixed_input_size": bool(config.get("fixed_input_size")),
    }
    if resolved.get("interpolation") in INTERPOLATIONS:
        found["interpolation"] = resolved["interpolation"]
    return found


def create_body(
    timm: Any, name: str, input_shape: Sequence[int], num_classes: int, options: dict[str, Any]
) -> tuple[nn.Module, nn.Module]:
    """timm's model without its classifier (reset_classifier(0): its pooled features), and the
    classifier timm makes for num_classes (get_classifier) as the head."""
    channels, height, width = input_shape
    kwargs = {"in_chans": channels, **{k: v for k, v in options.items() if v is not None}}
    config = pretrained_config(name)
    # A ViT's position embedding is made for one image size: build it for the data's.
    if config.get("fixed_input_size") and tuple(config["input_size"][1:]) != (height, width):
        kwargs["img_size"] = (height, width)
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    except TypeError as error:
        given = [k for k in ("drop_rate", "drop_path_rate") if k in kwargs and k in str(error)]
        require(
            not given,
            f"timm's {name} does not take {given[0] if given else ''}; leave "
            f"model.{given[0] if given else ''} null.",
        )
        raise UserError(f"timm could not build {name} ({first_line(error)}).") from error
    except Exception as error:  # e.g. an image size a windowed attention cannot split
        raise UserError(
            f"timm could not build {name} for inputs of shape {tuple(input_shape)} "
            f"({first_line(error)}); {resize_hint(pretrained_size(name))}, its pretrained size."
        ) from error
    classifier = model.get_classifier()
    if isinstance(classifier, tuple | list):  # a distilled model's two heads: the first
        classifier = classifier[0]
    model.reset_classifier(0)
    return model, classifier


class TimmModel(FineTuned):
    """One of timm's models (model.name) with a new classifier head for the data's classes.

    pretrained: timm's weights for the name from the local cache (or downloaded into it);
    weights_path: a .safetensors or .pt file instead (an nntrain run's best.pt too). Either way
    every tensor but the classifier's must load. drop_rate (classifier dropout) and
    drop_path_rate (stochastic depth): null keeps the model's default. The rest as FineTuned.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        name: str = "resnet50",
        pretrained: bool = False,
        weights_path: str | None = None,
        freeze_backbone: bool = False,
        unfreeze_at_epoch: int | None = None,
        drop_rate: float | None = None,
        drop_path_rate: float | None = None,
        backbone_lr_scale: float = 0.1,
    ) -> None:
        check_backbone_settings(
            "timm",
            input_shape,
            pretrained,
            freeze_backbone,
            unfreeze_at_epoch,
            backbone_lr_scale,
            drop_path_rate,
        )
        require(
            drop_rate is None or (is_number(drop_rate) and 0 <= drop_rate < 1),
            f"model.drop_rate must be a number in [0, 1) or null (the model's default), got "
            f"{drop_rate!r}; e.g. model.drop_rate=0.2.",
        )
        timm = imported_timm()
        name = check_name(timm, name)
        options = {"drop_rate": drop_rate, "drop_path_rate": drop_path_rate}
        body, head = create_body(timm, name, input_shape, num_classes, options)
        source = None
        if pretrained or weights_path:
            source = load_weights(body, name, weights_path, input_shape[0])
        width = check_forward(
            body,
            input_shape,
            f"timm's {name}",
            f"{resize_hint(pretrained_size(name))}, its pretrained size",
        )
        if not (isinstance(head, nn.Linear) and head.in_features == width):
            head = nn.Linear(width, num_classes)  # a convolutional classifier, as a Linear
        super().__init__(
            body, head, bool(source), freeze_backbone, unfreeze_at_epoch, backbone_lr_scale
        )
        self.name = name
        log.info(describe(name, self, source))

    @staticmethod
    def data_config(settings: Mapping[str, Any]) -> dict[str, Any]:
        """The image settings of the model's pretrained config (data.image_size or
        data.resize, data.interpolation, data.crop_fraction, data.mean, data.std, and
        fixed_input_size); {} when there is none."""
        name = settings.get("name")
        return data_config_of(name) if isinstance(name, str) and name else {}

    def no_weight_decay(self) -> set[str]:
        """timm's recipe: no weight decay on 1-D parameters (norms, biases, layer scales) nor
        on those the model names (a ViT's position embedding and class token)."""
        own = getattr(self.backbone, "no_weight_decay", None)
        patterns = set(own()) if callable(own) else set()
        return {
            f"backbone.{name}"
            for name, param in self.backbone.named_parameters()
            if param.ndim <= 1 or any(fnmatch.fnmatch(name, p) for p in patterns)
        }

    def parameter_layers(self) -> tuple[dict[str, int], int]:
        """Each parameter's layer (0 = the stem) as timm groups them for layer-wise lr decay
        (group_matcher), the head in a layer of its own on top; and the number of layers."""
        from timm.models import group_parameters

        matcher = getattr(self.backbone, "group_matcher", None)
        require(
            callable(matcher),
            f"timm's {self.name} does not group its layers (no group_matcher), so "
            "optimizer.layer_decay cannot be applied; remove it.",
        )
        assert callable(matcher)
        layers = group_parameters(self.backbone, matcher(coarse=False), reverse=True)
        top = max(layers.values(), default=-1) + 1
        found = {f"backbone.{name}": int(layer) for name, layer in layers.items()}
        for name, _ in self.named_parameters():
            found.setdefault(name, top)
        return found, top + 1


def describe(name: str, model: FineTuned, source: str | None) -> str:
    return f"timm {name}: {described(model, source, data_config_of(name))}"


def load_weights(body: nn.Module, name: str, weights_path: str | None, channels: int) -> str:
    """Load timm's pretrained weights for the name (cached) or weights_path into body, exactly
    but for the classifier; returns where they came from."""
    if weights_path:
        state, source = read_weights(weights_path), str(weights_path)
    else:
        file = pretrained_file(body, name)
        state, source = read_weights(str(file)), str(file)
    config = getattr(body, "pretrained_cfg", None) or pretrained_config(name)
    state = unwrapped(state, set(body.state_dict()))
    # timm's own conversions (a checkpoint of the model's original authors, a ViT's position
    # embedding resampled to another image size), as timm.create_model(pretrained=True) does.
    convert = getattr(sys.modules.get(type(body).__module__), "checkpoint_filter_fn", None)
    if callable(convert):
        try:
            state = convert(state, body)
        except Exception as error:
            raise UserError(
                f"the weights from {source} do not fit timm's {name} ({first_line(error)}); pass "
                "weights saved from that architecture."
            ) from error
    classifier = config.get("classifier") or ()
    state = without_keys(state, (classifier,) if isinstance(classifier, str) else classifier)
    first = config.get("first_conv") or ()
    for conv in (first,) if isinstance(first, str) else first:
        if f"{conv}.weight" in state:
            state[f"{conv}.weight"] = adapted_first_conv(state[f"{conv}.weight"], channels)
    load_exactly(body, state, source, f"timm's {name}")
    return source


def pretrained_file(body: nn.Module, name: str) -> Path:
    """timm's pretrained weights file for the name: in Hugging Face's cache (where timm keeps
    it) or timm's older torch hub cache; downloaded into the first when the hub is reachable.
    Else one sentence saying where it looked."""
    from huggingface_hub import constants, try_to_load_from_cache

    config = getattr(body, "pretrained_cfg", None) or pretrained_config(name)
    hub_id, url = config.get("hf_hub_id"), config.get("url")
    require(
        bool(hub_id or url),
        f"timm has no pretrained weights for {name}; set model.pretrained=false, or pass "
        "model.weights_path=FILE.",
    )
    repo, _, revision = str(hub_id or "").partition("@")
    names = [config["hf_hub_filename"]] if config.get("hf_hub_filename") else list(HUB_FILES)
    looked = []
    if hub_id:
        for file in names:
            found = try_to_load_from_cache(repo, file, revision=revision or None)
            if isinstance(found, str):
                return Path(found)
        looked.append(f"{repo} ({' or '.join(names)}) in {constants.HF_HUB_CACHE}")
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        if cached.is_file():
            return cached
        looked.append(str(cached))
    reason = download_reason(repo, names, revision) if hub_id else "no Hugging Face hub id"
    if isinstance(reason, Path):
        return reason
    raise UserError(
        f"the pretrained weights of timm's {name} are not in the local cache (looked for "
        f"{' and '.join(looked)}) and could not be downloaded ({reason}); where there is "
        f"internet, python -c \"import timm; timm.create_model('{name}', pretrained=True)\" "
        "fills that cache (HF_HOME moves it), or pass model.weights_path=FILE."
    )


def download_reason(repo: str, names: Sequence[str], revision: str) -> Path | str:
    """The downloaded file (into Hugging Face's cache), or why it could not be downloaded."""
    reason = unreachable_reason(HUB)  # offline: fail in seconds, not after the hub's retries
    if reason is not None:
        return reason
    from huggingface_hub import hf_hub_download

    for file in names:
        try:
            with network_timeout(DOWNLOAD_TIMEOUT_S):
                return Path(hf_hub_download(repo, file, revision=revision or None))
        except Exception as error:  # not found, no network, refused: the next name, then say
            reason = first_line(error)
    return reason or "not found"
