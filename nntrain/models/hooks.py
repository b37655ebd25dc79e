"""The optional hooks a model may offer the Trainer and the optimizer, declared as Protocols.

A model opts in by having the attributes and methods below; it does not inherit from anything.
Code that uses a hook asks `isinstance(model, Hook)` (runtime_checkable: it checks that the
members exist), so the contract is written down once, here, instead of in getattr probes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class PretrainedBackbone(Protocol):
    """A model whose `backbone` may hold pretrained weights: while pretrained_backbone is true,
    the backbone's parameters train at backbone_lr_scale x the optimizer's lr (see
    nntrain.optim.optimizers.param_groups). E.g. nntrain.models.resnet.ResNet18."""

    backbone: nn.Module
    pretrained_backbone: bool
    backbone_lr_scale: float


@runtime_checkable
class InitializedFromData(Protocol):
    """A model that sets some weights from training inputs before the first step (e.g. the
    speedrun's whitening filters): the Trainer passes it init_samples training inputs as the
    model sees them (normalised, on the device), once, and not when a run resumes.
    E.g. nntrain.models.speedrun.SpeedrunNet."""

    init_samples: int

    def initialize_from_data(self, inputs: torch.Tensor) -> None: ...


@runtime_checkable
class EpochAware(Protocol):
    """A model that changes itself between epochs (e.g. unfreezes its backbone at epoch k): the
    Trainer calls on_epoch_start with the 0-based epoch before each training epoch.
    E.g. nntrain.models.resnet.ResNet18, nntrain.models.speedrun.SpeedrunNet."""

    def on_epoch_start(self, epoch: int) -> None: ...
