"""The commands' own settings (nntrain-eval, nntrain-predict, nntrain-export), declared once
(nntrain.schema) and checked before the command reads anything. Their config files
(configs/eval.yaml, predict.yaml, export.yaml) hold only Hydra's part: help and logging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from nntrain.schema import Settings, setting

RUN = "outputs/2026-11-25/10-00-00-mlp-digits"
CKPT_DOC = "a checkpoint file, or a run dir (its checkpoints/best.pt)"
DEVICE_DOC = "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps"
BATCH = "a positive integer or null (the run's data.batch_size)"
# A path as typed: Hydra reads a run directory named 2026 as a number.
Path = str | int | float


@dataclass
class EvalSettings(Settings):
    """nntrain-eval: score a trained checkpoint on a split, per class, with pictures."""

    COMMAND: ClassVar[str] = "nntrain-eval"

    ckpt: Path = setting("???", CKPT_DOC, expects="a path", example=RUN)
    split: Literal["test", "val", "train"] = setting("test", "the split scored: test, val or train")
    device: str = setting("auto", DEVICE_DOC)
    batch_size: int | None = setting(
        None, "inputs per forward pass; null = the run's data.batch_size", expects=BATCH, example=64
    )
    data: dict[str, Any] = setting(
        {}, "changes to the run's data config, e.g. data.root=/elsewhere (the data moved)"
    )

    def __post_init__(self) -> None:
        self.must("batch_size", self.batch_size is None or self.batch_size >= 1)


@dataclass
class PredictSettings(Settings):
    """nntrain-predict: predict classes (or values) of new inputs with a trained model."""

    COMMAND: ClassVar[str] = "nntrain-predict"

    ckpt: Path = setting("???", CKPT_DOC, expects="a path", example=RUN)
    inputs: Path = setting(
        "???",
        "an image, a folder of images (recursively), or a CSV file for tabular models",
        expects="a path",
        example="~/new_photos",
    )
    output: Path = setting(
        "predictions.csv", "the CSV written, relative to the current directory", expects="a path"
    )
    top_k: int = setting(
        3,
        "classes listed per input (at most the number of classes)",
        expects="a positive integer",
    )
    batch_size: int | None = setting(
        None,
        "inputs per forward pass; null = the run's data.batch_size (the same batches as its test)",
        expects=BATCH,
        example=64,
    )
    device: str = setting("auto", DEVICE_DOC)

    def __post_init__(self) -> None:
        self.must("top_k", self.top_k >= 1)
        self.must("batch_size", self.batch_size is None or self.batch_size >= 1)


@dataclass
class ExportSettings(Settings):
    """nntrain-export: a trained model as a file other programs load, with model.json beside it."""

    COMMAND: ClassVar[str] = "nntrain-export"

    ckpt: Path = setting("???", CKPT_DOC, expects="a path", example=RUN)
    format: Literal["onnx", "torchscript", "safetensors"] = setting(
        "???", "onnx, torchscript or safetensors", example="onnx"
    )
    output: Path | None = setting(
        None, "the folder written into; null = <run dir>/export", expects="a path or null"
    )
