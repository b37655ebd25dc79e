"""The tutorial's CNN: six Conv3x3 -> BatchNorm2d -> ReLU blocks, max-pooling every second one,
then global average pooling and a small MLP head. Any channel count and image size work."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from nntrain.errors import is_number, require
from nntrain.models.layers import Dropout


def conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        # ceil_mode: on even sizes identical to the tutorial's MaxPool2d(2); on small or odd
        # sizes (8x8 digits -> 4 -> 2 -> 1, 7x7 -> 4) it never pools a map down to nothing.
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(*layers)


class CNN(nn.Module):
    """Conv blocks with the given channels (pool after every second), then
    AdaptiveAvgPool2d(1) -> Linear(C, head_hidden) -> ReLU -> Dropout -> Linear(head_hidden, classes)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (64, 64, 128, 128, 256, 256),
        head_hidden: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        require(
            len(input_shape) == 3,
            f"model=cnn needs image data shaped (channels, height, width), but this data set "
            f"gives {len(input_shape)}-dimensional inputs {tuple(input_shape)}; "
            "use model=mlp for tabular data.",
        )
        channels = list(channels)
        require(
            len(channels) >= 1 and all(isinstance(c, int) and c >= 1 for c in channels),
            f"model.channels must be a non-empty list of positive integers, got {channels!r}.",
        )
        require(
            is_number(dropout) and 0 <= dropout < 1,
            f"model.dropout must be a number in [0, 1), got {dropout!r}; for example model.dropout=0.5.",
        )
        widths = [input_shape[0], *channels]
        self.features = nn.Sequential(
            *(conv_block(widths[i], widths[i + 1], pool=i % 2 == 1) for i in range(len(channels)))
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels[-1], head_hidden),
            nn.ReLU(inplace=True),
            Dropout(dropout),
            nn.Linear(head_hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
