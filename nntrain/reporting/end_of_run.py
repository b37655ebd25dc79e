"""What a finished run adds to TensorBoard (and its run dir) besides the curves: the confusion
matrix, sample predictions, the decision boundary of 2-feature tasks and the HParams record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from nntrain.reporting.tensorboard import TensorBoardLogger

SAMPLE_IMAGES = 32


def chosen_hparams(config_yaml: str, model: nn.Module, data: Any) -> dict[str, Any]:
    """The run's hyperparameters, flat, as TensorBoard's HParams tab wants them (numbers,
    strings, booleans): the choices (model, data, optimizer, scheduler) and the values that
    usually differ between the runs of a sweep."""
    config = yaml.safe_load(config_yaml) if config_yaml else {}
    optimizer, scheduler = config.get("optimizer", {}), config.get("scheduler", {})
    trainer, data_config = config.get("trainer", {}), config.get("data", {})
    chosen: dict[str, Any] = {
        "model": type(model).__name__,
        "data": getattr(data, "name", type(data).__name__),
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
    tensorboard: TensorBoardLogger,
    trainer: Any,
    model: nn.Module,
    data: Any,
    run_dir: Path,
    result: dict[str, Any],
    config_yaml: str,
    step: int,
) -> None:
    """The pictures of the best model on the validation split, and the HParams record."""
    from nntrain.reporting import figures as plots

    logits, targets = trainer.predict(model, data.val_loader())
    predicted = logits.argmax(dim=1)
    matrix = np.zeros((data.num_classes, data.num_classes), dtype=np.int64)
    np.add.at(matrix, (targets.numpy(), predicted.numpy()), 1)
    tensorboard.image(
        "val/confusion_matrix",
        plots.confusion_matrix_image(matrix, data.class_names, "confusion matrix (val)"),
        step,
    )

    spec = data.input_spec() if hasattr(data, "input_spec") else {}
    if spec.get("kind") == "image":
        images = first_images(data, spec)
        names = data.class_names
        grid = plots.image_grid(
            images,
            [names[t] for t in targets[: len(images)]],
            [names[p] for p in predicted[: len(images)]],
        )
        tensorboard.image("val/samples", grid, step)
    elif spec.get("kind") == "tabular" and len(spec["feature_names"]) == 2:
        image = decision_boundary(trainer, model, data, spec)
        plots.save_png(image, run_dir / "decision_boundary.png")
        tensorboard.image("val/decision_boundary", image, step)

    metrics = {
        "hparam/val_acc": float(result.get("val/acc", float("nan"))),
        "hparam/test_acc": float(result["test/acc"]),
        "hparam/best_epoch": float(result["best_epoch"]),
    }
    tensorboard.hparams(chosen_hparams(config_yaml, model, data), metrics)


def first_images(data: Any, spec: dict[str, Any]) -> np.ndarray:
    """The first validation images, undone to [0, 1] pixels for display."""
    batches, count = [], 0
    for inputs, _ in data.val_loader():
        batches.append(inputs.float().cpu())
        count += len(inputs)
        if count >= SAMPLE_IMAGES:
            break
    images = torch.cat(batches)[:SAMPLE_IMAGES]
    mean = torch.tensor(spec["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"]).view(1, -1, 1, 1)
    return ((images * std + mean) / spec["pixel_max"]).clamp(0, 1).numpy()


@torch.inference_mode()
def decision_boundary(
    trainer: Any, model: nn.Module, data: Any, spec: dict[str, Any]
) -> np.ndarray:
    """The tutorial's exercise 2: the model's class over a grid of raw feature values, with the
    validation points on top."""
    from nntrain.reporting import figures as plots

    mean, std = torch.tensor(spec["mean"]), torch.tensor(spec["std"])
    val = data.splits["val"]
    points = (val.inputs.cpu() * std + mean).numpy()

    def predict(raw: np.ndarray) -> np.ndarray:
        x = ((torch.from_numpy(raw) - mean) / std).to(trainer.device)
        with trainer.autocast():
            return model(x).argmax(dim=1).cpu().numpy()

    model.eval()
    return plots.decision_boundary_image(
        predict, points, val.targets.cpu().numpy(), data.class_names, spec["feature_names"]
    )
