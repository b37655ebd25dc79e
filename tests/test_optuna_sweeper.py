"""`nntrain -m hparams_search=optuna`: nntrain's Optuna sweeper (hydra_plugins/nntrain_optuna_sweeper).

The search runs as a user types it, in a subprocess; the grammar -> distribution parsing and the
reading of a job's outcome are checked directly.
"""

import csv
import math
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.nntrain_optuna_sweeper.objectives import guessed_direction
from hydra_plugins.nntrain_optuna_sweeper.optuna_sweeper import (
    NntrainOptunaSweeper,
    direction_from_mode,
    import_optuna,
    objective,
)
from hydra_plugins.nntrain_optuna_sweeper.search_space import (
    composition_shape,
    params_to_overrides,
    parse_search_space,
)
from tests.conftest import read_metrics, run_nntrain

SEARCH = ("-m", "hparams_search=optuna", "trainer=debug", "data=moons")


def sweep_dirs(cwd: Path) -> list[Path]:
    return sorted((cwd / "outputs" / "multirun").glob("*/*"))


def read_results(sweep_dir: Path) -> dict:
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


def read_summary(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "summary.csv").open() as file:
        return list(csv.DictReader(file))


# --- the search, as a user runs it ---------------------------------------------------------


def test_a_search_runs_each_trial_as_a_job_and_writes_the_best(tmp_path):
    done = run_nntrain(*SEARCH, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (sweep_dir,) = sweep_dirs(tmp_path)
    assert sorted(p.name for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()) == ["0", "1", "2"]
    # n_jobs=2 with the basic launcher (jobs in this process): one trial at a time, each asked
    # when the one before has ended (the sampler learns from every trial)
    assert done.stdout.count("Launching 1 jobs locally") == 3
    assert "Launching 2 jobs" not in done.stdout

    results = read_results(sweep_dir)
    rows = read_summary(sweep_dir)  # nntrain's own sweep summary still runs at the end
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert results["direction"] == "maximize" and results["metric"] == "val/acc"
    assert results["n_trials"] == 3 and results["n_failed"] == 0
    assert results["best_value"] == pytest.approx(max(float(r["best_val"]) for r in rows))
    params = results["best_params"]
    assert set(params) == {
        "optimizer.lr",
        "optimizer.weight_decay",
        "data.batch_size",
        "model.dropout",
    }
    assert 1e-4 <= params["optimizer.lr"] <= 1e-1
    assert 1e-6 <= params["optimizer.weight_decay"] <= 1e-2
    assert params["data.batch_size"] in (32, 64, 128)
    assert 0.0 <= params["model.dropout"] <= 0.5
    # the best job ran with exactly the overrides reported for it
    best_dir = Path(results["best_job_dir"])
    assert best_dir.parent == sweep_dir.resolve()
    job_overrides = yaml.safe_load((best_dir / ".hydra" / "overrides.yaml").read_text())
    assert job_overrides == results["best_overrides"]
    assert f"data.batch_size={params['data.batch_size']}" in job_overrides
    assert "Best trial" in done.stdout and "sweep summary" in done.stdout


def test_a_diverging_trial_is_a_failed_trial_and_the_search_goes_on(tmp_path):
    # BruteForceSampler tries each value once, so both the good and the diverging lr run;
    # it then ends the search by itself (n_trials=3 > 2 points).
    done = run_nntrain(
        *SEARCH,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.params=null",
        "optimizer.lr=choice(1e-3,1e12)",
        "trainer.grad_clip=null",
        "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",
        "hydra.sweeper.storage=sqlite:///search.db",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="nntrain", storage=f"sqlite:///{tmp_path / 'search.db'}")
    by_lr = {t.params["optimizer.lr"]: t for t in study.trials}
    assert set(by_lr) == {1e-3, 1e12}
    assert by_lr[1e-3].state == TrialState.COMPLETE and by_lr[1e-3].value > 0
    assert by_lr[1e12].state == TrialState.FAIL
    assert by_lr[1e12].user_attrs["error"].startswith("NonFiniteLoss")

    (sweep_dir,) = sweep_dirs(tmp_path)
    results = read_results(sweep_dir)
    assert results["n_trials"] == 2 and results["n_failed"] == 1
    assert results["best_params"] == {"optimizer.lr": 1e-3}
    assert results["best_value"] == pytest.approx(by_lr[1e-3].value)
    assert sorted(r["status"] for r in read_summary(sweep_dir)) == ["failed", "ok"]
    assert "tried every point" in done.stdout


def test_a_stored_study_continues_and_minimizes_a_metric_with_mode_min(tmp_path):
    command = (
        *SEARCH,
        "hydra.sweeper.storage=sqlite:///search.db",
        "hydra.sweeper.study_name=moons",
        "trainer.early_stopping.monitor=val/loss",
    )
    # n_trials is the study's total: 2, then the same study continued to 4 (two more trials)
    for total in (2, 4):
        done = run_nntrain(
            *command, f"hydra.sweeper.n_trials={total}", "trainer.early_stopping.mode=min",
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert "4 of 4 trials finished" not in done.stdout and "2 of 4 trials finished" in done.stdout
    # the same command again: the study has its 4 trials, and runs none
    again = run_nntrain(
        *command, "hydra.sweeper.n_trials=4", "trainer.early_stopping.mode=min", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert "4 of 4 trials finished" in again.stdout and "Launching" not in again.stdout

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    study = optuna.load_study(study_name="moons", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    # the continued run draws new points (its seeded sampler does not start over)
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 4

    _, second, _ = sweep_dirs(tmp_path)
    jobs = sorted(p.name for p in second.iterdir() if (p / ".hydra").is_dir())
    assert jobs == ["2", "3"]  # = trial numbers
    results = read_results(second)
    assert results["direction"] == "minimize" and results["metric"] == "val/loss"
    assert results["n_trials"] == 4 and results["new_trials"] == [2, 3]
    assert results["best_value"] == pytest.approx(min(t.value for t in study.trials))

    # The stored study minimizes: maximizing it instead is refused in one sentence before any
    # trial, by the direction given (it would maximize a loss), or (auto) because the config
    # says the trials return a figure to maximize (mode=max); the study stays as it was.
    command = (*command, "hydra.sweeper.n_trials=5")
    done = run_nntrain(*command, "hydra.sweeper.direction=max", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr == (
        "Error: hydra.sweeper.direction=max would maximize val/loss, which the trials return "
        "(lower is better); set hydra.sweeper.direction=minimize.\n"
    )
    assert len(optuna.load_study(study_name="moons", storage=storage).trials) == 4
    done = run_nntrain(*command, "trainer.early_stopping.mode=max", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: study 'moons' in sqlite:///search.db was created to minimize its objective, and "
        "the trials return val/loss, which is to maximize; continue it with the same "
        "trainer.early_stopping.monitor and mode, or start a new study with "
        "hydra.sweeper.study_name=NAME."
    )
    study = optuna.load_study(study_name="moons", storage=storage)
    assert len(study.trials) == 4
    assert study.best_value == pytest.approx(results["best_value"])


# --- Hydra's override grammar -> Optuna distributions ---------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer.lr=tag(log, interval(1e-4, 1e-1))", FloatDistribution(1e-4, 0.1, log=True)),
        ("model.dropout=interval(0.0, 0.5)", FloatDistribution(0.0, 0.5)),
        ("data.batch_size=choice(32, 64, 128)", CategoricalDistribution([32, 64, 128])),
        ("data.batch_size=32,64", CategoricalDistribution([32, 64])),
        ("model=choice(mlp, cnn)", CategoricalDistribution(["mlp", "cnn"])),
        ("trainer.max_epochs=range(1, 5)", IntDistribution(1, 4)),  # stop is never drawn
        ("trainer.max_epochs=range(2, 11, 4)", IntDistribution(2, 10, step=4)),
        ("x=tag(log, range(1, 9))", IntDistribution(1, 8, log=True)),
        ("x=range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
        ("x=tag(int, interval(16, 256))", IntDistribution(16, 256)),
        ("x=tag(log, int, interval(16, 256))", IntDistribution(16, 256, log=True)),
        # Hydra's int() cast keeps whole-number bounds: whole numbers are asked for
        ("x=int(interval(1, 5))", IntDistribution(1, 5)),
        ("x=tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
        ("x=interval(1, 5)", FloatDistribution(1.0, 5.0)),
        # shuffle(): the values in any order, a choice
        ("x=shuffle(range(1, 3))", CategoricalDistribution([1, 2])),
        ("x=shuffle(choice(a, b))", CategoricalDistribution(["a", "b"])),
    ],
)
def test_override_grammar_becomes_an_optuna_distribution(override, expected):
    space = parse_search_space([override])
    assert list(space.distributions.values()) == [expected] and space.fixed == []


def test_choices_are_written_back_as_the_values_they_were():
    space = parse_search_space(["model.hidden=choice([64],[64,64])", "x=choice('a b', c)"])
    assert space.distributions == {
        "model.hidden": CategoricalDistribution(["[64]", "[64,64]"]),
        "x": CategoricalDistribution(["a\\ b", "c"]),  # override text, escaped as Hydra does
    }
    overrides = space.overrides({"model.hidden": "[64,64]", "x": "a\\ b"})
    parsed = OverridesParser.create().parse_overrides(overrides)
    assert [o.value() for o in parsed] == [[64, 64], "a b"]


def test_fixed_values_pass_through_and_the_command_line_wins_over_params():
    params = {"optimizer.lr": "tag(log, interval(1e-4, 1e-1))", "model.dropout": 0.1, "x": None}
    arguments = ["trainer=debug", "+extra=a", "optimizer.lr=0.01", "seed=choice(1, 2)"]
    space = parse_search_space(params_to_overrides(params) + arguments)
    assert space.distributions == {"seed": CategoricalDistribution([1, 2])}
    assert space.fixed == [
        "model.dropout=0.1",
        "x=null",
        "trainer=debug",
        "+extra=a",
        "optimizer.lr=0.01",
    ]
    assert space.overrides({"seed": 2})[-1] == "seed=2"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("x=tag(lg, interval(0.1, 1))", "unknown tag 'lg'"),
        ("x=range(5, 5)", "the range is empty"),
        ("x=tag(log, range(2, 64, 2))", "needs step 1"),
        ("x=tag(log, choice(1, 2))", "not to choices"),
        ("x=tag(log, interval(0, 1))", "x=tag(log, interval(0, 1)):"),  # optuna: log needs low > 0
        ("x=tag(int, interval(0.5, 3))", "whole-number bounds"),
    ],
)
def test_a_bad_search_space_is_one_clear_error(override, message):
    with pytest.raises(HydraException, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_search_space([override])


def test_direction_follows_the_metric_mode():
    assert direction_from_mode("max") == direction_from_mode("maximize") == "maximize"
    assert direction_from_mode("min") == direction_from_mode("Minimize") == "minimize"
    with pytest.raises(HydraException, match="is not a direction"):
        direction_from_mode("up")


# --- a job's outcome ---------------------------------------------------------------------


def job(status: JobStatus, value: object) -> JobReturn:
    return JobReturn(overrides=["x=1"], status=status, _return_value=value)


def test_a_job_that_raised_or_returned_no_finite_number_is_a_failure():
    assert objective(job(JobStatus.COMPLETED, 0.75)) == ([0.75], None)
    assert objective(job(JobStatus.COMPLETED, math.nan)) == (None, "the job returned nan")
    assert objective(job(JobStatus.COMPLETED, math.inf)) == (None, "the job returned inf")
    assert objective(job(JobStatus.COMPLETED, "abc"))[1] == "the job returned 'abc', not a number"
    assert objective(job(JobStatus.FAILED, RuntimeError("boom\nmore"))) == (
        None,
        "RuntimeError: boom",
    )


class FakeLauncher:
    """Stands in for Hydra's launcher: answers job n (one per call, as the sweeper launches
    them) with outcomes[n]. Job n answers only once every job before it has answered, so the
    order of events does not depend on how the threads that wait for the jobs are scheduled."""

    def __init__(self, *outcomes: JobReturn | BaseException, first: int = 0) -> None:
        self.outcomes = list(outcomes)
        self.first = first  # the first job of this sweep (a continued study's: not 0)
        self.calls: list[tuple[list[list[str]], int]] = []
        self.answered: set[int] = set()
        self.turn = threading.Condition()

    def launch(self, batch: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        with self.turn:
            self.calls.append((batch, initial_job_idx))
            before = set(range(self.first, initial_job_idx))
            self.turn.wait_for(lambda: self.answered >= before, timeout=60)
        try:
            outcome = self.outcomes[initial_job_idx]
            if isinstance(outcome, BaseException):
                raise outcome
            return [outcome]
        finally:
            with self.turn:
                self.answered.add(initial_job_idx)
                self.turn.notify_all()


def fake_sweep(
    tmp_path: Path,
    launcher: FakeLauncher,
    n_trials: int,
    validate=lambda overrides: None,
    sampler: str = "optuna.samplers.RandomSampler",
) -> optuna.Study:
    """The sweeper's loop in this process, on a stored study, with a fake launcher (validate
    stands in for the check of each trial's overrides before its launch, where Hydra composes
    its config)."""
    storage = f"sqlite:///{tmp_path / 'fake.db'}"
    sweeper = NntrainOptunaSweeper(
        sampler=OmegaConf.create({"_target_": sampler, "seed": 0}),
        direction="max",
        storage=storage,
        study_name="fake",
        n_trials=n_trials,
        n_jobs=2,
        params=OmegaConf.create({"x": "interval(0, 1)"}),
    )
    sweeper.config = OmegaConf.create(
        {
            "hydra": {
                "sweep": {"dir": str(tmp_path)},
                "hydra_logging": {"version": 1, "root": None},
                "verbose": False,
            }
        }
    )
    sweeper.hydra_context = SimpleNamespace(config_loader=None, callbacks=None)
    sweeper.launcher = launcher
    sweeper.validate_once = validate
    try:
        sweeper.sweep(["trainer=debug"])
    finally:
        study = optuna.load_study(study_name="fake", storage=storage)
    return study


def test_jobs_a_launcher_lost_are_failed_trials_and_the_search_goes_on(tmp_path):
    lost = RuntimeError("a worker was killed")
    launcher = FakeLauncher(
        job(JobStatus.COMPLETED, 0.5),
        job(JobStatus.FAILED, RuntimeError("boom")),
        lost,
        lost,
        job(JobStatus.COMPLETED, 0.25),
    )
    study = fake_sweep(tmp_path, launcher, n_trials=5)
    # one job per launch, numbered as its trial; n_jobs=2 keeps two in flight (no batches)
    assert sorted(first_job for _, first_job in launcher.calls) == [0, 1, 2, 3, 4]
    assert all(len(batch) == 1 for batch, _ in launcher.calls)
    assert all(
        b[0] == "trainer=debug"
        and b[1].startswith("x=")
        and b[2].startswith("+hydra.job.env_set.NNTRAIN_SEARCH_TRIAL=")
        for c in launcher.calls
        for b in c[0]
    )
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] + [TrialState.FAIL] * 3 + [TrialState.COMPLETE]
    assert study.trials[1].user_attrs["error"] == "RuntimeError: boom"
    assert study.trials[3].user_attrs["error"] == "RuntimeError: a worker was killed"
    results = read_results(tmp_path)
    assert (results["n_trials"], results["n_failed"], results["best_trial"]) == (5, 3, 0)
    assert results["best_value"] == 0.5 and results["metric"] == "value"


def test_ctrl_c_still_writes_the_results_of_the_trials_that_ran(tmp_path):
    """optimization_results.yaml was written only by a search that ended or stopped itself: a
    Ctrl-C after many trials left no record of the best one. The trial the Ctrl-C cut short
    fails, and a copy of it waits in the study to run first when the command runs again."""
    # Ctrl-C reaches the two jobs in flight (2 and 3)
    launcher = FakeLauncher(
        job(JobStatus.COMPLETED, 0.5),
        job(JobStatus.COMPLETED, 0.75),
        KeyboardInterrupt(),
        KeyboardInterrupt(),
    )
    with pytest.raises(KeyboardInterrupt):
        fake_sweep(tmp_path, launcher, n_trials=6)
    results = read_results(tmp_path)
    assert (results["best_trial"], results["best_value"]) == (1, 0.75)
    assert results["new_trials"] == [0, 1, 2, 3]
    study = optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'fake.db'}")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    copies = {t.system_attrs["failed_trial"]: t.params for t in study.trials[4:]}
    assert copies == {2: study.trials[2].params, 3: study.trials[3].params}


def test_a_trial_is_composed_before_its_launch_once_per_shape_of_its_overrides():
    """Composing a trial's config costs the sweeper ~0.2 s of CPU while a worker waits: numbers
    drawn for a key compose alike, so only a new string or config option is composed again."""
    assert composition_shape(["a.lr=0.0013", "b=64", "model=cnn", "c=true", "d=nan"]) == (
        "a.lr=<float>", "b=<int>", "model=cnn", "c=true", "d=nan",
    )  # fmt: skip
    sweeper = NntrainOptunaSweeper(
        sampler=None, direction="max", storage=None, study_name="s", n_trials=9, n_jobs=2,
        params=None,
    )  # fmt: skip
    composed = []
    sweeper.validate_batch_is_legal = composed.append
    trials = [
        ["lr=0.001", "model=mlp"], ["lr=0.02", "model=mlp"], ["lr=1e-5", "model=cnn"],
        ["lr=3", "model=cnn"], ["lr=0.5", "model=cnn"], ["lr=0.5", "model=nope"],
    ]  # fmt: skip
    for overrides in trials:
        sweeper.validate_once(overrides)
    assert composed == [[trials[i]] for i in (0, 2, 3, 5)]


def interrupt_at_call(number: int):
    """A stand-in for the check of a trial's overrides that is interrupted (Ctrl-C) at its
    `number`th call: after that trial was asked for, before it was launched."""
    calls = []

    def validate(overrides: list[str]) -> None:
        calls.append(overrides)
        if len(calls) == number:
            raise KeyboardInterrupt

    return validate


def test_ctrl_c_before_a_trial_is_launched_leaves_it_waiting_not_failed(tmp_path):
    """Ctrl-C between trials recorded the trial asked for next, never launched, as failed. It
    waits in the study instead (Optuna's state for a trial not run yet), and the same command
    runs it first, with the values drawn for it; the budget is the study's total."""
    launcher = FakeLauncher(job(JobStatus.COMPLETED, 0.5), job(JobStatus.COMPLETED, 0.75))
    with pytest.raises(KeyboardInterrupt):
        fake_sweep(tmp_path, launcher, n_trials=4, validate=interrupt_at_call(3))
    study = optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'fake.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.WAITING]
    assert sorted(n for _, n in launcher.calls) == [0, 1]  # trial 2 never reached it
    results = read_results(tmp_path)
    assert (results["n_trials"], results["n_failed"], results["new_trials"]) == (2, 0, [0, 1])
    waiting = study.trials[2].params["x"]

    again = FakeLauncher(*[job(JobStatus.COMPLETED, v) for v in (0, 0, 0.25, 1.0)], first=2)
    study = fake_sweep(tmp_path, again, n_trials=4)
    assert sorted(n for _, n in again.calls) == [2, 3]  # 4 in all: the 2 missing
    (first,) = [batch for batch, n in again.calls if n == 2]
    # (and its job's link to the study: the trial's id, in its environment)
    assert first == [
        ["trainer=debug", f"x={waiting!r}", "+hydra.job.env_set.NNTRAIN_SEARCH_TRIAL=3"]
    ]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert [t.value for t in study.trials] == [0.5, 0.75, 0.25, 1.0]


class InterruptedWhileSampling(optuna.samplers.RandomSampler):
    """A sampler drawing trial 2 when Ctrl-C comes (SIGINT, delivered as the terminal does)."""

    def sample_independent(self, study, trial, param_name, param_distribution):
        if trial.number == 2:
            signal.raise_signal(signal.SIGINT)
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_ctrl_c_while_optuna_draws_a_trial_leaves_no_trial_running(tmp_path):
    """study.ask stores a trial before it returns it: a Ctrl-C in between left it RUNNING in
    the stored study for ever. The interrupt waits until the trial is in hand."""
    launcher = FakeLauncher(job(JobStatus.COMPLETED, 0.5), job(JobStatus.COMPLETED, 0.75))
    sampler = f"{__name__}.InterruptedWhileSampling"
    with pytest.raises(KeyboardInterrupt):
        fake_sweep(tmp_path, launcher, n_trials=6, sampler=sampler)
    study = optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'fake.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.WAITING]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_search_without_a_monitored_metric_needs_one_named():
    """monitor=none (experiment=cifar10_speedrun): each job returned val/loss, maximized by the
    default direction, or NaN without a validation split, so every trial failed after running."""
    sweeper = NntrainOptunaSweeper(
        sampler=None, direction="maximize", storage=None, study_name=None, n_trials=2,
        n_jobs=1, params=None,
    )  # fmt: skip
    sweeper.config = OmegaConf.create({"trainer": {"early_stopping": {"monitor": "none"}}})
    with pytest.raises(HydraException) as error:
        sweeper.check_settings()
    assert str(error.value) == (
        "trainer.early_stopping.monitor=none gives the trials no objective; name the metric to "
        "optimize, e.g. hydra.sweeper.metrics=[test/acc] with hydra.sweeper.direction=maximize."
    )
    sweeper.metrics = ["test/acc"]
    sweeper.check_settings()  # a named metric is read from each trial's metrics.json


def test_a_storage_that_cannot_be_opened_is_one_sentence(tmp_path):
    """sqlite:///runs/search.db before runs/ exists was SQLAlchemy's traceback."""
    url = f"sqlite:///{tmp_path}/nowhere/search.db"
    sweeper = NntrainOptunaSweeper(
        sampler=None, direction="maximize", storage=url, study_name="s", n_trials=1, n_jobs=1,
        params=None,
    )  # fmt: skip
    sweeper.directions = ["maximize"]
    with pytest.raises(HydraException) as error:
        sweeper.open_study(optuna, None, None)
    assert str(error.value) == (
        f"hydra.sweeper.storage={url} cannot be opened (OperationalError: "
        "(sqlite3.OperationalError) unable to open database file); give an Optuna storage URL "
        "in a folder that exists, e.g. hydra.sweeper.storage=sqlite:///search.db (relative to "
        "where you run nntrain)."
    )


def test_a_search_refused_by_its_settings_leaves_no_sweep_directory(tmp_path):
    """It left outputs/multirun/<day>/<time>-<name>/ holding only its claim file."""
    done = run_nntrain(*SEARCH, "hydra.sweeper.direction=sideways", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip().startswith(
        "Error: hydra.sweeper.direction=sideways is not a direction"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_launcher_that_fails_before_any_job_ran_stops_the_search(tmp_path):
    launcher = FakeLauncher(RuntimeError("no such partition"))
    with pytest.raises(RuntimeError, match="no such partition"):
        fake_sweep(tmp_path, launcher, n_trials=4)
    study = optuna.load_study(study_name="fake", storage=f"sqlite:///{tmp_path / 'fake.db'}")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2  # none left RUNNING


# --- installation --------------------------------------------------------------------------


def test_without_optuna_the_sweeper_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    with pytest.raises(HydraException, match=r"pip install 'nntrain\[sweep\]'"):
        import_optuna()


def test_hydra_finds_the_plugin_and_starting_nntrain_does_not_import_optuna():
    probe = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "names = [c.__name__ for c in Plugins.instance().discover(Sweeper)]\n"
        "print('NntrainOptunaSweeper' in names, 'optuna' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/"
    )
    assert done.stdout.split() == ["True", "False"]


def test_a_regression_search_minimizes_the_val_loss_its_trials_return(tmp_path):
    """The default monitor, val/acc (max), does not exist for a regression: its runs follow
    val/loss (min), and direction=auto makes the study minimize what they return, also when
    the stored study is continued."""
    from tests.test_regression import planted_rows, write_rows

    write_rows(tmp_path / "prices.csv", planted_rows())
    command = (
        "-m", "hparams_search=optuna", "trainer=debug", "data=csv", "data.path=prices.csv",
        "data.target=price", "hydra.sweeper.storage=sqlite:///s.db",
        "hydra.sweeper.study_name=prices", "hydra.sweeper.params=null",
        "optimizer.lr=choice(1e-5,3e-2)",
    )  # fmt: skip
    done = run_nntrain(*command, "hydra.sweeper.n_trials=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the trials return val/loss: the search will minimize it" in done.stdout
    # the stored study continues to 6 trials, minimizing
    again = run_nntrain(*command, "hydra.sweeper.n_trials=6", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "the trials return" not in again.stdout

    study = optuna.load_study(study_name="prices", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert [t.number for t in study.trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    losses = {
        t.number: read_metrics(Path(t.user_attrs["job_dir"]))["val/loss"] for t in study.trials
    }
    assert {t.number: t.value for t in study.trials} == pytest.approx(losses)
    results = read_results(sweep_dirs(tmp_path)[1])
    assert results["direction"] == "minimize" and results["metric"] == "val/loss"
    assert results["best_value"] == pytest.approx(min(losses.values()))
    assert results["best_value"] < max(losses.values())  # lr 1e-5 barely moves the loss


def test_auto_minimizes_a_named_loss_or_error_and_maximizes_the_rest():
    assert [guessed_direction(m) for m in ("test/loss", "val/rmse", "val/mae")] == ["minimize"] * 3
    assert [guessed_direction(m) for m in ("test/acc", "val/r2")] == ["maximize"] * 2
