"""Optimizers: parameter groups (no weight decay on biases and norms, a scaled lr for a
pretrained backbone, or layer-wise lr decay) and torch's fastest implementation of the update
for the device."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn

from nntrain.errors import UserError, require
from nntrain.models.hooks import LayeredModel, NamesNoDecayParameters, PretrainedBackbone

log = logging.getLogger("nntrain")

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def pretrained_backbone(model: nn.Module) -> nn.Module | None:
    """The model's backbone while it holds pretrained weights (see models/hooks.py), else None."""
    if isinstance(model, PretrainedBackbone) and model.pretrained_backbone:
        return cast(nn.Module, model.backbone)
    return None


def no_decay_names(model: nn.Module) -> set[str]:
    """The parameters the model itself names for no weight decay (models.hooks)."""
    return set(model.no_weight_decay()) if isinstance(model, NamesNoDecayParameters) else set()


def param_groups(
    model: nn.Module, lr: float | None = None, layer_decay: float | None = None
) -> list[dict[str, Any]]:
    """The model's parameters split into groups: with and without weight decay, and, for a
    model with a pretrained backbone (models.hooks.PretrainedBackbone), the backbone's at the
    model's backbone_lr_scale x lr; with layer_decay, one group per layer (layer_groups).

    Biases and normalisation weights get no decay: shrinking them towards zero only fights the
    normalisation and does not regularise (nor do the parameters a model names itself, such as
    a ViT's position embedding). Frozen parameters are included too: they have no gradient, so
    the optimizer leaves them alone until they are unfrozen, and the scheduler already drives
    their group when that happens.
    """
    if layer_decay is not None:
        return layer_groups(model, lr, layer_decay)
    names = no_decay_names(model)
    named = {id(p) for n, p in model.named_parameters() if n in names}
    backbone = pretrained_backbone(model)
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[str, list[nn.Parameter]] = {
        "decay": [], "no_decay": [], "backbone_decay": [], "backbone_no_decay": []
    }  # fmt: skip
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            plain = isinstance(module, NORM_LAYERS) or name == "bias" or id(param) in named
            kind = "no_decay" if plain else "decay"
            groups[f"backbone_{kind}" if id(param) in in_backbone else kind].append(param)
    result = []
    for name, params in groups.items():
        if not params:
            continue
        group: dict[str, Any] = {"params": params, "name": name}
        if name.endswith("no_decay"):
            group["weight_decay"] = 0.0
        if name.startswith("backbone"):
            require(lr is not None, "optimizer.lr must be set to scale the backbone's lr.")
            assert isinstance(model, PretrainedBackbone) and lr is not None
            group["lr"] = lr * float(model.backbone_lr_scale)
        result.append(group)
    return result


def layer_groups(model: nn.Module, lr: float | None, decay: float) -> list[dict[str, Any]]:
    """Layer-wise lr decay (optimizer.layer_decay, timm's and BEiT's fine-tuning recipe): the
    head at lr, each layer below it at `decay` x the lr of the one above, so that the layers
    nearest the input, the most general, change least. It replaces model.backbone_lr_scale.
    Weight decay as in param_groups."""
    require(
        isinstance(model, LayeredModel),
        f"optimizer.layer_decay needs a model that says which layer each parameter is in "
        f"(model=timm does); {type(model).__name__} does not, so remove optimizer.layer_decay.",
    )
    require(lr is not None, "optimizer.lr must be set for optimizer.layer_decay.")
    assert isinstance(model, LayeredModel) and lr is not None
    layers, count = model.parameter_layers()
    named = no_decay_names(model)
    norm_params = {
        id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters()
    }
    groups: dict[tuple[int, str], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        layer = layers.get(name, count - 1)
        plain = id(param) in norm_params or name.rsplit(".", 1)[-1] == "bias" or name in named
        kind = "no_decay" if plain else "decay"
        group = groups.setdefault(
            (layer, kind),
            {
                "params": [],
                "name": f"layer_{layer}_{kind}",
                "lr": lr * decay ** (count - 1 - layer),
            },
        )
        if plain:
            group["weight_decay"] = 0.0
        group["params"].append(param)
    log.info(
        f"optimizer.layer_decay={decay}: {count} layers, the lr from {decay ** (count - 1):.3g} x "
        "optimizer.lr at the stem up to optimizer.lr at the head (model.backbone_lr_scale is "
        "not applied)"
    )
    return [groups[key] for key in sorted(groups)]


def build_optimizer(
    optimizer: Callable[..., torch.optim.Optimizer], model: nn.Module, fused: bool | str = "auto"
) -> torch.optim.Optimizer:
    """Call the config's partial optimizer with the model's parameter groups, with the kernel
    trainer.fused_optimizer asks for (see with_fastest_kernel)."""
    # The values were checked as the schema says (nntrain.optim.settings); a class of the
    # user's own checks its own, and what it refuses is said below.
    lr = getattr(optimizer, "keywords", {}).get("lr")
    optimizer, layer_decay = without_layer_decay(optimizer)
    device = next(model.parameters()).device
    optimizer = with_fastest_kernel(optimizer, device, fused)
    try:
        return optimizer(param_groups(model, lr, layer_decay))
    except (ValueError, TypeError, IndexError) as error:
        raise UserError(
            f"the optimizer rejected its settings ({error}); fix the optimizer.* value, "
            "e.g. optimizer.lr=1e-3."
        ) from error


def without_layer_decay(
    optimizer: Callable[..., torch.optim.Optimizer],
) -> tuple[Callable[..., torch.optim.Optimizer], float | None]:
    """The partial optimizer without +optimizer.layer_decay, which is nntrain's (it makes the
    parameter groups), not an argument of torch's optimizers; and its value."""
    keywords = dict(getattr(optimizer, "keywords", {}))
    if "layer_decay" not in keywords:
        return optimizer, None
    assert isinstance(optimizer, functools.partial)  # what has keywords: Hydra's _partial_
    decay = keywords.pop("layer_decay")
    return functools.partial(optimizer.func, *optimizer.args, **keywords), decay


# Device types whose fused Adam/AdamW/SGD kernels torch ships (torch>=2.4 has them on CPU too).
FUSED_DEVICE_TYPES = ("cpu", "cuda")


def with_fastest_kernel(
    optimizer: Callable[..., torch.optim.Optimizer], device: torch.device, fused: bool | str
) -> Callable[..., torch.optim.Optimizer]:
    """The partial optimizer with the implementation trainer.fused_optimizer (auto, true or
    false) asks for made concrete through torch's own `fused` and `foreach` arguments.

    auto takes torch's fused kernel where the optimizer has one for the device (Adam, AdamW and
    SGD on CPU and CUDA: one pass over each parameter instead of one per operation; 27 % faster
    steps for the MLP on a 2-core CPU), else the multi-tensor (foreach) version, which torch
    only picks by itself on CUDA. Same update rule either way, up to float rounding. An
    optimizer config that sets fused or foreach itself keeps its choice under auto.
    false leaves the choice to torch; true insists on fused and refuses an optimizer without it.
    """
    keywords = dict(getattr(optimizer, "keywords", {}))
    target = getattr(optimizer, "func", None)
    accepts = set(inspect.signature(target).parameters) if inspect.isclass(target) else set()
    name = getattr(target, "__name__", "this optimizer")
    if fused is True:
        require(
            "fused" in accepts,
            f"{name} has no fused implementation; set trainer.fused_optimizer=auto.",
        )
        keywords["fused"] = True
    elif fused == "auto" and not {"fused", "foreach"} & set(keywords):
        if "fused" in accepts and device.type in FUSED_DEVICE_TYPES:
            keywords["fused"] = True
        elif "foreach" in accepts:
            keywords["foreach"] = True
    if target is None or keywords == getattr(optimizer, "keywords", {}):
        return optimizer
    return functools.partial(target, *getattr(optimizer, "args", ()), **keywords)


# Group settings that say how this run's optimizer computes (chosen for its device and step),
# not what it learned: a checkpoint's own values are not put back over them.
IMPLEMENTATION_KEYS = ("capturable", "fused", "foreach")


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """optimizer.load_state_dict, for a checkpoint that may come from another device or step.

    torch restores every group setting the checkpoint holds, so a run saved by the CUDA graph
    step (capturable=True, lr as a CUDA tensor) would resume on a CPU with settings the CPU
    kernels refuse. The implementation keys keep this run's values, a tensor lr becomes a
    number again (the graph step makes its own), and a step count moves to the device where
    fused and capturable kernels keep it."""
    built = [
        {key: group[key] for key in IMPLEMENTATION_KEYS if key in group}
        for group in optimizer.param_groups
    ]
    optimizer.load_state_dict(saved)
    for group, kept in zip(optimizer.param_groups, built, strict=True):
        group.update(kept)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = float(group["lr"])
    on_device = [g for g in optimizer.param_groups if g.get("fused") or g.get("capturable")]
    step_counts_on_device(optimizer, on_device)


def step_counts_on_device(
    optimizer: torch.optim.Optimizer, groups: Sequence[dict[str, Any]] | None = None
) -> None:
    """Each step count (Adam's `step`) of these groups (default: all) on its parameter's
    device as float32, where torch's fused and capturable kernels keep it."""
    for group in optimizer.param_groups if groups is None else groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            step = state.get("step")
            if isinstance(step, torch.Tensor) and step.device != param.device:
                state["step"] = step.to(param.device, torch.float32)
