"""A search that cannot do what it was asked refuses in one sentence (issue 27): one that would
seek the worst value of what its trials return (maximize a regression's loss), and
`nntrain hparams_search=optuna` typed without -m, which only trained once."""

import csv
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import OmegaConf
from sklearn.datasets import load_diabetes

from hydra_plugins.nntrain_optuna_sweeper.optuna_sweeper import NntrainOptunaSweeper
from hydra_plugins.nntrain_optuna_sweeper.search_space import parse_search_space
from nntrain.commands.search_guard import refuse_a_search_without_multirun
from nntrain.errors import UserError
from tests.conftest import read_metrics, run_nntrain

MAXIMIZED_LOSS = (
    "hydra.sweeper.direction=maximize would maximize val/loss, which a regression's trials "
    "return (lower is better); set hydra.sweeper.direction=minimize."
)


def write_diabetes(path: Path, rows: int = 60) -> None:
    """A small regression table: its target has > 20 numeric values, so data.task=auto makes
    it a regression only once the table is read (inside the first trial)."""
    data = load_diabetes()
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*data.feature_names, "progression"])
        for x, y in list(zip(data.data, data.target, strict=True))[:rows]:
            writer.writerow([*(round(float(v), 5) for v in x), float(y)])


def test_a_regression_search_that_would_maximize_its_loss_stops_at_its_first_trial(tmp_path):
    """It maximized val/loss for all its trials and called it val/acc, in the log and in
    optimization_results.yaml. data.task=auto: the first trial says what the trials return."""
    write_diabetes(tmp_path / "diabetes.csv")
    command = (
        "-m", "hparams_search=optuna", "trainer=debug", "data=csv", "data.path=diabetes.csv",
        "data.target=progression", "hydra.sweeper.storage=sqlite:///s.db",
        "hydra.sweeper.params=null", "optimizer.lr=choice(1e-3,1e-2)",
    )  # fmt: skip
    done = run_nntrain(*command, "hydra.sweeper.direction=maximize", "hydra.sweeper.n_trials=3",
                       cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"Error: {MAXIMIZED_LOSS}"
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    assert sorted(p.name for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()) == ["0"]  # no more
    # The study this command created holds nothing of worth: gone, so that the corrected
    # command below starts it afresh (it would be refused as made to maximize).
    assert optuna.get_all_study_names(storage=f"sqlite:///{tmp_path / 's.db'}") == []

    done = run_nntrain(*command, "hydra.sweeper.direction=minimize", "hydra.sweeper.n_trials=2",
                       cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="nntrain", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert study.metric_names == ["val/loss"]
    losses = [read_metrics(Path(t.user_attrs["job_dir"]))["val/loss"] for t in study.trials]
    assert [t.value for t in study.trials] == pytest.approx(losses)
    assert f"trial 0 (job 0): val/loss={losses[0]:.6g}" in done.stdout
    assert f"Best trial {study.best_trial.number}: val/loss=" in done.stdout
    newest = max((tmp_path / "outputs" / "multirun").glob("*/*"))
    results = yaml.safe_load((newest / "optimization_results.yaml").read_text())
    assert (results["direction"], results["metric"]) == ("minimize", "val/loss")
    assert results["best_value"] == pytest.approx(min(losses))


def test_a_search_that_would_minimize_an_accuracy_is_refused_before_any_trial(tmp_path):
    """nntrain's own data sets are classifications: the trials return val/acc, known before
    the first trial runs; nothing is written."""
    done = run_nntrain("-m", "hparams_search=optuna", "trainer=debug", "data=moons",
                       "hydra.sweeper.direction=minimize", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1 and done.stderr == (
        "Error: hydra.sweeper.direction=minimize would minimize val/acc, which the trials "
        "return (higher is better); set hydra.sweeper.direction=maximize.\n"
    )
    assert list(tmp_path.iterdir()) == []


def sweeper_for(data: dict, direction: object, metrics: list[str] | None = None,
                monitor: str = "val/acc") -> NntrainOptunaSweeper:  # fmt: skip
    sweeper = NntrainOptunaSweeper(
        sampler=None, direction=direction, storage=None, study_name=None, n_trials=1,
        n_jobs=1, params=None, metrics=metrics,
    )  # fmt: skip
    mode = "max" if monitor.endswith("acc") else "min"
    sweeper.config = OmegaConf.create(
        {"data": data, "trainer": {"early_stopping": {"monitor": monitor, "mode": mode}}}
    )
    sweeper.check_settings()
    return sweeper


CSV = "nntrain.data.csv_table.CsvTable"


@pytest.mark.parametrize(
    ("data", "direction", "metrics", "refused"),
    [
        ({"_target_": CSV, "task": "regression"}, "maximize", None, MAXIMIZED_LOSS),
        (
            {"_target_": CSV, "task": "regression"}, "max", None,
            MAXIMIZED_LOSS.replace("direction=maximize", "direction=max"),
        ),
        ({"_target_": CSV, "task": "regression"}, "minimize", None, None),
        ({"_target_": CSV, "task": "auto"}, "maximize", None, None),  # the first trial says
        ({"_target_": "my.Data"}, "minimize", None, None),  # a user's data may be a regression
        (
            {"_target_": "nntrain.data.tabular.Moons"}, ["maximize", "minimize"],
            ["val/acc", "val/loss"], None,
        ),
        (
            {"_target_": "nntrain.data.tabular.Moons"}, ["maximize", "maximize"],
            ["val/acc", "val/loss"],
            "hydra.sweeper.direction=[maximize,maximize] would maximize val/loss, which "
            "hydra.sweeper.metrics names (lower is better); set "
            "hydra.sweeper.direction=[maximize,minimize].",
        ),
    ],
)  # fmt: skip
def test_a_direction_seeking_the_worst_value_is_refused_where_the_config_tells(
    data, direction, metrics, refused
):
    sweeper = sweeper_for(data, direction, metrics)
    if refused is None:
        sweeper.check_objective(parse_search_space([]))
        return
    with pytest.raises(HydraException) as error:
        sweeper.check_objective(parse_search_space([]))
    assert str(error.value) == refused


def test_a_regression_known_up_front_names_its_objective_val_loss():
    sweeper = sweeper_for({"_target_": CSV, "task": "regression"}, "auto")
    sweeper.check_objective(parse_search_space([]))
    assert (sweeper.directions, sweeper.metric_names) == (["minimize"], ["val/loss"])
    # a searched task leaves it to the first trial
    sweeper = sweeper_for({"_target_": CSV, "task": "regression"}, "maximize")
    sweeper.check_objective(parse_search_space(["data.task=choice(regression,classification)"]))
    assert sweeper.known_metric_names() is None


# --- hparams_search=... without -m ------------------------------------------------------


def test_a_search_without_multirun_is_refused_before_training(tmp_path):
    """It trained once, silently, as if hparams_search were not given."""
    done = run_nntrain("hparams_search=optuna", "trainer=debug", "data=moons", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr == (
        "Error: hparams_search=optuna is a search and runs only in multirun mode: add -m, e.g. "
        "nntrain -m hparams_search=optuna; to train once with a trial's values, leave "
        "hparams_search=optuna out.\n"
    )
    assert list(tmp_path.iterdir()) == []  # no run directory: nothing trained


def hydra_config(mode: RunMode, search: str | None) -> SimpleNamespace:
    return SimpleNamespace(mode=mode, runtime=SimpleNamespace(choices={"hparams_search": search}))


def test_only_a_search_run_without_multirun_is_refused():
    cfg = OmegaConf.create({"resume": None})
    with pytest.raises(UserError, match=r"^hparams_search=mine is a search and runs only in"):
        refuse_a_search_without_multirun(cfg, hydra_config(RunMode.RUN, "mine"))
    refuse_a_search_without_multirun(cfg, hydra_config(RunMode.MULTIRUN, "mine"))
    refuse_a_search_without_multirun(cfg, hydra_config(RunMode.RUN, None))
    # `nntrain resume=<trial dir>` replays the trial's overrides, hparams_search=... among them
    resumed = OmegaConf.create({"resume": "outputs/multirun/x/3"})
    refuse_a_search_without_multirun(resumed, hydra_config(RunMode.RUN, "mine"))
