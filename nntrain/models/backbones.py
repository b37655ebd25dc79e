"""What model=timm and model=torchvision share: a library's classification model split into its
body (the backbone, classifier removed) and a new Linear head for the data's classes, frozen and
unfrozen as ResNet-18 is, and weights loaded from a file exactly (every tensor but the
classifier's, or one sentence saying what does not fit).

Keeping the head out of the body (instead of replacing it in place) is what lets the optimizer
(models.hooks.PretrainedBackbone), freezing and weight files treat every library's model alike:
the backbone's parameters are `backbone.*`, the head's `head.*`, whatever the library calls them.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nntrain.errors import UserError, check_positive_int, first_line, is_number, require

log = logging.getLogger("nntrain")

# Containers a state dict is commonly saved in: an nntrain checkpoint ({"model": ...}), a
# training script's {"state_dict": ...} (timm's train.py), and the key prefixes that DataParallel
# and DDP ("module."), torch.compile ("_orig_mod.") and nntrain's models ("backbone.") put in
# front of the library's own names.
CONTAINER_KEYS = ("state_dict", "model", "module")
KEY_PREFIXES = ("module.", "_orig_mod.", "backbone.")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def check_backbone_settings(
    option: str,
    input_shape: Sequence[int],
    pretrained: object,
    freeze_backbone: object,
    unfreeze_at_epoch: object,
    backbone_lr_scale: object,
    drop_path_rate: object,
) -> None:
    """The settings model=timm and model=torchvision share, each refused in one sentence."""
    require(
        len(input_shape) == 3,
        f"model={option} needs image data shaped (channels, height, width), but this data set "
        f"gives {len(input_shape)}-dimensional inputs {tuple(input_shape)}; use model=mlp.",
    )
    for key, value in (("pretrained", pretrained), ("freeze_backbone", freeze_backbone)):
        # A string such as `no` from the command line is truthy: it would freeze or load.
        require(
            isinstance(value, bool),
            f"model.{key} must be true or false, got {value!r}; e.g. model.{key}=true.",
        )
    require(
        unfreeze_at_epoch is None or bool(freeze_backbone),
        "model.unfreeze_at_epoch needs model.freeze_backbone=true (it unfreezes a frozen backbone).",
    )
    if unfreeze_at_epoch is not None:
        check_positive_int("model.unfreeze_at_epoch", unfreeze_at_epoch, example=3)
    require(
        is_number(backbone_lr_scale) and backbone_lr_scale >= 0,  # type: ignore[operator]
        f"model.backbone_lr_scale must be a number >= 0, got {backbone_lr_scale!r}; "
        "e.g. model.backbone_lr_scale=0.1.",
    )
    require(
        drop_path_rate is None or (is_number(drop_path_rate) and 0 <= drop_path_rate < 1),  # type: ignore[operator]
        f"model.drop_path_rate must be a number in [0, 1) or null (the model's default), got "
        f"{drop_path_rate!r}; e.g. model.drop_path_rate=0.1.",
    )


def closest_names(
    name: str, names: Iterable[str], library: str, how_to_list: Callable[[str], str]
) -> str:
    """`model.name=X is not a <library> model; the closest names are ...` (one sentence): the
    names that contain X (a wildcard search, as timm.list_models('*X*')), else those nearest
    in spelling; how_to_list(part) is the command that lists the names containing part."""
    names = list(names)
    containing = [n for n in names if name.lower() in n.lower()]
    ranked = difflib.get_close_matches(
        name, containing or names, n=5, cutoff=0.0 if containing else 0.5
    )
    if not ranked:
        return (
            f"model.name={name} is not a {library} model, nor close to one; "
            f"{how_to_list('')} lists them all."
        )
    part = name if containing else ranked[0].split("_")[0]
    return (
        f"model.name={name} is not a {library} model; the closest names are "
        f"{', '.join(ranked)} ({how_to_list(part)} lists the names with {part} in them)."
    )


class FineTuned(nn.Module):
    """A library model's body (`backbone`) and a new Linear `head` for the data's classes.

    freeze_backbone trains only the head (the frozen backbone, its BatchNorm layers included,
    stays in eval mode); unfreeze_at_epoch=k trains the backbone too from the k-th epoch
    (1-based). While the backbone holds pretrained weights it trains at backbone_lr_scale x
    the optimizer's lr (models.hooks.PretrainedBackbone, nntrain.optim.optimizers)."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        pretrained_backbone: bool,
        freeze_backbone: bool,
        unfreeze_at_epoch: int | None,
        backbone_lr_scale: float,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pretrained_backbone = pretrained_backbone
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.backbone_frozen = False
        if freeze_backbone:
            self.set_backbone_frozen(True)

    def set_backbone_frozen(self, frozen: bool) -> None:
        self.backbone_frozen = frozen
        for param in self.backbone.parameters():
            param.requires_grad_(not frozen)
        self.train(self.training)  # puts a frozen backbone's BatchNorm layers in eval mode
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        state = "frozen" if frozen else "unfrozen"
        log.info(f"backbone {state}: trainable {trainable:,} / total {total:,} parameters")

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the Trainer before each epoch (0-based) to unfreeze at the chosen epoch."""
        if self.backbone_frozen and self.unfreeze_at_epoch and epoch + 1 >= self.unfreeze_at_epoch:
            self.set_backbone_frozen(False)

    def train(self, mode: bool = True) -> FineTuned:
        super().train(mode)
        if self.backbone_frozen:
            # Frozen BatchNorm layers keep their (pretrained) running statistics.
            self.backbone.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


def described(model: nn.Module, source: str | None, config: dict[str, Any]) -> str:
    """The start-up line's words after the model's name: its size, where its weights came
    from, and its data config (the data's defaults where the user set nothing)."""
    total = sum(p.numel() for p in model.parameters())
    weights = f"; weights from {source}" if source else ""
    fixed = " only" if config.get("fixed_input_size") else ""
    said = (
        f"; its pretrained data config: {config['image_size']} px{fixed}, "
        f"{config.get('interpolation', 'bilinear')}, crop {config['crop_fraction']}, mean "
        f"{config['mean']}, std {config['std']} (the data's defaults where not set)"
        if config
        else ""
    )
    return f"{total:,} parameters{weights}{said}"


def read_weights(path: str) -> dict[str, Any]:
    """The tensors of model.weights_path: a .safetensors file, or a state dict saved with
    torch.save (read with weights_only=True: a weights file is data, never code)."""
    file = Path(path).expanduser()
    run_best = file / "checkpoints" / "best.pt"
    hint = f" (for that run's weights: model.weights_path={run_best})" if run_best.is_file() else ""
    require(
        not file.is_dir(),
        f"model.weights_path {file} is a folder, not a file{hint}; pass a .safetensors or .pt file.",
    )
    require(
        file.is_file(),
        f"model.weights_path {file} does not exist; pass a .safetensors or .pt file.",
    )
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: object = load_file(str(file), device="cpu")
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except ImportError as error:
        raise UserError(
            f"model.weights_path {file} is a .safetensors file, and reading it needs the "
            "safetensors package; install it with: pip install 'nntrain[models]'."
        ) from error
    except Exception as error:
        raise UserError(
            f"model.weights_path {file} could not be read as weights ({first_line(error)}); "
            "pass a .safetensors file or a state dict saved with torch.save(model.state_dict(), "
            "path)."
        ) from error
    require(isinstance(state, dict), f"model.weights_path {file} does not hold a state dict.")
    assert isinstance(state, dict)
    return state


def unwrapped(state: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """The library-named tensors inside state: unpacked from a container dict and with the
    wrappers' key prefixes removed (keys outside the prefix, such as nntrain's head, dropped),
    until its names are those of the model (`expected`)."""
    for _ in range(len(CONTAINER_KEYS) + len(KEY_PREFIXES)):  # each layer peeled at most once
        if expected & set(state):
            break
        inner = [k for k in CONTAINER_KEYS if isinstance(state.get(k), dict)]
        prefix = [
            p
            for p in KEY_PREFIXES
            if any(k.startswith(p) and k[len(p) :] in expected for k in state)
        ]
        if inner:
            state = state[inner[0]]
        elif prefix:
            n = len(prefix[0])
            state = {k[n:]: v for k, v in state.items() if k.startswith(prefix[0])}
        else:
            break
    return state


def without_keys(state: dict[str, Any], prefixes: Iterable[str]) -> dict[str, Any]:
    """state without the tensors of the given modules (a classifier, an auxiliary head)."""
    prefixes = tuple(f"{p}." for p in prefixes if p)
    return {k: v for k, v in state.items() if not k.startswith(prefixes)} if prefixes else state


def adapted_first_conv(weight: Tensor, channels: int) -> Tensor:
    """A pretrained RGB stem's weights for `channels` input channels. Grayscale: summed over
    RGB, which gives exactly the stem's output on the gray image replicated to three channels.
    Others: RGB repeated, scaled so that the output keeps its size (timm's adapt_input_conv)."""
    if weight.ndim != 4 or weight.shape[1] == channels or weight.shape[1] != 3:
        return weight
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // 3)
    return weight.repeat(1, repeats, 1, 1)[:, :channels] * (3 / channels)


def load_exactly(body: nn.Module, state: dict[str, Any], source: str, what: str) -> None:
    """Load state into body, every tensor of the body from it and nothing left over; else one
    sentence naming the first keys that do not fit (load_state_dict's own text is a page)."""
    own = body.state_dict()
    wrong = [
        f"{k} is {list(getattr(v, 'shape', []))}, not {list(own[k].shape)}"
        for k, v in state.items()
        if k in own and getattr(v, "shape", None) != own[k].shape
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = [
        f"{len(keys)} {kind} such as {keys[0]}"
        for kind, keys in (
            ("tensors of another shape", wrong),
            ("missing tensors", missing),
            ("unexpected tensors", unexpected),
        )
        if keys
    ]
    require(
        not problems,
        f"the weights from {source} do not fit {what} ({'; '.join(problems)}); pass weights "
        "saved from that architecture, or set model.name to the one they were saved from.",
    )
    body.load_state_dict(state)


def resize_hint(size: object) -> str:
    """What to set for images of `size` px, in the data options that have a setting for it."""
    return (
        f"set data.image_size={size} (data=imagefolder) or data.resize={size} (data=mnist, "
        "fashion_mnist, cifar10, cifar100)"
    )


def check_forward(body: nn.Module, input_shape: Sequence[int], what: str, fix: str) -> int:
    """The width of the body's output for one all-zero input (the head's input), or one
    sentence when the body cannot take inputs of this shape (a ViT's fixed image size, a
    network too deep for tiny images)."""
    with torch.no_grad():
        was_training = body.training
        body.eval()
        try:
            output = body(torch.zeros(1, *input_shape))
        except Exception as error:  # the library's own check of the input, in its words
            raise UserError(
                f"{what} cannot take inputs of shape {tuple(input_shape)} ({first_line(error)}); "
                f"{fix}."
            ) from error
        finally:
            body.train(was_training)
    require(
        isinstance(output, Tensor) and output.ndim == 2,
        f"{what} without its classifier gives {getattr(output, 'shape', type(output).__name__)}, "
        "not one feature vector per image, so nntrain cannot give it a new head; pick another "
        "model.",
    )
    return int(output.shape[1])
