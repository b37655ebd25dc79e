"""What nntrain needs of a model (docs/pages/your-own-model.md), checked once it is built, so that a
user's model that breaks the contract is refused in one sentence before any data is trained on,
instead of with a traceback from inside the training step (or, for a wrong number of outputs,
not at all: a classifier with more outputs than classes trains without complaint)."""

from __future__ import annotations

import contextlib
import inspect
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from nntrain.errors import UserError, first_line, require
from nntrain.instantiate import build
from nntrain.models.hooks import EpochAware

HOW = "manual: docs/pages/your-own-model.md"


def build_checked(node: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model a config node describes (instantiate.build), built for the data and checked
    against the contract (check_model): what every command that builds a model calls."""
    model = build(node, "model", input_shape=input_shape, num_classes=num_classes)
    check_model(model, str(node.get("_target_")), tuple(input_shape), int(num_classes))
    return model


def check_model(model: object, target: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Raise a UserError unless `model` is an nn.Module with parameters to train whose forward
    turns a batch of inputs into (batch, num_classes) floating-point logits."""
    require(
        isinstance(model, nn.Module),
        f"the model from {target} is a {type(model).__name__}, not a torch.nn.Module; "
        f"model._target_ must name an nn.Module class or a function returning one ({HOW}).",
    )
    assert isinstance(model, nn.Module)
    require(
        next(model.parameters(), None) is not None,
        f"the model from {target} has no parameters (buffers are not trained), so there is "
        f"nothing to train; give it at least one nn.Parameter or layer ({HOW}).",
    )
    trainable = any(p.requires_grad for p in model.parameters())
    # A model that unfreezes itself at an epoch's start (EpochAware) may start fully frozen.
    require(
        trainable or isinstance(model, EpochAware),
        f"every parameter of the model from {target} is frozen (requires_grad=False), so there "
        "is nothing to train; leave at least one trainable.",
    )
    output = forward_on_zeros(model, input_shape)
    if output is not None:
        check_output(output, target, input_shape, num_classes, needs_grad=trainable)


def forward_on_zeros(model: nn.Module, input_shape: tuple[int, ...]) -> object | None:
    """The model's output for two all-zero inputs, in eval mode (no random numbers drawn, no
    statistics changed); None when the forward fails on zeros: some models cannot take them
    (token ids, say), and the training step then shows what is wrong with real inputs."""
    device = next(model.parameters()).device
    # Grad on: whether the output depends on the parameters is checked (a caller may be
    # building the model under torch.no_grad, as an export does).
    with eval_mode(model), torch.enable_grad():
        try:
            return model(torch.zeros((2, *input_shape), device=device))
        except Exception:  # not necessarily the model's fault: zeros are not real inputs
            return None


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def check_output(
    output: object,
    target: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    needs_grad: bool,
) -> None:
    """The forward's result must be the logits the loss takes: a floating-point tensor of shape
    (batch, num_classes) ((batch,) too for a regression's one output) that gradients reach."""
    expected = "(batch, 1)" if num_classes == 1 else f"(batch, {num_classes})"
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    what = (
        f"a {type(output).__name__}"
        if shape is None
        else f"shape {shape} for a batch of 2 inputs of shape {input_shape}"
    )
    fits = shape == (2, num_classes) or (num_classes == 1 and shape == (2,))
    if not fits:
        raise UserError(
            f"the model from {target} returns {what}, and nntrain needs one tensor of logits of "
            f"shape {expected} (the data has {num_classes} "
            f"{'target' if num_classes == 1 else 'classes'}); make forward return that ({HOW})."
        )
    assert isinstance(output, torch.Tensor)
    require(
        output.is_floating_point(),
        f"the model from {target} returns {output.dtype} values, and the loss needs "
        f"floating-point logits; return them before any argmax or rounding ({HOW}).",
    )
    require(
        not needs_grad or output.requires_grad or torch.is_inference_mode_enabled(),
        f"the output of the model from {target} does not depend on its trainable parameters "
        "(forward detaches it or runs under torch.no_grad), so no gradient would reach them; "
        "return the logits as computed.",
    )


# The model libraries nntrain builds models from (model=timm, model=torchvision, resnet18): an
# error raised in their code is theirs or torch's, not the user's to fix in a model file.
MODEL_LIBRARIES = ("torchvision", "timm")


def library_folders() -> list[Path]:
    import importlib.util

    import nntrain

    folders = [Path(torch.__file__).parent, Path(nntrain.__file__).parent]
    for name in MODEL_LIBRARIES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            folders.append(Path(spec.origin).parent)
    return folders


def model_files(model: nn.Module) -> set[Path]:
    """The source files of the model's own classes: its modules' classes defined outside torch,
    nntrain and the model libraries (a user's model.py)."""
    libraries = library_folders()
    found: set[Path] = set()
    for module in model.modules():
        try:
            source = inspect.getsourcefile(type(module))
        except TypeError:  # a class without a source file
            continue
        if source is not None:
            path = Path(source).resolve()
            if not any(path.is_relative_to(library) for library in libraries):
                found.add(path)
    return found


def fault_in_model(error: BaseException, model: nn.Module) -> str | None:
    """One sentence for an error raised in a user's model code (a file model_files names is on
    its traceback), else None: an error of nntrain's or torch's own keeps its traceback."""
    files = model_files(model)
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if Path(frame.filename).resolve() in files
    ]
    if not frames:
        return None
    where = frames[-1]
    return (
        f"the model's code raised {type(error).__name__}: {first_line(error)} "
        f"({Path(where.filename).name}, line {where.lineno}, in {where.name}); fix the model "
        f"({HOW})."
    )


def training_fault(error: Exception, model: nn.Module) -> str | None:
    """The sentence for an error of the user's making raised while training (a batch of one
    for BatchNorm, an error in their model's own code), or None: nntrain's or torch's own
    errors keep their traceback."""
    if "Expected more than 1 value per channel when training" in str(error):
        return (
            "a training batch gave a BatchNorm layer one value per channel, which has no batch "
            "statistics (data.batch_size=1, or one image shrunk to 1x1 pixels); use "
            "data.batch_size=2 or more."
        )
    return fault_in_model(error, model)
