"""Figures of numbers: training curves per epoch, ROC and precision-recall curves of a binary
classifier, per-class precision / recall / F1, predicted-vs-true for a regression, and the LR
range test's loss against learning rate (nntrain-lr-find).

Each function takes plain arrays and returns a Picture (figure_style.py) whose data holds what
was plotted, read back from the plotted lines. The curves and scores are scikit-learn's (the
reference implementations), so a figure's AUC is the AUC nntrain-eval reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nntrain.reporting.figure_style import (
    GREY,
    RIGHT,
    TRAIN,
    VAL,
    Picture,
    margins,
    new_figure,
    plotted,
    render,
    short,
    styled,
    text_width,
)

MAX_BAR_CLASSES = 30  # beyond this a per-class bar chart is a wall of bars: the table says more
NOT_CURVES = ("lr", "samples_per_sec", "epoch_time", "grad_norm")  # not train/val metric pairs


# The panels' order: the loss, then the figure a person compares runs by (accuracy; a
# regression's RMSE and R²), then the others.
CURVE_ORDER = ("loss", "acc", "rmse", "r2", "mae")


def curve_metrics(history: Sequence[Mapping[str, float]]) -> list[str]:
    """The metrics with a train or val value per epoch, in CURVE_ORDER, at most three (a
    classifier's loss and accuracy; a regression's loss, RMSE and R²)."""
    names: list[str] = []
    for key in history[0] if history else ():
        split, _, name = key.partition("/")
        if split in ("train", "val") and name and name not in NOT_CURVES and name not in names:
            names.append(name)
    rank = {name: index for index, name in enumerate(CURVE_ORDER)}
    return sorted(names, key=lambda name: rank.get(name, len(rank)))[:3]


@styled
def training_curves(
    history: Sequence[Mapping[str, float]],
    best_epoch: int,
    monitor: str = "val/loss",
    compact: bool = False,
) -> Picture:
    """Train and validation curves per epoch (one panel per metric), the learning rate beneath
    them, and the best epoch marked in every panel. compact: the panels one above the other,
    5 inches wide, readable where TensorBoard shows an image (about 350 pixels wide).

    history: one mapping per finished epoch with "epoch" (from 1) and its train/* and val/*
    metrics and "lr" (the learning rate at the end of the epoch). best_epoch counts from 1.
    data: "<metric>/<train|val>" and "lr" as (epochs, 2) arrays of (epoch, value), as drawn.
    """
    if not history:
        raise ValueError("no finished epoch to plot")
    epochs = np.array([float(row["epoch"]) for row in history])
    metrics = curve_metrics(history) or ["loss"]
    lr = np.array([row.get("lr", np.nan) for row in history], dtype=np.float64)
    n = len(metrics)
    figure = new_figure(5.0, 3.1 * n + 1.0) if compact else new_figure(4.4 * n, 5.4)
    box = margins(figure, 0.8, 0.2, 0.75, 0.55)
    outer = (
        figure.add_gridspec(n, 1, hspace=0.3, **box)
        if compact
        else figure.add_gridspec(1, n, wspace=0.25, **box)
    )
    data: dict[str, np.ndarray] = {}
    for column, name in enumerate(metrics):
        cell = outer[column, 0] if compact else outer[0, column]
        inner = cell.subgridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
        axes = figure.add_subplot(inner[0])
        for split, colour in (("train", TRAIN), ("val", VAL)):
            values = [row.get(f"{split}/{name}", np.nan) for row in history]
            if not np.all(np.isnan(values)):
                axes.plot(epochs, values, "o-", color=colour, label=split)
        _mark_best(axes, best_epoch, history, f"val/{name}")
        data.update({f"{name}/{label}": xy for label, xy in plotted(axes)})
        axes.set_title(name)
        axes.legend()
        axes.tick_params(labelbottom=False)
        lr_axes = figure.add_subplot(inner[1], sharex=axes)  # beneath, epoch for epoch
        _lr_panel(lr_axes, epochs, lr, best_epoch)
    data["lr"] = dict(plotted(lr_axes))["lr"]
    best = next((row for row in history if row["epoch"] == best_epoch), None)
    shown = f" ({monitor} {best[monitor]:.4f})" if best and monitor in best else ""
    title = f"training curves: best epoch {best_epoch} of {len(history)}{shown}"
    height = figure.get_size_inches()[1]
    figure.suptitle(title.replace("training ", "") if compact else title, y=1 - 0.12 / height)
    return render(figure, title, data)


def _lr_panel(axes, epochs: np.ndarray, lr: np.ndarray, best_epoch: int) -> None:
    """The learning rate per epoch, on a log scale when it spans a factor 10 (symmetric-log when
    the schedule ends at 0, which a log scale would drop)."""
    axes.plot(epochs, lr, "o-", color=GREY, label="lr")
    axes.axvline(best_epoch, color="black", linestyle="--", linewidth=0.9)
    positive = lr[np.isfinite(lr) & (lr > 0)]
    if len(positive) and positive.max() > 10 * positive.min():
        if np.any(lr[np.isfinite(lr)] <= 0):
            axes.set_yscale("symlog", linthresh=float(positive.min()))
            axes.set_ylim(bottom=0)
        else:
            axes.set_yscale("log")
    axes.set_ylabel("lr")
    axes.set_xlabel("epoch")
    axes.xaxis.get_major_locator().set_params(integer=True)


def _mark_best(axes, best_epoch: int, history: Sequence[Mapping[str, float]], key: str) -> None:
    """A dashed line at the best epoch and a star on its validation value."""
    axes.axvline(best_epoch, color="black", linestyle="--", linewidth=0.9, label="_best")
    value = next((row.get(key) for row in history if row["epoch"] == best_epoch), None)
    if value is not None and np.isfinite(value):
        axes.plot(
            [best_epoch], [value], "*", color="black", markersize=11,
            label=f"best epoch {best_epoch}", linestyle="none",
        )  # fmt: skip


def _binary(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth, scores = np.asarray(truth).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    if len(truth) != len(scores) or set(np.unique(truth).tolist()) != {0, 1}:
        raise ValueError("a ROC or precision-recall curve needs labels of both classes 0 and 1")
    return truth, scores


def _square_axes() -> tuple[Any, Any]:
    """A ROC or precision-recall chart's figure and its square [0, 1] axes."""
    figure = new_figure(5.2, 5.0)
    axes = figure.add_subplot()
    figure.subplots_adjust(**margins(figure, 0.75, 0.25, 0.45, 0.6))
    axes.set(xlim=(0, 1), ylim=(0, 1.02), aspect="equal")
    return figure, axes


def _label(axes: Any, x: str, y: str, title: str) -> None:
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title(title)


@styled
def roc_figure(
    truth: np.ndarray, scores: np.ndarray, positive: str = "1", title: str = "ROC curve"
) -> Picture:
    """scikit-learn's ROC curve of scores (the probability of the positive class, label 1) and
    its AUC in the title. data: "roc" (fpr, tpr) points as drawn, "auc"."""
    from sklearn import metrics

    truth, scores = _binary(truth, scores)
    fpr, tpr, _ = metrics.roc_curve(truth, scores)
    auc = float(metrics.roc_auc_score(truth, scores))
    figure, axes = _square_axes()
    axes.plot(fpr, tpr, color=TRAIN, label="roc", drawstyle="default")
    axes.fill_between(fpr, tpr, alpha=0.12, color=TRAIN)
    axes.plot([0, 1], [0, 1], "--", color=GREY, linewidth=1, label="chance")
    title = f"{title}: AUC = {auc:.4f}"
    _label(axes, "false positive rate", f"true positive rate (recall of {short(positive)})", title)
    axes.legend(loc="lower right")
    return render(figure, title, {**dict(plotted(axes)), "auc": auc})


@styled
def pr_figure(
    truth: np.ndarray, scores: np.ndarray, positive: str = "1", title: str = "precision-recall"
) -> Picture:
    """scikit-learn's precision-recall curve of scores for the positive class (label 1) and its
    average precision in the title; the dashed line is the positive rate (a random ranking).
    data: "precision-recall" (recall, precision) points as drawn, "average_precision"."""
    from sklearn import metrics

    truth, scores = _binary(truth, scores)
    precision, recall, _ = metrics.precision_recall_curve(truth, scores)
    average = float(metrics.average_precision_score(truth, scores))
    figure, axes = _square_axes()
    axes.plot(recall, precision, color=VAL, drawstyle="steps-post", label="precision-recall")
    axes.axhline(truth.mean(), color=GREY, linestyle="--", linewidth=1, label="positive rate")
    title = f"{title}: average precision = {average:.4f}"
    _label(axes, f"recall of {short(positive)}", "precision", title)
    axes.legend(loc="lower left")
    return render(figure, title, {**dict(plotted(axes)), "average_precision": average})


@styled
def per_class_figure(per_class: Mapping[str, Sequence], title: str = "per class") -> Picture:
    """Precision, recall and F1 of each class as grouped horizontal bars, the worst F1 at the
    top, for up to MAX_BAR_CLASSES classes. per_class: nntrain-eval's lists "class",
    "precision", "recall", "f1", "support". data: the classes from the top down and their F1."""
    names = [str(name) for name in per_class["class"]]
    n = len(names)
    if not 1 <= n <= MAX_BAR_CLASSES:
        raise ValueError(f"a per-class chart takes 1 to {MAX_BAR_CLASSES} classes, got {n}")
    order = np.argsort(np.asarray(per_class["f1"], dtype=np.float64), kind="stable")  # worst first
    support = [per_class["support"][i] for i in order]
    labels = [f"{short(names[i])} ({s})" for i, s in zip(order, support, strict=True)]
    left = text_width(labels, 9) + 0.25
    figure = new_figure(left + 6.0, max(3.2, 1.3 + 0.42 * n))
    axes = figure.add_subplot()
    figure.subplots_adjust(**margins(figure, left, 0.3, 0.8, 0.5))
    # Scores near 1 differ in the second decimal: the axis starts below the lowest, said so.
    lowest = min(float(np.min(per_class[key])) for key in ("precision", "recall", "f1"))
    start = float(np.floor(10 * lowest - 0.5) / 10) if lowest >= 0.55 else 0.0
    rows = np.arange(n)
    bars = (("precision", TRAIN, -0.27), ("recall", VAL, 0.0), ("f1", RIGHT, 0.27))
    for key, colour, offset in bars:
        values = np.asarray(per_class[key], dtype=np.float64)[order]
        axes.barh(rows + offset, values, height=0.26, color=colour, label=key)
    f1 = np.asarray(per_class["f1"], dtype=np.float64)[order]
    if n <= 20:
        for row, value in zip(rows, f1, strict=True):
            axes.text(
                value + 0.01 * (1 - start), row + 0.27, f"{value:.2f}", va="center", fontsize=7
            )
    axes.set_yticks(rows, labels)
    axes.set_xlim(start, 1.0 + 0.08 * (1 - start))
    note = f", axis from {start:.1f}" if start > 0 else ""
    axes.set_xlabel(f"score (class support in brackets{note})")
    axes.grid(axis="y", visible=False)
    title = f"{title}: macro F1 = {float(np.mean(f1)):.4f}"
    figure.suptitle(title, y=1 - 0.12 / figure.get_size_inches()[1])
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=3)
    axes.invert_yaxis()  # row 0, the worst class, at the top
    return render(figure, title, {"classes": [names[i] for i in order], "f1": f1})


@styled
def predicted_vs_true(
    truth: np.ndarray,
    predicted: np.ndarray,
    target: str = "target",
    title: str = "predictions",
    compact: bool = False,
) -> Picture:
    """A regression's predictions against the true values with the identity line (left; top
    when compact, the two panels one above the other for TensorBoard's narrow images) and the
    residuals (predicted - true) against the prediction (right); R² and MAE in the title.
    data: "predicted" (true, predicted) and "residual" (predicted, residual) points as drawn
    (at most 20,000, evenly spaced, so a large split stays quick), "r2", "mae"."""
    from sklearn import metrics

    truth = np.asarray(truth, dtype=np.float64).ravel()
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    if len(truth) != len(predicted) or len(truth) < 2:
        raise ValueError(f"need two or more pairs, got {len(truth)} and {len(predicted)} values")
    r2 = float(metrics.r2_score(truth, predicted))
    mae = float(metrics.mean_absolute_error(truth, predicted))
    shown = np.linspace(0, len(truth) - 1, min(len(truth), 20_000)).round().astype(int)
    x, y = truth[shown], predicted[shown]
    figure = new_figure(5.0, 9.0) if compact else new_figure(10.0, 4.8)
    left, right = figure.subplots(2, 1) if compact else figure.subplots(1, 2)
    figure.subplots_adjust(wspace=0.3, hspace=0.3, **margins(figure, 0.8, 0.25, 0.75, 0.6))
    low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    left.plot(x, y, "o", color=TRAIN, alpha=0.5, markersize=3, label="predicted")
    left.plot([low, high], [low, high], "--", color="black", linewidth=1, label="identity")
    left.set(xlabel=f"true {target}", ylabel=f"predicted {target}", aspect="equal")
    right.plot(y, y - x, "o", color=VAL, alpha=0.5, markersize=3, label="residual")
    right.axhline(0, color="black", linestyle="--", linewidth=1)
    right.set(xlabel=f"predicted {target}", ylabel="residual (predicted - true)")
    title = f"{title}: R² = {r2:.4f}, MAE = {mae:.4g}"
    figure.suptitle(title.replace(": ", ":\n") if compact else title)
    data = {**dict(plotted(left)), **dict(plotted(right)), "r2": r2, "mae": mae}
    return render(figure, title, data)


@styled
def lr_find_figure(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    suggestion: float,
    rule: str,
) -> Picture:
    """The raw and smoothed training loss per step against its learning rate, with the
    suggested lr as a dashed line. data: "loss" and "smoothed" as (steps, 2) arrays of
    (lr, loss), as drawn, and "suggestion"."""
    figure = new_figure(6.4, 4.4)
    axes = figure.add_subplot(1, 1, 1)
    figure.subplots_adjust(**margins(figure, 0.8, 0.25, 0.7, 0.6))
    x = np.asarray(lrs, dtype=np.float64)
    axes.plot(x, np.asarray(losses, dtype=np.float64), color=GREY, alpha=0.5, label="loss")
    axes.plot(x, np.asarray(smoothed, dtype=np.float64), color=TRAIN, label="smoothed")
    axes.axvline(suggestion, color=VAL, linestyle="--", label=f"suggested {suggestion:.2g}")
    axes.set_xscale("log")
    finite = np.asarray([v for v in (*losses, *smoothed) if np.isfinite(v)])
    if len(finite):  # the diverging tail would flatten the interesting part
        low, high = finite.min(), min(finite.max(), 2 * float(smoothed[0]))
        axes.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.legend()
    title = f"LR range test: suggested lr {suggestion:.2g}"
    figure.suptitle(title)
    axes.set_title(rule, fontsize=9)
    data = {label: xy for label, xy in plotted(axes) if label in ("loss", "smoothed")}
    return render(figure, title, {**data, "suggestion": suggestion})
