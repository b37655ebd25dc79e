"""A trained model as a file other programs load: ONNX, TorchScript or safetensors weights,
with model.json beside it saying how to turn an input into the model's input.

The well-kept libraries do the work: torch.onnx.export (the dynamo exporter, with a dynamic
batch dimension; its output is checked with onnxruntime in the tests), torch.jit.trace, and
safetensors.torch.save_file. The model is exported as it is scored in evaluation: eval mode, on
the CPU, in float32 (a run's autocast precision is not baked in), without test-time augmentation.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from nntrain import files
from nntrain.errors import UserError, first_line
from nntrain.inference.trained_run import TrainedRun
from nntrain.tasks import task_of_spec

FORMATS = {
    "onnx": "model.onnx",
    "torchscript": "model.torchscript.pt",
    "safetensors": "model.safetensors",
}
INPUT_NAME, OUTPUT_NAME = "input", "logits"




def example_input(run: TrainedRun) -> torch.Tensor:
    """A batch of two inputs (two: BatchNorm layers and the exporters' shape checks like >1)."""
    return torch.zeros(2, *run.input_shape)


def write_via_temporary(path: Path, write: Callable[[Path], None]) -> Path:
    """write(temporary path) beside path, then rename: an exporter that writes by file name
    leaves no half-written file behind when it fails."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(name))
        os.replace(name, path)
    finally:
        if os.path.exists(name):
            os.remove(name)
    return path


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    try:
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
    except ImportError as error:
        raise UserError(
            "format=onnx needs nntrain's `export` extra (onnx, onnxscript, onnxruntime), which "
            "is not installed here; install it with: pip install 'nntrain[export]'."
        ) from error
    batch = torch.export.Dim("batch")

    def write(temporary: Path) -> None:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
        assert program is not None
        program.save(str(temporary), external_data=False)  # one file: the weights inside

    return write_via_temporary(path, write)


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    # PyTorch marks TorchScript deprecated (in favour of torch.export) but still runs and
    # loads it everywhere, C++ included; the warnings are not the user's to act on here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, example)

        def write(file: Any) -> None:
            torch.jit.save(traced, file)

        return files.write_atomically(path, write)


def export_safetensors(model: nn.Module, path: Path) -> Path:
    try:
        from safetensors.torch import save
    except ImportError as error:
        raise UserError(
            "format=safetensors needs nntrain's `export` extra (safetensors), which is not "
            "installed here; install it with: pip install 'nntrain[export]'."
        ) from error
    # Contiguous copies: safetensors refuses views and tensors that share memory.
    tensors = {
        name: value.detach().contiguous().clone() for name, value in model.state_dict().items()
    }

    def write(file: Any) -> None:
        file.write(save(tensors, metadata={"format": "pt"}))

    return files.write_atomically(path, write)


def export_model(run: TrainedRun, model: nn.Module, fmt: str, folder: Path) -> list[Path]:
    """Write the model in fmt into folder, then model.json; returns both paths."""
    model = model.float().eval().to("cpu")
    path = folder / FORMATS[fmt]
    example = example_input(run)
    try:
        if fmt == "onnx":
            export_onnx(model, example, path)
        elif fmt == "torchscript":
            export_torchscript(model, example, path)
        else:
            export_safetensors(model, path)
    except UserError:
        raise
    except Exception as error:  # the exporter cannot express an operation of this model
        raise UserError(
            f"{fmt} export of {type(model).__name__} failed ({first_line(error)}); try another "
            "format (safetensors always works: it holds the weights only)."
        ) from error
    return [path, write_description(run, fmt, folder)]


def describe_inputs(spec: dict[str, Any]) -> str:
    """How a new input becomes the model's input, in words (the numbers are in preprocessing)."""
    kind = spec.get("kind")
    if kind == "image":
        resize = (
            "resize the shorter side to resize_shorter, centre-crop to size"
            if spec.get("resize_shorter")
            else "resize to size"
        )
        return (
            f"{resize}; convert to {'grayscale' if spec['channels'] == 1 else 'RGB'}; pixel values "
            "0..255 times pixel_max/255; subtract mean and divide by std per channel; "
            "shape (batch, channels, height, width), float32"
        )
    if kind == "tabular":
        return "the columns feature_names in that order; (x - mean) / std per column; float32"
    return "a table row encoded as nntrain-predict does (see preprocessing); float32"


def write_description(run: TrainedRun, fmt: str, folder: Path) -> Path:
    """model.json: what the model takes and gives; the files exported into the same folder
    from the same checkpoint accumulate under `files`."""
    path = folder / "model.json"
    checkpoint = str(run.checkpoint_path)
    exported = {fmt: FORMATS[fmt]}
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = {}
        if before.get("checkpoint") == checkpoint:
            exported = {**before.get("files", {}), **exported}
    spec = dict(run.inputs)
    task = task_of_spec(spec)
    description = {
        "checkpoint": checkpoint,
        "epoch": run.state.get("epoch"),
        "files": exported,
        "task": task.name,
        "class_names": run.class_names,
        "input": {"name": INPUT_NAME, "shape": [None, *run.input_shape], "dtype": "float32"},
        "output": {
            "name": OUTPUT_NAME,
            "shape": [None, len(run.class_names)],
            "meaning": "the standardised value: times target_std plus target_mean"
            if not task.has_classes
            else "one logit per class in class_names; softmax gives probabilities",
        },
        "preprocessing": {"steps": describe_inputs(spec), **spec},
        # To rebuild the model for the safetensors weights: its class and arguments.
        "model": OmegaConf.to_container(run.config.model, resolve=True),
    }
    return files.write_json(path, description)
