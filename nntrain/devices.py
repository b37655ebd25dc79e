"""Where and in which precision a run computes: device, autocast dtype, memory layout."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nntrain.errors import UserError, require

PRECISIONS = ("auto", "32", "bf16", "16")


def resolve_device(device: str, key: str = "trainer.device") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; anything else must exist on this machine.
    key: the config key the value came from, for the error messages."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    named = f"{key} must be auto, cpu, cuda, cuda:N or mps, got {device!r}."
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise UserError(named) from error
    # torch knows more device types (meta holds no data, xla or hpu need their own builds):
    # nntrain trains and evaluates on these three.
    require(resolved.type in ("cpu", "cuda", "mps"), named)
    if resolved.type == "cuda":
        require(
            torch.cuda.is_available(),
            f"{key}={device} but CUDA is not available here; use {key}=auto.",
        )
        count = torch.cuda.device_count()
        require(
            resolved.index is None or resolved.index < count,
            f"{key}={device} but this machine has {count} CUDA device(s), cuda:0 to "
            f"cuda:{count - 1}; use {key}=cuda (the first) or one of those.",
        )
    if resolved.type == "mps":
        require(
            torch.backends.mps.is_available(),
            f"{key}={device} but MPS is not available here; use {key}=auto.",
        )
    return resolved


# On CUDA, `auto` turns bf16 autocast and channels_last on only for models at least this large.
# Below it a step at the usual batch sizes is launch-bound (the GPU waits for the host to queue
# kernels), and the casts and layout changes add kernels that cost more than bf16 saves:
# measured on an H200 at batch 128 (scripts/benchmark.py, 2026-11-30), the MLP (0.57 M
# parameters) and the CNN (1.2 M) trained 17 % and 31 % slower than an fp32 NCHW hand loop
# with bf16 + channels_last, while ResNet-18 (11.2 M) trained 11 % faster with them.
LARGE_MODEL_PARAMETERS = 5_000_000


def is_large(model: nn.Module | None) -> bool:
    """Whether a model is large enough for bf16 / channels_last to pay on CUDA (no model:
    assume it is, as the setting's answer before a model is known)."""
    return model is None or sum(p.numel() for p in model.parameters()) >= LARGE_MODEL_PARAMETERS


def resolve_precision(
    precision: object, device: torch.device, model: nn.Module | None = None
) -> torch.dtype | None:
    """The autocast dtype for a precision setting, or None for full fp32.

    auto: on CUDA, for models of at least LARGE_MODEL_PARAMETERS, bf16 on GPUs that support it,
    else fp16 (with a GradScaler); fp32 for smaller models (launch-bound, see above) and on
    other devices, since CPU autocast is slower than fp32 for most of these models.
    """
    setting = str(precision)
    require(
        setting in PRECISIONS,
        f"trainer.precision must be one of auto, 32, bf16, 16, got {precision!r}.",
    )
    if setting == "auto":
        if device.type != "cuda" or not is_large(model):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if setting == "16":
        require(
            device.type == "cuda", "trainer.precision=16 needs a CUDA device; use bf16 or 32 here."
        )
        return torch.float16
    return torch.bfloat16 if setting == "bf16" else None


def use_channels_last(setting: bool | str, device: torch.device, model: nn.Module) -> bool:
    """Whether to train a model in the channels_last (NHWC) memory format.

    auto: on for models with 2-D convolutions on the CPU (oneDNN's convolutions are faster in
    NHWC: the tutorial's CNN on CIFAR-shaped batches trains about 15 % faster on a 2-core x86
    CPU, scripts/benchmark.py) and on CUDA for conv models of at least LARGE_MODEL_PARAMETERS
    (tensor cores and cuDNN's fast paths want NHWC; smaller ones are launch-bound, see above);
    off on MPS, where it has not been measured.
    """
    if setting != "auto":
        return bool(setting)
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if device.type == "cuda":
        return has_conv and is_large(model)
    return has_conv and device.type == "cpu"


@dataclass(frozen=True)
class Compute:
    """Where and how a model computes: the device, the autocast dtype (None: full fp32) and
    whether 4-D inputs go in channels_last layout. Training and inference share one."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False
    # autocast's cache of cast weights; off inside a CUDA graph, whose replays must cast the
    # weights the optimizer has just updated (torch's CUDA-graph notes ask for it off)
    autocast_cache: bool = True

    @classmethod
    def resolve(
        cls,
        device: torch.device,
        precision: object,
        channels_last: bool | str,
        model: nn.Module,
    ) -> Compute:
        """The settings of a trainer config (precision, channels_last) for model on device."""
        return cls(
            device,
            resolve_precision(precision, device, model),
            use_channels_last(channels_last, device, model),
        )

    def grad_scaler(self) -> torch.amp.GradScaler:
        """The loss scaler a training step uses: on for float16 autocast only (bfloat16 has
        float32's range and needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)

    @property
    def precision_name(self) -> str:
        return PRECISION_NAMES[self.autocast_dtype]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:  # fp32: skip the context's own cost on every step
            return contextlib.nullcontext()
        return torch.autocast(
            self.device.type, dtype=self.autocast_dtype, cache_enabled=self.autocast_cache
        )

    def to_model_layout(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.channels_last and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs


PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}
