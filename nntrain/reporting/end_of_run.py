"""What a finished run adds to TensorBoard and its run dir besides the curves: the HParams
record, then the figures (training curves, confusion matrix, ROC and precision-recall curves of
a binary task, sample predictions of image data, the decision boundary of 2-feature data), each
a PNG in the run dir and an image in TensorBoard.

The trainer calls this after metrics.json is written, so a run killed while drawing loses no
result. It is handed the best model's validation logits and a `classify` function (both from
the one inference path): nothing here runs a model itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nntrain.data.protocols import DataModule, Loader, collect
from nntrain.inference.metrics import confusion_matrix
from nntrain.reporting.figure_style import Picture
from nntrain.reporting.tensorboard import RunLogger
from nntrain.tasks import CLASSIFICATION, Task

log = logging.getLogger("nntrain")


def chosen_hparams(
    config_yaml: str, model_name: str, data_name: str, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The run's hyperparameters, flat, as TensorBoard's HParams tab wants them (numbers,
    strings, booleans): the keys the user set on the command line first (a sweep's swept
    keys among them), then the choices (model, data, optimizer, scheduler) and the values that
    usually differ between the runs of a sweep. Whole numbers are text: the tab shows a
    number as 64.000."""
    config = yaml.safe_load(config_yaml) if config_yaml else {}
    optimizer, scheduler = config.get("optimizer", {}), config.get("scheduler", {})
    trainer, data_config = config.get("trainer", {}), config.get("data", {})
    chosen: dict[str, Any] = {key: config_value(config, key) for key in override_keys(overrides)}
    chosen.update(
        {
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
    )
    for key, value in (config.get("model") or {}).items():
        if key != "_target_":
            chosen[f"model.{key}"] = value
    return {key: hparam_value(value) for key, value in chosen.items()}


def override_keys(overrides: Sequence[str]) -> list[str]:
    """The config keys a command line set (model=cnn sets `model`), without Hydra's own."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o]
    return [k for k in dict.fromkeys(keys) if not k.startswith("hydra") and k != "resume"]


def config_value(config: dict[str, Any], key: str) -> Any:
    """A dotted key's value in the config; for a group choice (model), its class name."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        return str(node.get("_target_", "")).rsplit(".", 1)[-1] or None
    return node


def hparam_value(value: Any) -> Any:
    if isinstance(value, bool | float | str):
        return value
    return str(value)  # whole numbers, lists, None


def run_label(config_yaml: str, overrides: Sequence[str]) -> str:
    """How TensorBoard's HParams tab names a run: its name and what the user set, keys
    shortened to their last part (`cnn-digits lr=0.003 seed=2`); a choice already in the name
    (model=cnn in cnn-digits) is not repeated."""
    config = yaml.safe_load(config_yaml) if config_yaml else {}
    name = str(config.get("name") or "run")
    parts = [name]
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key.startswith("hydra") or key == "resume" or ("." not in key and value in name):
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
    return " ".join(parts)


def write_hparams(
    tensorboard: RunLogger,
    result: dict[str, Any],
    config_yaml: str,
    model_name: str,
    data_name: str,
    overrides: Sequence[str] = (),
    label: str | None = None,
) -> None:
    """The HParams record: the run's hyperparameters with its validation and test accuracy;
    the keys the user set come first and are shown, and the run is listed under its label."""
    metrics = hparams_metrics(CLASSIFICATION, result)
    hparams = chosen_hparams(config_yaml, model_name, data_name, overrides)
    tensorboard.hparams(hparams, metrics, first=override_keys(overrides), label=label)


def hparams_metrics(task: Task, result: Mapping[str, Any]) -> dict[str, float]:
    """The HParams record's figures: the task's (task.hparams_metrics) on the validation and
    test splits (nan where the run has none), and the best epoch."""
    metrics = {
        f"{split}/{name}": float(result.get(f"{split}/{name}", float("nan")))
        for split in ("val", "test")
        for name in task.hparams_metrics
    }
    metrics["best_epoch"] = float(result["best_epoch"])
    return metrics


def write_figures(
    tensorboard: RunLogger,
    run_dir: Path,
    data: DataModule,
    history: Sequence[Mapping[str, float]],
    result: dict[str, Any],
    monitor: str,
    val: tuple[torch.Tensor, torch.Tensor],
    classify: Callable[[torch.Tensor], torch.Tensor],
    step: int,
) -> list[Path]:
    """Draw the figures of the best model on the validation split (val: its logits and
    targets), save each as a PNG in run_dir and log it to TensorBoard; returns the PNGs.
    monitor: the metric that chose the best epoch; classify: inputs -> predicted classes, for
    the decision boundary's grid."""
    from nntrain.reporting import metric_figures

    start, written = time.perf_counter(), []
    planned = list(run_figures(data, val, classify))
    if history:
        best = result["best_epoch"]
        curves = partial(metric_figures.training_curves, history, best, monitor)
        planned.insert(0, ("curves.png", "train/curves", curves))
    for name, tag, draw in planned:  # one at a time: each PNG is whole once written
        picture = draw()
        written.append(picture.save(run_dir / name))
        tensorboard.image(tag, picture.image, step)
    log.info(
        f"figures in {time.perf_counter() - start:.2f} s (run dir and TensorBoard): "
        + ", ".join(path.name for path in written)
    )
    return written


Planned = tuple[str, str, Callable[[], Picture]]  # file name, TensorBoard tag, how to draw it


def run_figures(
    data: DataModule,
    val: tuple[torch.Tensor, torch.Tensor],
    classify: Callable[[torch.Tensor], torch.Tensor],
) -> Iterator[Planned]:
    """The figures of the validation predictions this data calls for: the confusion matrix;
    ROC and precision-recall curves for two classes; the sample grid for images; the decision
    boundary for 2-feature tables."""
    from nntrain.reporting import figures, metric_figures

    logits, targets = val
    probabilities = torch.softmax(logits.float(), dim=1)
    confidence, predicted = (tensor.numpy() for tensor in probabilities.max(dim=1))
    names, truth = list(data.class_names), targets.numpy()
    matrix = confusion_matrix(targets, torch.from_numpy(predicted), data.num_classes)
    yield (
        "confusion_matrix.png",
        "val/confusion_matrix",
        partial(figures.confusion_matrix_figure, matrix, names, "confusion matrix (val)"),
    )
    if len(names) == 2 and len(np.unique(truth)) == 2:
        scores = probabilities[:, 1].numpy()
        roc = partial(metric_figures.roc_figure, truth, scores, names[1], "ROC curve (val)")
        pr = partial(metric_figures.pr_figure, truth, scores, names[1], "precision-recall (val)")
        yield "roc_curve.png", "val/roc_curve", roc
        yield "pr_curve.png", "val/pr_curve", pr
    spec = data.input_spec()
    if spec["kind"] == "image":
        order = figures.sample_order(truth, predicted, confidence)

        def samples() -> Picture:
            return figures.sample_grid(
                images_at(data.val_loader(), order, spec),
                [names[t] for t in truth[order]],
                [names[p] for p in predicted[order]],
                confidence[order],
                title="validation samples",
            )

        yield "samples.png", "val/samples", samples
    elif spec["kind"] == "tabular" and len(spec["feature_names"]) == 2:
        boundary = partial(decision_boundary, classify, data.val_loader(), spec, names)
        yield "decision_boundary.png", "val/decision_boundary", boundary


def images_at(loader: Loader, indices: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """The validation images at indices (in that order), undone to [0, 1] pixels for display;
    the loader is read only up to the last of them."""
    wanted = {int(index): position for position, index in enumerate(indices)}
    found: dict[int, torch.Tensor] = {}
    offset = 0
    for inputs, _ in loader:
        for index in range(offset, offset + len(inputs)):
            if index in wanted:
                found[wanted[index]] = inputs[index - offset].float().cpu()
        offset += len(inputs)
        if len(found) == len(wanted):
            break
    images = torch.stack([found[position] for position in range(len(wanted))])
    mean = torch.tensor(spec["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"]).view(1, -1, 1, 1)
    return ((images * std + mean) / spec["pixel_max"]).clamp(0, 1).numpy()


def decision_boundary(
    classify: Callable[[torch.Tensor], torch.Tensor],
    loader: Loader,
    spec: dict[str, Any],
    class_names: list[str],
) -> Picture:
    """The tutorial's exercise 2: the model's class over a grid of raw feature values, with the
    validation points on top."""
    from nntrain.reporting import figures

    mean, std = torch.tensor(spec["mean"]), torch.tensor(spec["std"])
    inputs, targets = collect(loader)
    points = (inputs.float().cpu() * std + mean).numpy()

    def predict(raw: np.ndarray) -> np.ndarray:
        return classify((torch.from_numpy(raw) - mean) / std).numpy()

    return figures.decision_boundary_figure(
        predict,
        points,
        targets.cpu().numpy(),
        class_names,
        spec["feature_names"],
        title="decision boundary (val)",
    )
