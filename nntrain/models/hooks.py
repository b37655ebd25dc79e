"""Optional hooks a model may have; the trainer checks for them with isinstance.

A model is a plain nn.Module. These Protocols declare the few extra things some models offer,
so that the contract is written down (and type-checked) instead of probed with hasattr.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class InitializedFromData(Protocol):
    """Sets some weights from training inputs before the first step (not on resume), e.g. the
    speedrun network's whitening filters."""

    init_samples: int  # how many training inputs it wants

    def initialize_from_data(self, inputs: torch.Tensor) -> None: ...


@runtime_checkable
class EpochAware(Protocol):
    """Changes itself at the start of an epoch, e.g. unfreezes a backbone at epoch k."""

    def on_epoch_start(self, epoch: int) -> None: ...


@runtime_checkable
class PretrainedBackbone(Protocol):
    """Has a `backbone` that may hold pretrained weights: while pretrained_backbone is true, its
    parameters train at backbone_lr_scale x the optimizer's lr, in their own parameter groups
    (nntrain.optim.optimizers.param_groups), e.g. ResNet-18 fine-tuned from ImageNet."""

    backbone: nn.Module
    pretrained_backbone: bool
    backbone_lr_scale: float  # model.backbone_lr_scale


@runtime_checkable
class NamesNoDecayParameters(Protocol):
    """Names parameters, beyond biases and normalisation weights, that get no weight decay
    (timm's convention, e.g. a ViT's position embedding; model=timm and model=torchvision)."""

    def no_weight_decay(self) -> set[str]: ...  # names as in model.named_parameters()


@runtime_checkable
class LayeredModel(Protocol):
    """Says which layer each parameter is in, for layer-wise lr decay (optimizer.layer_decay):
    {parameter name: layer, 0 = nearest the input} and the number of layers (model=timm)."""

    def parameter_layers(self) -> tuple[dict[str, int], int]: ...
