"""Regression on a table (data=csv, a numeric target): MSE on the standardised target, RMSE /
MAE / R² in the target's units everywhere a classifier shows its accuracy, and nntrain-eval /
nntrain-predict on the checkpoint."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nntrain.commands import train as cli
from nntrain.data.csv_table import CsvTable
from nntrain.data.in_memory import split_indices
from nntrain.errors import UserError
from nntrain.inference.trained_run import build_model, load_run
from tests.conftest import compose_config, read_metrics, run_nntrain
from tests.test_csv import run_nntrain_eval
from tests.test_predict import run_predict

N = 400


def planted_rows() -> list[dict[str, str]]:
    """price = 300 + 40*size - 25*age + 60 if the district is centre, noise sd 5; about 5% of
    ages missing; size spans 0..10, so the target spans about 0..800."""
    rng = random.Random(11)
    rows = []
    for i in range(N):
        size, age, district = rng.uniform(0, 10), rng.uniform(0, 10), rng.choice(["centre", "edge"])
        price = 300 + 40 * size - 25 * age + (60 if district == "centre" else 0) + rng.gauss(0, 5)
        rows.append(
            {
                "id": str(i),
                "size": f"{size:.3f}",
                "age": "" if rng.random() < 0.05 else f"{age:.3f}",
                "district": district,
                "price": f"{price:.2f}",
            }
        )
    return rows


def write_rows(path: Path, rows: list[dict[str, str]], fields: list[str] | None = None) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prices")
    table = write_rows(folder / "prices.csv", planted_rows())
    cfg = compose_config(
        "data=csv",
        f"data.path={table}",
        "data.target=price",
        "trainer=debug",
        "trainer.max_epochs=25",
        "trainer.limit_train_batches=1.0",
        "trainer.early_stopping.patience=null",
        "optimizer.lr=0.01",
        "model.hidden=[32]",
    )
    cli.run(cfg, str(folder / "run"))
    return folder / "run", table, CsvTable(target="price", path=str(table))


def test_a_planted_linear_relation_is_learned_and_reported_in_its_units(trained):
    run_dir, _, data = trained
    assert data.task == "regression" and data.num_classes == 1  # inferred: 400 numeric values
    metrics = read_metrics(run_dir)
    assert metrics["test/r2"] >= 0.97
    # In the target's units: the noise is 5, the target's spread about 150.
    assert 3 < metrics["test/rmse"] < 40 and 2 < metrics["test/mae"] < metrics["test/rmse"]
    assert (
        "test/acc" not in metrics and metrics["val/loss"] < 0.05
    )  # MSE on the standardised target
    # best.pt and early stopping followed val/loss (the default monitor, val/acc, has no meaning)
    best = torch.load(run_dir / "checkpoints/best.pt", weights_only=False)
    assert best["monitor"] == "val/loss" and best["best_metric"] == metrics["val/loss"]

    events = EventAccumulator(str(run_dir))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {
        "train/rmse",
        "train/r2",
        "val/rmse",
        "val/mae",
        "val/r2",
        "~hparams/test/r2",
    } <= scalars
    assert {"~figures/val_predicted_vs_true", "~figures/curves"} <= set(events.Tags()["images"])
    # the figures of the run directory: predicted vs true, and one curve point per epoch
    from PIL import Image

    assert Image.open(run_dir / "pred_vs_true.png").size[0] > 300
    assert Image.open(run_dir / "curves.png").size[0] > 300
    assert events.Scalars("~hparams/test/r2")[0].value == pytest.approx(metrics["test/r2"])


def test_eval_and_predict_give_the_runs_figures_and_values(trained, tmp_path):
    run_dir, _, data = trained
    done = run_nntrain_eval(run_dir)
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "eval_test.json").read_text())
    metrics = read_metrics(run_dir)
    assert results["test/r2"] == metrics["test/r2"] and results["test/count"] == 80
    assert results["test/sklearn"]["r2"] == pytest.approx(metrics["test/r2"], abs=1e-6)
    assert (run_dir / "pred_vs_true_test.png").stat().st_size > 10_000
    permutation = results["test/importance"]["permutation"]
    assert max(permutation, key=permutation.get) == "size"  # the largest coefficient's column

    rows = planted_rows()
    test_rows = [rows[i] for i in split_indices(N, 0.1, 0.2, 42)[2].tolist()]
    write_rows(tmp_path / "new.csv", test_rows, ["district", "age", "size", "id"])  # no target
    done = run_predict(f"ckpt={run_dir}", "inputs=new.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "predictions.csv").open() as file:
        predicted = list(csv.DictReader(file))
    assert list(predicted[0]) == ["input", "predicted"]
    assert [p["input"] for p in predicted] == [row["id"] for row in test_rows]
    model = build_model(load_run(run_dir))
    with torch.no_grad():
        outputs = model(data.splits["test"].inputs)[:, 0] * data.target_std + data.target_mean
    assert [p["predicted"] for p in predicted] == [f"{v:.6g}" for v in outputs.tolist()]
    errors = [
        float(p["predicted"]) - float(r["price"]) for p, r in zip(predicted, test_rows, strict=True)
    ]
    rmse = (sum(e * e for e in errors) / len(errors)) ** 0.5
    assert rmse == pytest.approx(metrics["test/rmse"], rel=1e-3)


def test_the_command_line_says_the_task_and_the_monitor_and_a_sweep_summarises(tmp_path):
    write_rows(tmp_path / "prices.csv", planted_rows())
    args = ("data=csv", "data.path=prices.csv", "data.target=price", "trainer=debug")
    done = run_nntrain("-m", *args, "optimizer.lr=0.01,0.001", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "has 400 distinct numeric values, so this is regression" in done.stdout
    assert "regression: early stopping and best.pt follow val/loss (min)" in done.stdout
    summary = next(tmp_path.rglob("summary.csv")).read_text().splitlines()
    header = summary[0].split(",")
    assert header[:7] == [
        "job",
        "overrides",
        "status",
        "best_val",
        "test/acc",
        "test/rmse",
        "test/r2",
    ]
    for line in summary[1:]:
        cells = dict(zip(header, next(csv.reader([line])), strict=True))
        assert cells["status"] == "ok" and cells["test/acc"] == ""
        assert float(cells["test/rmse"]) > 0 and float(cells["best_val"]) > 0  # val/loss


def test_monitoring_r2_keeps_the_best_r2(tmp_path):
    table = write_rows(tmp_path / "prices.csv", planted_rows())
    cfg = compose_config(
        "data=csv",
        f"data.path={table}",
        "data.target=price",
        "trainer=debug",
        "trainer.max_epochs=3",
        "trainer.early_stopping.monitor=val/r2",
        "trainer.early_stopping.mode=max",
    )
    result = cli.run(cfg, str(tmp_path / "run"))
    best = torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=False)
    assert best["monitor"] == "val/r2" and result["val/r2"] == best["best_metric"]


def test_regression_mistakes_are_one_sentence(tmp_path):
    rows = planted_rows()
    rows[7]["price"] = "cheap"
    table = write_rows(tmp_path / "prices.csv", rows)
    with pytest.raises(UserError) as error:
        CsvTable(target="price", path=str(table), task="regression")
    assert str(error.value) == (
        "prices.csv row 8 (line 9): the target 'price' holds 'cheap', not a number; "
        "data.task=regression needs a number in every row."
    )
    for row in rows:
        row["price"] = "7"
    write_rows(table, rows)
    with pytest.raises(UserError) as error:
        CsvTable(target="price", path=str(table), task="regression")
    assert str(error.value) == (
        "the target column 'price' has the same value in every training row; there is nothing "
        "to learn: choose another data.target."
    )
    cfg = compose_config("trainer=debug", "trainer.early_stopping.monitor=val/r2")
    with pytest.raises(UserError) as error:
        cli.run(cfg, str(tmp_path / "digits"))
    assert str(error.value) == (
        "trainer.early_stopping.monitor=val/r2 is a regression figure and this data is a "
        "classification; monitor val/acc or val/loss."
    )
