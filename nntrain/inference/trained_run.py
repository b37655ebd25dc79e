"""Rebuild a trained model from its checkpoint alone (for nntrain-eval and nntrain-predict).

A checkpoint carries the run's composed config, class names and an input spec (how to turn a
new input into model input), so the model can be rebuilt without the training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from nntrain.checkpoint import load_checkpoint
from nntrain.devices import Compute
from nntrain.errors import UserError, first_line, require
from nntrain.runs import resolve_checkpoint, run_dir_of


@dataclass
class TrainedRun:
    checkpoint_path: Path
    run_dir: Path  # where eval/predict files go: the run the checkpoint belongs to
    config: DictConfig
    class_names: list[str]
    inputs: dict[str, Any]
    state: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.inputs["kind"] in ("tabular", "table"):
            return (len(self.inputs["feature_names"]),)
        return (self.inputs["channels"], *self.inputs["size"])

    @property
    def test_time_augmentation(self) -> str:
        return str(self.config.trainer.get("test_time_augmentation", "none"))


def load_run(path: str | Path) -> TrainedRun:
    """The checkpoint at path (a .pt file, or a run dir: its checkpoints/best.pt)."""
    given = path
    path = resolve_checkpoint(path, "best")
    if not path.is_file() and path != resolve_checkpoint(given, "last"):
        explain_a_folder_without_best(Path(given).expanduser())
        path = last_when_best_was_not_kept(path)
    state = load_checkpoint(path)
    require(
        bool(state.get("config")) and bool(state.get("class_names")) and bool(state.get("inputs")),
        f"{path} lacks the run's config, class names or input description; it was not written "
        "by nntrain's trainer (or by an older version): train again to evaluate it.",
    )
    config = OmegaConf.create(state["config"])
    return TrainedRun(
        path, run_dir_of(path), config, list(state["class_names"]), state["inputs"], state
    )


def last_when_best_was_not_kept(best: Path) -> Path:
    """A run directory without best.pt but with last.pt: a run resumed from a checkpoint kept
    without its best.pt, where no later epoch was better; its test used last.pt, and so does
    this (said once)."""
    last = best.with_name("last.pt")
    if not last.is_file():
        return best
    from nntrain.reporting.console import display_path, get_console, plain

    get_console().print(
        plain(
            f"Note: {display_path(best.parent)} has no best.pt (the run was resumed from a "
            "checkpoint kept without it, and no later epoch was better); using last.pt, the "
            "checkpoint the run was tested with."
        ),
        soft_wrap=True,
    )
    return last


def without_weight_files(model: DictConfig) -> tuple[DictConfig, bool]:
    """A model config for weights that come from a checkpoint, and whether the run started
    from pretrained weights: those are not loaded again (no download, no local file, which
    may be gone), and a model that chose its architecture from having them (resnet18's
    small_input=auto keeps the ImageNet stem) gets the one it trained with."""
    model_config = model.copy()
    with open_dict(model_config):
        pretrained = bool(model_config.get("pretrained") or model_config.get("weights_path"))
        if pretrained and "small_input" in model_config and model_config.small_input is None:
            model_config.small_input = False
        for key in ("pretrained", "weights_path"):
            if key in model_config:
                model_config[key] = None if key == "weights_path" else False
    return model_config, pretrained


def explain_a_folder_without_best(folder: Path) -> None:
    """ckpt= of a sweep's directory (its jobs hold the checkpoints), or of a run that failed
    before it saved any: said as such (the plain answer named a best.pt that never was)."""
    import json

    if not folder.is_dir():
        return
    jobs = sorted(
        (job for job in folder.iterdir() if (job / "checkpoints" / "best.pt").is_file()),
        key=lambda job: (not job.name.isdigit(), int(job.name) if job.name.isdigit() else 0),
    )
    if jobs:
        raise UserError(
            f"ckpt={folder} is a sweep directory; give one of its jobs, e.g. ckpt={jobs[0]} "
            "(its summary.csv lists every job with its score)."
        )
    status_file = folder / "status.json"
    if status_file.is_file() and not (folder / "checkpoints").is_dir():
        status = json.loads(status_file.read_text())
        ended = {"failed": "failed", "interrupted": "was interrupted", "pruned": "was pruned"}
        how = ended.get(str(status.get("status")), f"ended ({status.get('status')})")
        why = str(status.get("error") or "").strip().rstrip(".")
        raise UserError(
            f"ckpt={folder} holds no checkpoint: the run {how} before it saved one"
            f"{f' ({why})' if why else ''}; fix that and train it again."
        )


def build_model(run: TrainedRun, device: torch.device | str = "cpu") -> nn.Module:
    """The run's model with the checkpoint's weights, in eval mode on device."""
    from nntrain.instantiate import check_importable
    from nntrain.models.contract import build_checked

    target = str(run.config.model.get("_target_"))
    check_importable(target, f"the model class {target} of {run.checkpoint_path}")
    model_config, _ = without_weight_files(run.config.model)
    model = build_checked(model_config, run.input_shape, len(run.class_names))
    try:
        model.load_state_dict(run.state["model"])
    except RuntimeError as error:
        raise UserError(
            f"the weights in {run.checkpoint_path} do not fit the model its config describes "
            f"({first_line(error)})."
        ) from error
    return model.to(device).eval()


def run_compute(run: TrainedRun, device: torch.device, model: nn.Module) -> Compute:
    """How the run computed (precision, memory layout), on `device`. A precision the device
    lacks (fp16 autocast of a CUDA run, evaluated on a CPU) becomes the device's default: the
    scores then match the run's only up to rounding."""
    trainer = run.config.trainer
    precision = trainer.get("precision", "auto")
    if str(precision) == "16" and device.type != "cuda":
        precision = "auto"
    return Compute.resolve(device, precision, trainer.get("channels_last", "auto"), model)
