"""`nntrain-eval`: how good is this checkpoint, per class, on a split.

It rebuilds the data and the model from the config saved in the checkpoint (with the user's
changes to `data.*`, e.g. a new data.root), scores the split, prints the figures and writes
eval_<split>.json and then its pictures (confusion_<split>.png, per_class_<split>.png, and for a
binary task roc_<split>.png and pr_<split>.png) into the checkpoint's run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, open_dict

from nntrain import files
from nntrain.commands.schema_check import check_group
from nntrain.commands.settings import EvalSettings
from nntrain.errors import UserError, require
from nntrain.schema import checked
from nntrain.tasks import task_of_spec

if TYPE_CHECKING:
    from nntrain.inference.logits import Scores
    from nntrain.inference.trained_run import TrainedRun
    from nntrain.reporting.figure_style import Picture

SPLITS = ("test", "val", "train")


def evaluate_checkpoint(cfg: DictConfig) -> tuple[dict[str, Any], TrainedRun, Scores | None]:
    """Score cfg.ckpt on cfg.split; returns what eval_<split>.json holds, the run, and the
    split's scores (its logits and targets, for the figures; None for a regression)."""
    from nntrain.devices import resolve_device
    from nntrain.inference.logits import score
    from nntrain.inference.metrics import classification_report
    from nntrain.inference.trained_run import build_model, load_run, run_compute

    checked(EvalSettings, cfg)
    device = resolve_device(str(cfg.device), key="device")
    run = load_run(cfg.ckpt)
    require(
        files.writable_folder(run.run_dir),
        f"cannot write the results into {run.run_dir} (eval_{cfg.split}.json goes beside the "
        "checkpoint's run): make it writable, or copy the run directory somewhere writable "
        "and evaluate the copy.",
    )
    data, data_config = run_data(run, cfg)
    model = build_model(run, device)
    data.setup(device)
    compute = run_compute(run, device, model)
    loader = getattr(data, f"{cfg.split}_loader")()
    check_has_samples(loader, cfg.split, data_config)
    val_loader = importance_loader(data, run)
    if not task_of_spec(run.inputs).has_classes:  # a regression
        report = regression_results(model, loader, val_loader, compute, run.inputs)
        return results_of(run, cfg.split, report), run, None
    # The run's test score came from this same call (with its test-time augmentation).
    scores = score(model, loader, compute, run.test_time_augmentation, gather=True)
    assert scores.outputs is not None and scores.targets is not None
    report = classification_report(scores.outputs, scores.targets, run.class_names)
    report["loss"], report["acc"] = scores.loss, scores.acc  # summed as the run summed them
    if run.inputs["kind"] in ("tabular", "table") and val_loader is not None:
        report["importance"] = feature_importance(
            model, val_loader, compute, run.inputs["feature_names"], run.inputs.get("groups")
        )
    return results_of(run, cfg.split, report), run, scores


def results_of(run: TrainedRun, split: str, report: dict[str, Any]) -> dict[str, Any]:
    """What eval_<split>.json holds: the checkpoint (within its run), the split, its figures."""
    return {
        "checkpoint": str(run.checkpoint_path.relative_to(run.run_dir)),
        "split": split,
        **{f"{split}/{key}": value for key, value in report.items()},
    }


def importance_loader(data: Any, run: TrainedRun) -> Any | None:
    """The validation split, where a table's permutation importance is measured; a run without
    one (data.val_fraction=0, README "Offline sets") is scored all the same, without it."""
    if len(data.val_loader()) > 0:
        return data.val_loader()
    if run.inputs["kind"] in ("tabular", "table"):
        from nntrain.reporting.console import get_console

        get_console().print(
            "feature importance: not measured (the data has no validation split to measure it on)"
        )
    return None


def run_data(run: TrainedRun, cfg: DictConfig) -> tuple[Any, DictConfig]:
    """The run's data (its config with the user's data.* changes) and that config, checked to
    be what the model was trained on: the same table files, classes and inputs."""
    from nntrain.instantiate import build

    data_config = run.config.data.copy()
    with open_dict(data_config):
        data_config.merge_with(cfg.data)
        if cfg.batch_size is not None:
            data_config.batch_size = cfg.batch_size
    check_same_data(run, cfg, data_config)
    check_group("data", data_config)  # the run's data settings with the changes asked for
    data = build(data_config, "data")
    require(
        list(data.class_names) == run.class_names,
        f"the data's classes {data.class_names} are not the ones the model was trained on "
        f"{run.class_names}; point data.root at the run's data set.",
    )
    trained_on = run.inputs.get("feature_names")
    require(
        trained_on is None or list(getattr(data, "feature_names", trained_on)) == trained_on,
        f"the data's inputs ({', '.join(getattr(data, 'feature_names', [])[:8])}...) are not "
        f"the ones the model was trained on ({', '.join(list(trained_on or [])[:8])}...); give "
        "a table with the run's columns and categories.",
    )
    return data, data_config


def check_same_data(run: TrainedRun, cfg: DictConfig, data_config: DictConfig) -> None:
    """The table files the run trained on must be unchanged (nntrain.data.table_source): a
    changed file scores other rows, or reads a renamed category as another one. Files the
    user names anew (nntrain-eval data.path=FILE) are theirs to choose; their columns are
    checked once the data is read."""
    from nntrain.data.table_source import changed_data
    from nntrain.launch.resume import DATA_FILE_KEYS

    if any(key in cfg.data for key in DATA_FILE_KEYS):
        return
    change = changed_data(run.inputs, data_config)
    require(
        change is None,
        f"cannot evaluate {run.checkpoint_path} on the {cfg.split} split: {change}; restore "
        "the file the run trained on, or score the rows of another file with nntrain-predict "
        f"ckpt={run.run_dir} inputs=FILE.",
    )


def check_has_samples(loader: Any, split: str, data_config: DictConfig) -> None:
    """A split the run's data left empty (data.val_fraction=0, data.test_fraction=0) is one
    sentence, naming the setting and the splits that can be scored instead."""
    if len(loader) > 0:
        return
    fraction = data_config.get(f"{split}_fraction")
    why = f" (data.{split}_fraction={fraction})" if fraction is not None else ""
    others = " or ".join(f"split={other}" for other in SPLITS if other != split)
    raise UserError(
        f"split={split} has no samples: the run's data has no {split} split{why}; evaluate "
        f"{others} instead."
    )


def feature_importance(
    model: Any,
    val_loader: Any,
    compute: Any,
    feature_names: list[str],
    groups: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Weight magnitudes of the first layer and permutation importance on the validation split,
    per feature, or per table column (groups: the model inputs made from each column)."""
    from nntrain.data.protocols import collect
    from nntrain.inference.importance import first_layer_weight_magnitude, permutation_importance
    from nntrain.inference.logits import classify

    inputs, targets = collect(val_loader)
    return {
        "first_layer_weight": first_layer_weight_magnitude(model, feature_names, groups),
        "permutation": permutation_importance(
            lambda x: classify(model, x, compute), inputs, targets, feature_names, groups=groups
        ),
    }


def regression_results(
    model: Any, loader: Any, val_loader: Any | None, compute: Any, spec: dict[str, Any]
) -> dict[str, Any]:
    """A regression checkpoint's figures on a split, in the target's units: RMSE, MAE and R²
    (summed as the run summed them: its test figures for the test split), scikit-learn's as a
    check, the points of the predicted-vs-true plot, and permutation importance per column
    (the drop of R² on the validation split)."""
    from nntrain.inference.logits import score_regression
    from nntrain.inference.metrics import regression_report

    scale, mean = float(spec["target_std"]), float(spec["target_mean"])
    scores = score_regression(model, loader, compute, scale, gather=True)
    assert scores.outputs is not None and scores.targets is not None
    predicted, truth = scores.outputs * scale + mean, scores.targets * scale + mean
    report: dict[str, Any] = {"loss": scores.loss, **scores.figures, "count": scores.count}
    report["sklearn"] = regression_report(predicted, truth)
    if val_loader is not None:
        report["importance"] = regression_importance(model, val_loader, compute, spec)
    # Not written to the JSON: the points of pred_vs_true_<split>.png (see write_results).
    report["points"] = (predicted.numpy(), truth.numpy(), str(spec["target"]))
    return report


def regression_importance(
    model: Any, val_loader: Any, compute: Any, spec: dict[str, Any]
) -> dict[str, Any]:
    """Per table column: the first layer's weight magnitude, and the drop of R² on the
    validation split when the column's inputs are shuffled."""
    import torch

    from nntrain.data.protocols import collect
    from nntrain.inference.importance import first_layer_weight_magnitude, permutation_drops
    from nntrain.inference.logits import predicted_values

    inputs, targets = collect(val_loader)

    def r2(x: torch.Tensor) -> float:
        errors = predicted_values(model, [x], compute) - targets.cpu()
        total = (targets.cpu() - targets.cpu().mean()).square().sum()
        return float(1 - errors.square().sum() / total)

    names = spec["feature_names"]
    groups = spec.get("groups") or {name: [i] for i, name in enumerate(names)}
    return {
        "first_layer_weight": first_layer_weight_magnitude(model, names, groups),
        "permutation": permutation_drops(r2, inputs, groups),
    }


def write_results(
    results: dict[str, Any], run_dir: Path, class_names: list[str], scores: Scores | None
) -> list[Path]:
    """eval_<split>.json first (a run killed while drawing keeps it), then the pictures."""
    import numpy as np

    from nntrain.reporting import figures, metric_figures

    split = results["split"]
    if f"{split}/points" in results:  # a regression: predicted against true values
        from nntrain.reporting.regression_figures import write_predicted_vs_true

        predicted, truth, target = results.pop(f"{split}/points")
        json_path = files.write_json(run_dir / f"eval_{split}.json", results)
        plot = write_predicted_vs_true(
            run_dir / f"pred_vs_true_{split}.png", predicted, truth, target, f"{target} ({split})"
        )
        return [json_path, plot]
    written = [files.write_json(run_dir / f"eval_{split}.json", results)]

    def keep(picture: Picture, name: str) -> None:
        written.append(picture.save(run_dir / name))

    matrix = np.array(results[f"{split}/confusion_matrix"])
    keep(
        figures.confusion_matrix_figure(matrix, class_names, f"confusion matrix ({split})"),
        f"confusion_{split}.png",
    )
    if len(class_names) <= metric_figures.MAX_BAR_CLASSES:
        per_class = metric_figures.per_class_figure(
            results[f"{split}/per_class"], f"per class ({split})"
        )
        keep(per_class, f"per_class_{split}.png")
    if f"{split}/auroc" in results:  # binary, both classes present
        assert scores is not None and scores.outputs is not None and scores.targets is not None
        truth = scores.targets.numpy()
        positive = scores.outputs.float().softmax(dim=1)[:, 1].numpy()
        keep(
            metric_figures.roc_figure(truth, positive, class_names[1], f"ROC curve ({split})"),
            f"roc_{split}.png",
        )
        keep(
            metric_figures.pr_figure(
                truth, positive, class_names[1], f"precision-recall ({split})"
            ),
            f"pr_{split}.png",
        )
    return written


def print_results(results: dict[str, Any], files: list[Path], checkpoint: str = "") -> None:
    from rich.table import Table

    from nntrain.reporting.console import display_path, figure, get_console, plain

    console, split = get_console(), results["split"]
    # a line of its own: a table's title wraps at the (narrow) table's width
    console.print(
        plain(f"{checkpoint or results['checkpoint']} on the {split} split"), soft_wrap=True
    )
    figures = Table(show_header=False)
    for key in ("acc", "rmse", "mae", "r2", "loss", "top5", "auroc", "average_precision", "count"):
        if f"{split}/{key}" in results:
            value = results[f"{split}/{key}"]
            figures.add_row(
                f"{split}/{key}", figure(value) if isinstance(value, float) else str(value)
            )
    console.print(figures)
    if f"{split}/per_class" in results:
        print_per_class(results, split)
    if f"{split}/importance" in results:
        print_importance(
            results[f"{split}/importance"], "r2" if f"{split}/r2" in results else "acc"
        )
    console.print(plain("wrote " + ", ".join(display_path(f) for f in files)))


def print_per_class(results: dict[str, Any], split: str) -> None:
    from rich.table import Table

    from nntrain.reporting.console import get_console, plain

    console = get_console()
    per_class = results[f"{split}/per_class"]
    table = Table(title="per class")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for i, name in enumerate(per_class["class"]):
        table.add_row(
            plain(name),
            *(f"{per_class[k][i]:.4f}" for k in ("precision", "recall", "f1")),
            str(per_class["support"][i]),
        )
    for average in ("macro", "weighted"):
        row = results[f"{split}/{average}"]
        table.add_row(
            f"[bold]{average} avg[/]",
            *(f"{row[k]:.4f}" for k in ("precision", "recall", "f1")),
            str(results[f"{split}/count"]),
        )
    console.print(table)

    matrix = results[f"{split}/confusion_matrix"]
    if len(matrix) <= 20:
        confusion = Table(title="confusion matrix (rows: true, columns: predicted)")
        confusion.add_column("")
        for name in per_class["class"]:
            confusion.add_column(plain(name), justify="right")
        for name, row in zip(per_class["class"], matrix, strict=True):
            confusion.add_row(plain(name), *(str(v) for v in row))
        console.print(confusion)


def print_importance(importance: dict[str, Any], metric: str) -> None:
    from rich.table import Table

    from nntrain.reporting.console import get_console, plain

    console = get_console()
    drop = "permutation (accuracy drop)" if metric == "acc" else "permutation (R² drop)"
    table = Table(title="feature importance")
    for column in ("feature", "mean |first-layer weight|", drop):
        table.add_column(column, justify="left" if column == "feature" else "right")
    ranked = sorted(importance["permutation"], key=importance["permutation"].get, reverse=True)
    for name in ranked:
        table.add_row(
            plain(name),
            f"{importance['first_layer_weight'][name]:.4f}",
            f"{importance['permutation'][name]:.4f}",
        )
    console.print(table)


@hydra.main(version_base="1.3", config_path="pkg://nntrain.configs", config_name="eval")
def eval_app(cfg: DictConfig) -> float:
    from nntrain.commands.common import check_no_missing_values, user_errors_end_in_one_line

    with user_errors_end_in_one_line():
        check_no_missing_values(cfg)
        results, run, scores = evaluate_checkpoint(cfg)
        files = write_results(results, run.run_dir, run.class_names, scores)
    from nntrain.commands.predict import describe_checkpoint

    print_results(results, files, describe_checkpoint(run))
    return float(results.get(f"{cfg.split}/acc", results.get(f"{cfg.split}/r2", "nan")))


def open_data_overrides(argv: list[str]) -> list[str]:
    """data.root=x -> ++data.root=x: nntrain-eval's data node is empty (the run's data config is
    only known once the checkpoint is read), and Hydra adds keys only with ++."""
    return [f"++{a}" if a.startswith("data.") and "=" in a else a for a in argv]


def main() -> None:
    """Entry point of the `nntrain-eval` console script."""
    from nntrain.commands.common import run_app

    run_app(eval_app, open_data_overrides, command="nntrain-eval")
