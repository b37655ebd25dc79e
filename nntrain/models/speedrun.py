"""The small, fast CIFAR-10 network of the airbench speedruns (Keller Jordan, "94% on CIFAR-10
in 3.29 seconds on a single GPU", arXiv:2404.00498), written for nntrain's Trainer.

    whitening conv (2x2, frozen, initialised from the data) -> GELU
    -> 3 x [conv3x3 -> maxpool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU]
    -> global max pool -> Linear (no bias) -> x scale

What makes it train fast: the first layer whitens 2x2 patches (its filters are the patch
covariance's eigenvectors, scaled by 1/sqrt(eigenvalue), and their negatives), so the network
starts on decorrelated inputs; every 3x3 conv starts as an identity (Dirac init) on its first
input channels, an implicit residual; BatchNorm layers only learn their shift (their scale stays
1, eps is tiny and the running statistics move fast); the logits are scaled down.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nntrain.errors import check_positive_int, is_number, require


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm that learns only its bias; `momentum` as torch means it (weight of the new
    batch's statistics)."""

    def __init__(self, channels: int, momentum: float) -> None:
        super().__init__(channels, eps=1e-12, momentum=momentum)
        self.weight.requires_grad_(False)


class _Conv(nn.Conv2d):
    """3x3 'same' conv without bias, initialised to pass its first input channels through."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__(channels_in, channels_out, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        weight = self.weight.data
        nn.init.dirac_(weight[: weight.size(1)])


class _ConvGroup(nn.Sequential):
    def __init__(self, channels_in: int, channels_out: int, bn_momentum: float) -> None:
        super().__init__(
            _Conv(channels_in, channels_out),
            nn.MaxPool2d(2),
            _BatchNorm(channels_out, bn_momentum),
            nn.GELU(),
            _Conv(channels_out, channels_out),
            _BatchNorm(channels_out, bn_momentum),
            nn.GELU(),
        )


class SpeedrunNet(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        widths: Sequence[int] = (64, 256, 256),
        whitening_kernel: int = 2,
        whitening_bias_epochs: int = 3,
        bn_momentum: float = 0.4,
        logit_scale: float = 1 / 9,
        init_samples: int = 5000,
    ) -> None:
        super().__init__()
        require(
            len(input_shape) == 3 and min(input_shape[1:]) >= 8 * whitening_kernel,
            f"model=speedrun needs images (C, H, W) of at least {8 * whitening_kernel} pixels a "
            f"side, got input shape {tuple(input_shape)}; use data=cifar10 (or another image set).",
        )
        widths = list(widths)
        require(
            len(widths) == 3 and all(isinstance(w, int) and w >= 1 for w in widths),
            f"model.widths must be three positive integers, got {widths!r}; e.g. [64,256,256].",
        )
        check_positive_int("model.whitening_kernel", whitening_kernel, example=2)
        require(
            is_number(bn_momentum) and 0 < bn_momentum <= 1,
            f"model.bn_momentum must be a number in (0, 1], got {bn_momentum!r}.",
        )
        require(
            isinstance(whitening_bias_epochs, int) and whitening_bias_epochs >= 0,
            f"model.whitening_bias_epochs must be an integer >= 0, got {whitening_bias_epochs!r}.",
        )
        require(
            is_number(logit_scale) and logit_scale > 0,
            f"model.logit_scale must be a number > 0, got {logit_scale!r}.",
        )
        channels = input_shape[0]
        whitened = 2 * channels * whitening_kernel**2  # each eigen-filter and its negative
        self.whiten = nn.Conv2d(channels, whitened, whitening_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from the data, never trained
        nn.init.zeros_(self.whiten.bias)  # type: ignore[arg-type]  # bias=True: never None
        self.whitening_bias_epochs = whitening_bias_epochs
        self.init_samples = check_positive_int("model.init_samples", init_samples, example=5000)
        self.body = nn.Sequential(
            nn.GELU(),
            _ConvGroup(whitened, widths[0], bn_momentum),
            _ConvGroup(widths[0], widths[1], bn_momentum),
            _ConvGroup(widths[1], widths[2], bn_momentum),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.logit_scale = logit_scale

    @torch.no_grad()
    def initialize_from_data(self, images: Tensor, eps: float = 5e-4) -> None:
        """Whitening filters from the covariance of the images' k x k patches (images as the
        model sees them: normalised). Called by the Trainer before the first step."""
        k = self.whiten.kernel_size[0]
        c = images.shape[1]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0)
        filters = filters.reshape(c * k * k, c, k, k)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def on_epoch_start(self, epoch: int) -> None:
        """The whitening bias trains for the first epochs only, then stays fixed."""
        self.whiten.bias.requires_grad_(epoch < self.whitening_bias_epochs)  # type: ignore[union-attr]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(self.whiten(x))) * self.logit_scale
