"""The Task (nntrain.tasks) owns what a classification and a regression do differently; no other
module compares a task's name."""

import ast
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nntrain.errors import UserError
from nntrain.tasks import (
    CLASSIFICATION,
    MONITORS,
    NO_MONITOR,
    REGRESSION,
    REGRESSION_MONITORS,
    natural_direction,
    task_named,
    task_of_spec,
)

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("classification", "regression")


def test_classification():
    task = CLASSIFICATION
    assert task.name == "classification" and task.has_classes
    assert task.metrics == ("acc",) and task.main_metric == "acc"
    assert task.monitors == MONITORS == ("val/acc", "val/loss", "train/acc", "train/loss")
    assert (task.default_monitor, task.default_mode) == ("val/acc", "max")
    assert task.offers("val/acc") and task.offers(NO_MONITOR) and not task.offers("val/r2")
    assert task.overfit_success == "a training loss near 0 and 100 % accuracy on them"
    assert task.hparams_metrics == ("acc",)


def test_regression():
    task = REGRESSION
    assert task.name == "regression" and not task.has_classes
    assert task.metrics == ("rmse", "mae", "r2") and task.main_metric == "r2"
    assert task.monitors == (*REGRESSION_MONITORS, "val/loss", "train/loss")
    assert REGRESSION_MONITORS[:3] == ("val/rmse", "val/mae", "val/r2")
    assert (task.default_monitor, task.default_mode) == ("val/loss", "min")
    assert task.offers("val/r2") and task.offers(NO_MONITOR) and not task.offers("val/acc")
    assert "val/r2 near 1" in task.overfit_success
    assert task.hparams_metrics == ("rmse", "r2")


def test_objective_directions():
    assert natural_direction("val/loss") == natural_direction("val/rmse") == "minimize"
    assert natural_direction("val/mae") == "minimize"
    assert natural_direction("val/acc") == natural_direction("test/r2") == "maximize"
    assert natural_direction("train/samples_per_sec") is None
    for task in (CLASSIFICATION, REGRESSION):  # every figure of a task says which way is best
        assert all(natural_direction(monitor) for monitor in task.monitors)


def test_the_losses_are_the_trainers():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 3), torch.randint(0, 3, (8,))
    weight = torch.tensor([1.0, 2.0, 0.5])
    assert torch.equal(
        CLASSIFICATION.loss(logits, labels, weight, 0.1),
        F.cross_entropy(logits, labels, weight=weight, label_smoothing=0.1),
    )
    outputs, values = torch.randn(8, 1), torch.randn(8)
    assert torch.equal(REGRESSION.loss(outputs, values), F.mse_loss(outputs.reshape(8), values))


def test_task_named():
    assert task_named("classification") is CLASSIFICATION
    assert task_named("regression") is REGRESSION
    with pytest.raises(UserError) as refused:
        task_named("segmentation")
    assert str(refused.value) == (
        "unknown task 'segmentation': a task is classification or regression."
    )


def test_a_checkpoints_spec_names_its_task():
    assert task_of_spec({"kind": "image"}) is CLASSIFICATION  # images record no task
    assert task_of_spec({"kind": "table", "task": "regression"}) is REGRESSION


def test_data_says_its_task():
    from nntrain.data.protocols import task_of

    class Images:
        pass

    class Table:
        task = "regression"

    assert task_of(Images()) is CLASSIFICATION and task_of(Table()) is REGRESSION


def sources() -> list[Path]:
    found = [*(ROOT / "nntrain").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")]
    return sorted(path for path in found if path != ROOT / "nntrain" / "tasks.py")


def name_comparisons(path: Path) -> list[str]:
    """Where a source compares something with a task's name (==, !=, in a tuple of them)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for operand in [node.left, *node.comparators]:
            constants = (
                operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            )
            if any(isinstance(c, ast.Constant) and c.value in NAMES for c in constants):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_task_name_is_compared_outside_tasks():
    compared = [where for path in sources() for where in name_comparisons(path)]
    assert not compared, f"compare the Task's attributes instead: {compared}"


def test_the_names_appear_only_where_settings_spell_them():
    """Beyond comparisons: a name spelled as a string literal is written by tasks.py alone
    (the settings' Literal, which lists what data.task accepts, aside)."""
    literal = re.compile(r"""["'](classification|regression)["']""")
    spelled = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sources()
        if path.name != "settings.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert not spelled, f"use CLASSIFICATION.name / REGRESSION.name: {spelled}"
