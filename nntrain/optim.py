"""Parameter groups and learning-rate schedules.

configs/optimizer/*.yaml instantiate to a partial optimizer (called here with parameter groups);
configs/scheduler/*.yaml to a partial schedule (called with the optimizer and the step counts).
Every schedule steps once per optimizer step, not per epoch, so warmup and decay are smooth and
do not depend on the number of batches per epoch.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from nntrain.errors import UserError, is_number, require

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def param_groups(
    model: nn.Module, lr: float | None = None, backbone_lr_scale: float = 1.0
) -> list[dict[str, Any]]:
    """The model's parameters split into groups: with and without weight decay, and, for a
    model with a pretrained `backbone`, the backbone's at backbone_lr_scale x lr.

    Biases and normalisation weights get no decay: shrinking them towards zero only fights the
    normalisation and does not regularise. Frozen parameters are included too: they have no
    gradient, so the optimizer leaves them alone until they are unfrozen, and the scheduler
    already drives their group when that happens.
    """
    backbone = (
        getattr(model, "backbone", None) if getattr(model, "pretrained_backbone", False) else None
    )
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[str, list[nn.Parameter]] = {
        "decay": [], "no_decay": [], "backbone_decay": [], "backbone_no_decay": []
    }  # fmt: skip
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            kind = "no_decay" if isinstance(module, NORM_LAYERS) or name == "bias" else "decay"
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
            group["lr"] = lr * backbone_lr_scale
        result.append(group)
    return result


def build_optimizer(
    optimizer: Callable[..., torch.optim.Optimizer],
    model: nn.Module,
    backbone_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """Call the config's partial optimizer with the model's parameter groups."""
    require(
        is_number(backbone_lr_scale) and backbone_lr_scale >= 0,
        f"optimizer.backbone_lr_scale must be a number >= 0, got {backbone_lr_scale!r}.",
    )
    lr = getattr(optimizer, "keywords", {}).get("lr")
    device = next(model.parameters()).device
    optimizer = with_implementation(optimizer, device)
    try:
        return optimizer(param_groups(model, lr, backbone_lr_scale))
    except (ValueError, TypeError) as error:
        raise UserError(
            f"the optimizer rejected its settings ({error}); fix the optimizer.* value, "
            "e.g. optimizer.lr=1e-3."
        ) from error


# Device types whose fused Adam/AdamW/SGD kernels torch ships (torch>=2.4 has them on CPU too).
FUSED_DEVICE_TYPES = ("cpu", "cuda")


def with_implementation(
    optimizer: Callable[..., torch.optim.Optimizer], device: torch.device
) -> Callable[..., torch.optim.Optimizer]:
    """The partial optimizer with its `fused` setting (ours: auto, true or false) made concrete.

    auto takes torch's fused kernel where the optimizer has one for the device (Adam, AdamW and
    SGD on CPU and CUDA: one pass over each parameter instead of one per operation; 27 % faster
    steps for the MLP on a 2-core CPU), else the multi-tensor (foreach) version, which torch
    only picks by itself on CUDA. Same update rule either way, up to float rounding.
    false leaves the choice to torch; true insists on fused and refuses an optimizer without it.
    """
    keywords = dict(getattr(optimizer, "keywords", {}))
    setting = keywords.pop("fused", "auto")
    require(
        setting in ("auto", True, False, None),
        f"optimizer.fused must be auto, true or false, got {setting!r}.",
    )
    target = getattr(optimizer, "func", None)
    accepts = set(inspect.signature(target).parameters) if inspect.isclass(target) else set()
    name = getattr(target, "__name__", "this optimizer")
    if setting is True:
        require(
            "fused" in accepts, f"{name} has no fused implementation; set optimizer.fused=auto."
        )
        keywords["fused"] = True
    elif setting == "auto":
        if "fused" in accepts and device.type in FUSED_DEVICE_TYPES:
            keywords["fused"] = True
        elif "foreach" in accepts and "foreach" not in keywords:
            keywords["foreach"] = True
    if target is None or keywords == getattr(optimizer, "keywords", {}):
        return optimizer
    return functools.partial(target, *optimizer.args, **keywords)


def _warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """Warmup length in optimizer steps; a warmup longer than the run is cut to the run (a
    one-epoch smoke test with the default one-epoch warmup is then all warmup, not an error)."""
    require(total_steps >= 1, "the schedule has no steps: the training set yields no batches.")
    require(
        is_number(warmup_epochs) and warmup_epochs >= 0,
        f"scheduler.warmup_epochs must be a number >= 0, got {warmup_epochs!r}.",
    )
    return min(round(warmup_epochs * steps_per_epoch), total_steps)


def _linear_warmup(step: int, warmup_steps: int) -> float:
    # Step 0 already trains at lr/warmup_steps rather than at 0, so no step is wasted.
    return (step + 1) / warmup_steps


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    min_lr: float = 0.0,
) -> LambdaLR:
    """Linear warmup, then lr_t = min + 0.5 (max - min)(1 + cos(pi t / T)) over the remaining steps.

    t counts steps after warmup and T is their number. max is each group's initial lr; min_lr
    applies to the group with the largest lr and the others keep their ratio to it (a backbone at
    0.1x the head's lr decays to 0.1x min_lr), so relative rates hold through the schedule.
    """
    warmup_steps = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    peak = max(group["lr"] for group in optimizer.param_groups)
    require(
        is_number(min_lr) and 0 <= min_lr <= peak,
        f"scheduler.min_lr must be between 0 and the optimizer's lr ({peak}), got {min_lr!r}.",
    )
    floor = min_lr / peak if peak > 0 else 0.0
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _linear_warmup(step, warmup_steps)
        t = min(step - warmup_steps, decay_steps)
        return floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * t / decay_steps))

    return LambdaLR(optimizer, factor)


def triangle(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    peak_fraction: float = 0.23,
    start_factor: float = 0.2,
    end_factor: float = 0.07,
) -> LambdaLR:
    """Linear from start_factor x lr up to lr at peak_fraction of the run, then linear down to
    end_factor x lr at its end (the airbench speedruns' schedule; a one-cycle shape)."""
    require(
        is_number(peak_fraction) and 0 <= peak_fraction <= 1,
        f"scheduler.peak_fraction must be a number in [0, 1], got {peak_fraction!r}.",
    )
    for key, value in (("start_factor", start_factor), ("end_factor", end_factor)):
        require(
            is_number(value) and value >= 0,
            f"scheduler.{key} must be a number >= 0, got {value!r}.",
        )
    require(total_steps >= 1, "the schedule has no steps: the training set yields no batches.")
    peak = round(peak_fraction * total_steps)

    def factor(step: int) -> float:
        if step < peak:
            return start_factor + (1 - start_factor) * step / peak
        remaining = max(1, total_steps - peak)
        return 1 + (end_factor - 1) * min(step - peak, remaining) / remaining

    return LambdaLR(optimizer, factor)


def step_decay(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    step_epochs: float = 10,
    gamma: float = 0.1,
    warmup_epochs: float = 0.0,
) -> LambdaLR:
    """Multiply the lr by gamma every step_epochs epochs (after an optional linear warmup)."""
    require(
        is_number(step_epochs) and step_epochs > 0,
        f"scheduler.step_epochs must be a number > 0, got {step_epochs!r}.",
    )
    warmup_steps = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    period = max(1, round(step_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _linear_warmup(step, warmup_steps)
        return gamma ** ((step - warmup_steps) // period)

    return LambdaLR(optimizer, factor)


def constant(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
) -> LambdaLR:
    """The optimizer's lr throughout (after an optional linear warmup)."""
    warmup_steps = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)

    def factor(step: int) -> float:
        return _linear_warmup(step, warmup_steps) if step < warmup_steps else 1.0

    return LambdaLR(optimizer, factor)
