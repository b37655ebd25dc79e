"""What a finished run adds to TensorBoard (and its run dir) besides the curves: the confusion
matrix, sample predictions, the decision boundary of 2-feature tasks and the HParams record.

It is handed the best model's validation logits and a `classify` function (both from the one
inference path): nothing here runs a model itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nntrain.data.protocols import DataModule, Loader, collect
from nntrain.inference.metrics import confusion_matrix
from nntrain.reporting.tensorboard import RunLogger

SAMPLE_IMAGES = 32


def chosen_hparams(config_yaml: str, model_name: str, data_name: str) -> dict[str, Any]:
    """The run's hyperparameters, flat, as TensorBoard's HParams tab wants them (numbers,
    strings, booleans): the choices (model, data, optimizer, scheduler) and the values that
    usually differ between the runs of a sweep."""
    config = yaml.safe_load(config_yaml) if config_yaml else {}
    optimizer, scheduler = config.get("optimizer", {}), config.get("scheduler", {})
    trainer, data_config = config.get("trainer", {}), config.get("data", {})
    chosen: dict[str, Any] = {
        "model": model_name,
        "data": data_name,
        "optimizer": str(optimizer.get("_target_", "")).rsplit(".", 1)[-1],
        "optimizer.lr": optimizer.get("lr"),
        "optimizer.weight_decay": optimizer.get("weight_decay"),
        "scheduler": str(scheduler.get("_target_", "")).rsplit(".", 1)[-1],
        "data.batch_size": data_config.get("batch_size"),
        "trainer.max_epochs": trainer.get("max_epochs"),
        "trainer.precision": str(trainer.get("precision")),
        "seed": config.get("seed"),
    }
    for key, value in (config.get("model") or {}).items():
        if key != "_target_":
            chosen[f"model.{key}"] = value
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in chosen.items()}


def write_end_of_run(
    tensorboard: RunLogger,
    run_dir: Path,
    data: DataModule,
    val_logits: torch.Tensor,
    val_targets: torch.Tensor,
    classify: Callable[[torch.Tensor], torch.Tensor],
    result: dict[str, Any],
    config_yaml: str,
    model_name: str,
    step: int,
) -> None:
    """The pictures of the best model on the validation split, and the HParams record.
    classify: inputs -> predicted classes, for the decision boundary's grid."""
    from nntrain.reporting import figures

    predicted = val_logits.argmax(dim=1)
    matrix = confusion_matrix(val_targets, predicted, data.num_classes)
    tensorboard.image(
        "val/confusion_matrix",
        figures.confusion_matrix_image(matrix, data.class_names, "confusion matrix (val)"),
        step,
    )
    spec = data.input_spec()
    if spec["kind"] == "image":
        images = first_images(data.val_loader(), spec, SAMPLE_IMAGES)
        names = data.class_names
        grid = figures.image_grid(
            images,
            [names[t] for t in val_targets[: len(images)]],
            [names[p] for p in predicted[: len(images)]],
        )
        tensorboard.image("val/samples", grid, step)
    elif spec["kind"] == "tabular" and len(spec["feature_names"]) == 2:
        image = decision_boundary(classify, data.val_loader(), spec, data.class_names)
        figures.save_png(image, run_dir / "decision_boundary.png")
        tensorboard.image("val/decision_boundary", image, step)

    metrics = {
        "hparam/val_acc": float(result.get("val/acc", float("nan"))),
        "hparam/test_acc": float(result["test/acc"]),
        "hparam/best_epoch": float(result["best_epoch"]),
    }
    data_name = getattr(data, "name", type(data).__name__)
    tensorboard.hparams(chosen_hparams(config_yaml, model_name, data_name), metrics)


def first_images(loader: Loader, spec: dict[str, Any], count: int) -> np.ndarray:
    """The first validation images, undone to [0, 1] pixels for display."""
    images = collect(loader, count)[0].float().cpu()
    mean = torch.tensor(spec["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"]).view(1, -1, 1, 1)
    return ((images * std + mean) / spec["pixel_max"]).clamp(0, 1).numpy()


def decision_boundary(
    classify: Callable[[torch.Tensor], torch.Tensor],
    loader: Loader,
    spec: dict[str, Any],
    class_names: list[str],
) -> np.ndarray:
    """The tutorial's exercise 2: the model's class over a grid of raw feature values, with the
    validation points on top."""
    from nntrain.reporting import figures

    mean, std = torch.tensor(spec["mean"]), torch.tensor(spec["std"])
    inputs, targets = collect(loader)
    points = (inputs.float().cpu() * std + mean).numpy()

    def predict(raw: np.ndarray) -> np.ndarray:
        return classify((torch.from_numpy(raw) - mean) / std).numpy()

    return figures.decision_boundary_image(
        predict, points, targets.cpu().numpy(), class_names, spec["feature_names"]
    )
