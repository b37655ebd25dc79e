"""What a finished run adds to TensorBoard and its run dir besides the curves: the HParams
record, then the figures (training curves; on the validation split and, when the run was
tested, on the test split: confusion matrix, ROC and precision-recall curves of a binary task;
sample predictions of image data and the decision boundary of 2-feature data on the validation
split), each a PNG in the run dir and an image in TensorBoard, titled with its split and
captioned with the run's label.

The trainer calls this after metrics.json is written, so a run killed while drawing loses no
result. It is handed the best model's logits and a `classify` function (both from the one
inference path): nothing here runs a model itself.
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

from nntrain import files
from nntrain.data.protocols import DataModule, Loader, collect
from nntrain.inference.metrics import confusion_matrix
from nntrain.reporting import run_names
from nntrain.reporting.figure_style import Picture, captioned
from nntrain.reporting.run_names import is_own_key, override_parts
from nntrain.reporting.tensorboard import FIGURES_GROUP, RunLogger, metric_columns, task_metrics
from nntrain.tasks import Task

log = logging.getLogger("nntrain")


def chosen_hparams(
    config_yaml: str,
    model_name: str,
    data_name: str,
    overrides: Sequence[str] = (),
    status: str = "ok",
) -> dict[str, Any]:
    """The run's hyperparameters, flat, as TensorBoard's HParams tab wants them (numbers,
    strings, booleans): the keys the user set on the command line first (a sweep's swept
    keys, a search's searched ones and hparams_search among them), then the choices (model,
    data, optimizer, scheduler) and the values that usually differ between the runs of a
    sweep, and how the run ended (status: ok, or pruned by a search). Whole numbers are text:
    the tab shows a number as 64.000."""
    config = files.load_yaml(config_yaml) if config_yaml else {}
    optimizer, scheduler = config.get("optimizer", {}), config.get("scheduler", {})
    trainer, data_config = config.get("trainer", {}), config.get("data", {})
    given = dict(override_parts(o) for o in overrides if "=" in o)
    chosen: dict[str, Any] = {}
    for key in override_keys(overrides):
        value = config_value(config, key)
        # A group choice (trainer=debug, hparams_search=optuna, which is no node of the
        # config): the option chosen.
        chosen[key] = given.get(key) if value is None or "." not in key else value
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
    chosen["status"] = status
    return {key: hparam_value(value) for key, value in chosen.items()}


def override_keys(overrides: Sequence[str]) -> list[str]:
    """The config keys a command line set (model=cnn sets `model`), without Hydra's own, resume=
    and name= (the run's name is its label's start, not a setting)."""
    keys = [override_parts(o)[0] for o in overrides if "=" in o]
    return [k for k in dict.fromkeys(keys) if is_own_key(k) and k != "name"]


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
    """How a single run is named where runs are compared (the HParams tab's Trial ID, its
    figures' caption): its name and what the user set, keys shortened and values rounded
    (`cnn-digits lr=0.003 seed=2`); a choice already in the name (model=cnn in cnn-digits) is
    not repeated. A sweep job's label is its events folder's (nntrain.reporting.run_names)."""
    config = files.load_yaml(config_yaml) if config_yaml else {}
    return run_names.label(str(config.get("name") or "run"), overrides)


def hparams_metrics(task: Task, result: Mapping[str, Any]) -> dict[str, float]:
    """The run's figures for the HParams tab (those it has: a pruned trial was not tested)."""
    return {name: float(result[name]) for name in task_metrics(task) if name in result}


def write_hparams(
    tensorboard: RunLogger,
    task: Task,
    result: dict[str, Any],
    config_yaml: str,
    model_name: str,
    data_name: str,
    overrides: Sequence[str] = (),
    label: str | None = None,
    in_sweep: bool = False,
) -> None:
    """The HParams record: the run's hyperparameters and status, its figures, its label as
    Trial ID. A single run also says which columns to show (the keys the user set first, and
    ticked); a sweep's jobs leave that to the sweep (sweep_summary.write_sweep_experiment)."""
    status = "pruned" if "pruned_epoch" in result else "ok"
    hparams = chosen_hparams(config_yaml, model_name, data_name, overrides, status)
    experiment = None
    if not in_sweep:
        from nntrain.reporting.tensorboard import experiment_info

        first = override_keys(overrides)
        ordered = {k: hparams[k] for k in first if k in hparams} | hparams
        experiment = experiment_info([ordered], metric_columns([task]), differing=first)
    tensorboard.hparams(hparams, hparams_metrics(task, result), label=label, experiment=experiment)


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
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    caption: str = "",
) -> list[Path]:
    """Draw the figures of the best model on the validation split (val: its logits and
    targets) and, when the run was tested, on the test split (test: the same), save each as a
    PNG in run_dir and log it to TensorBoard; returns the PNGs. monitor: the metric that chose
    the best epoch; classify: inputs -> predicted classes, for the decision boundary's grid;
    caption: which run they show (written above each figure)."""
    from nntrain.reporting import metric_figures

    start = time.perf_counter()
    planned = list(run_figures(data, val, classify, "val"))
    if test is not None:
        planned += list(split_figures(data, test, "test"))
    if history:
        best = result["best_epoch"]
        curves = partial(metric_figures.training_curves, history, best, monitor)
        planned.insert(
            0, ("curves.png", f"{FIGURES_GROUP}/curves", curves, partial(curves, compact=True))
        )
    written = draw_all(tensorboard, run_dir, planned, step, caption)
    log_figures(written, time.perf_counter() - start)
    return written


def draw_all(
    tensorboard: RunLogger, run_dir: Path, planned: Sequence[Planned], step: int, caption: str
) -> list[Path]:
    """Each planned figure drawn, captioned, saved and logged, one at a time: each PNG is
    whole once written (a run killed while drawing keeps those before). TensorBoard gets the
    compact drawing where a figure has one (it shows images about 350 pixels wide)."""
    written = []
    for name, tag, draw, compact in planned:
        picture = draw()
        if caption:
            picture = captioned(picture, caption)
        written.append(picture.save(run_dir / name))
        if compact is not None:
            picture = captioned(compact(), caption) if caption else compact()
        tensorboard.image(tag, picture.image, step)
    return written


def log_figures(written: Sequence[Path], seconds: float) -> None:
    """One line within 80 columns: the time and the PNGs (in the run dir and TensorBoard); the
    last names left out, counted, when they do not fit."""
    from nntrain.reporting.console import job_prefix

    line = f"figures in {seconds:.1f} s:"
    names = [path.name for path in written]
    width = 80 - len(job_prefix())
    if len(" ".join([line, *names])) > width:
        rest = f"… ({len(written)} PNGs)"
        while names and len(" ".join([line, *names, rest])) > width:
            names.pop()
        names.append(rest)
    log.info(" ".join([line, *names]))


def run_caption(label: str, run_dir: Path, job: bool) -> str:
    """Which run a figure shows: its label and its job number or run directory's name."""
    return f"{label}  ({'job ' if job else ''}{run_dir.name})"


# A figure to draw: its file name, its TensorBoard tag, how to draw it, and how to draw it for
# TensorBoard where that differs (narrower, larger text: None draws it once for both).
Planned = tuple[str, str, Callable[[], Picture], Callable[[], Picture] | None]


def run_figures(
    data: DataModule,
    val: tuple[torch.Tensor, torch.Tensor],
    classify: Callable[[torch.Tensor], torch.Tensor],
    split: str = "val",
) -> Iterator[Planned]:
    """The figures of the validation predictions this data calls for: the confusion matrix;
    ROC and precision-recall curves for two classes; the sample grid for images; the decision
    boundary for 2-feature tables."""
    from nntrain.reporting import figures

    yield from split_figures(data, val, split)
    logits, targets = val
    probabilities = torch.softmax(logits.float(), dim=1)
    confidence, predicted = (tensor.numpy() for tensor in probabilities.max(dim=1))
    names, truth = list(data.class_names), targets.numpy()
    spec = data.input_spec()
    if spec["kind"] == "image":
        order = figures.sample_order(truth, predicted, confidence)

        def samples(shown: np.ndarray = order, columns: int = 8) -> Picture:
            return figures.sample_grid(
                images_at(data.val_loader(), shown, spec),
                [names[t] for t in truth[shown]],
                [names[p] for p in predicted[shown]],
                confidence[shown],
                title="samples (val)",
                columns=columns,
            )

        fewer = partial(samples, order[:16], 4)  # 4 x 4, for TensorBoard's narrow images
        yield "samples.png", f"{FIGURES_GROUP}/val_samples", samples, fewer
    elif spec["kind"] == "tabular" and len(spec["feature_names"]) == 2:
        boundary = partial(decision_boundary, classify, data.val_loader(), spec, names)
        yield "decision_boundary.png", f"{FIGURES_GROUP}/val_decision_boundary", boundary, None


# The figures of one split as a run writes them: the validation split's under their own names
# (confusion_matrix.png), the test split's as nntrain-eval names them (confusion_test.png).
FILE_NAMES = {
    "val": {"confusion": "confusion_matrix.png", "roc": "roc_curve.png", "pr": "pr_curve.png"},
    "test": {"confusion": "confusion_test.png", "roc": "roc_test.png", "pr": "pr_test.png"},
}


def split_figures(
    data: DataModule, predictions: tuple[torch.Tensor, torch.Tensor], split: str
) -> Iterator[Planned]:
    """A split's confusion matrix and, for two classes, its ROC and precision-recall curves,
    each titled with the split."""
    from nntrain.reporting import figures, metric_figures

    logits, targets = predictions
    probabilities = torch.softmax(logits.float(), dim=1)
    predicted = probabilities.argmax(dim=1)
    names, truth = list(data.class_names), targets.numpy()
    matrix = confusion_matrix(targets, predicted, data.num_classes)
    files = FILE_NAMES[split]
    matrix_figure = partial(
        figures.confusion_matrix_figure, matrix, names, f"confusion matrix ({split})"
    )
    yield (
        files["confusion"],
        f"{FIGURES_GROUP}/{split}_confusion_matrix",
        matrix_figure,
        partial(matrix_figure, compact=True),
    )
    if len(names) == 2 and len(np.unique(truth)) == 2:
        scores = probabilities[:, 1].numpy()
        roc = partial(metric_figures.roc_figure, truth, scores, names[1], f"ROC curve ({split})")
        pr = partial(
            metric_figures.pr_figure, truth, scores, names[1], f"precision-recall ({split})"
        )
        yield files["roc"], f"{FIGURES_GROUP}/{split}_roc_curve", roc, None
        yield files["pr"], f"{FIGURES_GROUP}/{split}_pr_curve", pr, None


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
