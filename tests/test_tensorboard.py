"""What TensorBoard shows for a sweep, an Optuna search (one trial pruned), a single run and a
regression, read with TensorBoard's own code: its event multiplexer names the runs (the folder
of their event files relative to --logdir), its HParams plugin builds the columns and rows
(backend_context, list_session_groups) from the events as the tab does."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_nntrain


def tensorboard_view(logdir: Path) -> dict[str, Any]:
    """What TensorBoard serves for --logdir: its runs, the HParams tab's hparam columns (in
    the order the tab lists them, with whether each differs: the tab shows the first five),
    its metric columns and its rows (Trial ID -> hparams, metric values)."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexing
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    multiplexer = multiplexing.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin_context = base_plugin.TBContext(
        logdir=str(logdir), data_provider=provider, multiplexer=multiplexer
    )
    backend = backend_context.Context(plugin_context)
    request = context.RequestContext()
    experiment = backend.experiment_from_metadata(
        request,
        "",
        True,
        backend.hparams_metadata(request, ""),
        backend.hparams_from_data_provider(request, "", None),
        hparams_limit=1000,  # as the tab asks: sorted, differing keys first
    )
    query = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=1000, allowed_statuses=list(range(4))
    )
    groups = list_session_groups.Handler(request, backend, "", query).run().session_groups
    rows = {}
    for group in groups:
        values = {
            key: value.string_value or value.number_value for key, value in group.hparams.items()
        }
        figures = {m.name.tag.removeprefix("~hparams/"): m.value for m in group.metric_values}
        rows[group.name] = {
            "hparams": values,
            "metrics": figures,
            "runs": [s.name for s in group.sessions],
        }
    return {
        "runs": sorted(multiplexer.Runs()),
        "hparams": [(info.name, info.differs) for info in experiment.hparam_infos],
        "metrics": [m.display_name or m.name.tag for m in experiment.metric_infos],
        "rows": rows,
    }


def shown_hparams(view: dict[str, Any]) -> list[str]:
    """The hparam columns the tab ticks: the first five, differing ones first."""
    ordered = sorted(view["hparams"], key=lambda info: not info[1])  # a stable sort, as the tab's
    return [name for name, _ in ordered[:5]]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Any]:
    """One outputs/ folder with a 4-job sweep, a 3-trial Optuna search whose second trial is
    pruned, a single run and a CSV regression (scikit-learn's diabetes table), as a user's."""
    from sklearn.datasets import load_diabetes

    cwd = tmp_path_factory.mktemp("outputs")
    diabetes = load_diabetes()
    with (cwd / "diabetes.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*diabetes.feature_names, "target"])
        writer.writerows([*x, y] for x, y in zip(diabetes.data, diabetes.target, strict=True))
    done = {
        "sweep": run_nntrain(
            "-m", "trainer=debug", "optimizer.lr=1e-3,3e-3", "model.hidden=[64],[128]", cwd=cwd
        ),
        # val/acc after the first epoch is below 0.3 only for the search's small lr (1.5e-4)
        "search": run_nntrain(
            "-m",
            "hparams_search=optuna",
            "trainer=debug",
            "trainer.max_epochs=3",
            "hydra.sweeper.n_trials=3",
            "hydra/sweeper/pruner=threshold",
            "hydra.sweeper.pruner.lower=0.3",
            "name=search",
            cwd=cwd,
        ),
        "single": run_nntrain("trainer=debug", "name=single", cwd=cwd),
        "regression": run_nntrain(
            "data=csv",
            "data.path=diabetes.csv",
            "data.target=target",
            "trainer=debug",
            "trainer.max_epochs=3",
            "name=diabetes",
            cwd=cwd,
        ),
    }
    for name, process in done.items():
        assert process.returncode == 0, (name, process.stderr)
    sweeps = {p.name.split("-", 3)[-1]: p for p in (cwd / "outputs" / "multirun").glob("*/*")}
    singles = {p.name.split("-", 3)[-1]: p for p in (cwd / "outputs").glob("2*/*")}
    return {"cwd": cwd, "done": done, "sweep": sweeps["mlp-digits"], "search": sweeps["search"],
            "single": singles["single"], "regression": singles["diabetes"]}  # fmt: skip


def test_a_sweeps_runs_are_named_by_their_labels(outputs):
    view = tensorboard_view(outputs["sweep"])
    assert view["runs"] == [
        "mlp-digits lr=0.001 hidden=[128]",
        "mlp-digits lr=0.001 hidden=[64]",
        "mlp-digits lr=0.003 hidden=[128]",
        "mlp-digits lr=0.003 hidden=[64]",
    ]
    # each run has the curves, the figures (their split in the tag) and its HParams figures
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(outputs["sweep"] / "mlp-digits lr=0.003 hidden=[64]"))
    tags = events.Reload().Tags()
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "~hparams/val/acc"} <= set(
        tags["scalars"]
    )
    assert {
        "~figures/curves",
        "~figures/val_confusion_matrix",
        "~figures/test_confusion_matrix",
    } <= set(tags["images"])
    # the job directories hold no events; the printed command points at the sweep
    assert not list(outputs["sweep"].glob("[0-9]/events.out.tfevents.*"))
    stdout = outputs["done"]["sweep"].stdout.splitlines()
    shown = outputs["sweep"].relative_to(outputs["cwd"])
    assert stdout[-1] == f"tensorboard --logdir {shown}"


def test_a_sweeps_hparams_tick_the_swept_keys_and_list_every_figure(outputs):
    view = tensorboard_view(outputs["sweep"])
    differing = {name for name, differs in view["hparams"] if differs}
    assert differing == {"model.hidden", "optimizer.lr"}
    assert shown_hparams(view)[:2] == ["model.hidden", "optimizer.lr"]
    assert ("trainer", False) in view["hparams"]  # trainer=debug: set, but the same in every job
    assert "name" not in dict(view["hparams"])
    assert view["metrics"][:5] == ["val/acc", "val/loss", "test/acc", "test/loss", "best_epoch"]
    # Trial IDs: the job and its sweep's start, short enough for the tab's column
    started = ":".join(outputs["sweep"].name.split("-")[:3])
    assert sorted(view["rows"]) == [f"job {n} · {started}" for n in range(4)]
    for trial, row in view["rows"].items():
        assert len(trial) <= 17
        job = outputs["sweep"] / trial.split()[1]
        metrics = json.loads((job / "metrics.json").read_text())
        assert row["metrics"]["val/acc"] == pytest.approx(metrics["val/acc"])
        assert row["metrics"]["val/loss"] == pytest.approx(metrics["val/loss"])
        assert row["metrics"]["test/acc"] == pytest.approx(metrics["test/acc"])
        assert row["hparams"]["status"] == "ok"
        (run,) = row["runs"]  # its curves: the run named by the job's label
        assert run.startswith("mlp-digits lr=")


def test_an_optuna_search_shows_its_searched_keys_and_its_pruned_trial(outputs):
    view = tensorboard_view(outputs["search"])
    searched = {"optimizer.lr", "optimizer.weight_decay", "data.batch_size", "model.dropout"}
    differing = {name for name, differs in view["hparams"] if differs}
    assert differing == searched | {"status"}  # status: ok, and pruned
    assert set(shown_hparams(view)) == searched | {"status"}
    rows = view["rows"]
    assert {row["hparams"]["hparams_search"] for row in rows.values()} == {"optuna"}
    statuses = {trial.split()[1]: row["hparams"]["status"] for trial, row in rows.items()}
    assert statuses == {"0": "ok", "1": "pruned", "2": "ok"}
    pruned = next(row for row in rows.values() if row["hparams"]["status"] == "pruned")
    assert "test/acc" not in pruned["metrics"] and pruned["metrics"]["val/acc"] < 0.3
    # its run's name: rounded values, short keys (no 17-digit floats)
    for run in view["runs"]:
        assert re.fullmatch(r"search lr=\S{1,7} wd=\S{1,7} bs=\d+ dropout=\S{1,5}", run), run
    # the pruned trial drew no test figure
    pruned_job = outputs["search"] / "1"
    assert json.loads((pruned_job / "status.json").read_text())["status"] == "pruned"
    assert not (pruned_job / "confusion_test.png").exists()
    assert (pruned_job / "confusion_matrix.png").exists()
    with (outputs["search"] / "summary.csv").open() as file:
        assert [row["status"] for row in csv.DictReader(file)] == ["ok", "pruned", "ok"]


def test_a_printed_sweep_table_fits_80_columns_a_trial_a_line(outputs):
    for name in ("sweep", "search"):
        stdout = outputs["done"][name].stdout
        table = stdout[stdout.index("sweep summary:") :].splitlines()
        assert all(len(line) <= 80 for line in table), table
        header = next(line for line in table if line.startswith("job"))
        assert header.split()[-5:] == ["status", "val/acc", "test/acc", "epochs", "time"]
        rows = [line for line in table if re.match(r"\d+ ", line)]
        assert len(rows) == (4 if name == "sweep" else 3), table  # one line each
    search = outputs["done"]["search"].stdout
    table = search[search.index("sweep summary:") :].splitlines()
    header, _, *rows = table[1:6]
    assert header.split() == [
        "job", "lr", "wd", "bs", "dropout", "status", "val/acc", "test/acc", "epochs", "time"
    ]  # fmt: skip
    assert any(row.split()[5] == "pruned" for row in rows)
    assert "pruned: 1 trial stopped early by the search's pruner (not failures)." in search
    # values rounded (the search's overrides have 16 digits: 0.0013292918943162175)
    assert not re.search(r"\d{7,}", search[search.index("sweep summary:") :])


def test_a_mixed_logdir_names_runs_by_their_directory_and_lists_both_kinds_of_figures(outputs):
    view = tensorboard_view(outputs["cwd"] / "outputs")
    single = outputs["single"].relative_to(outputs["cwd"] / "outputs").as_posix()
    regression = outputs["regression"].relative_to(outputs["cwd"] / "outputs").as_posix()
    assert single in view["runs"] and regression in view["runs"]
    sweep = outputs["sweep"].relative_to(outputs["cwd"] / "outputs").as_posix()
    assert f"{sweep}/mlp-digits lr=0.003 hidden=[64]" in view["runs"]
    assert not any(run.endswith("/tb") or "/tb/" in run for run in view["runs"])
    assert len(view["runs"]) == 4 + 3 + 2
    # whichever run's column list TensorBoard reads, both tasks' figures are columns
    assert {"val/loss", "val/acc", "test/acc", "val/rmse", "val/r2", "test/rmse", "test/r2"} <= set(
        view["metrics"]
    )
    rows = view["rows"]
    assert len(rows) == 9  # one row per run: Trial IDs are unique across the sweeps
    diabetes = rows[outputs["regression"].name]
    metrics = json.loads((outputs["regression"] / "metrics.json").read_text())
    assert diabetes["metrics"]["val/rmse"] == pytest.approx(metrics["val/rmse"])
    assert diabetes["metrics"]["test/r2"] == pytest.approx(metrics["test/r2"])
    assert diabetes["metrics"]["val/loss"] == pytest.approx(metrics["val/loss"])


def test_a_regression_opens_on_its_own_curves(outputs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    events = EventAccumulator(str(outputs["regression"]))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/rmse", "train/r2", "val/loss", "val/rmse", "val/r2"} <= scalars
    assert sorted({tag.split("/")[0] for tag in scalars})[:2] == ["train", "val"]
    layout = layout_pb2.Layout.FromString(
        events.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0]
    )
    titles = [chart.title for chart in layout.category[0].chart]
    assert titles == [
        "loss (train, val)", "RMSE (train, val)", "R² (train, val)", "MAE (train, val)",
        "learning rate",
    ]  # fmt: skip
    images = set(events.Tags()["images"])
    assert {"~figures/val_predicted_vs_true", "~figures/test_predicted_vs_true"} <= images
    assert (outputs["regression"] / "pred_vs_true_test.png").is_file()
    stdout = outputs["done"]["regression"].stdout
    assert "figures in " in stdout  # a regression says so too
    # what it follows, in its config tree (data.task=auto: the data says it is a regression)
    assert "early_stopping.monitor=val/acc (a regression: val/loss)" in stdout
