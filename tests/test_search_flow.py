"""An Optuna search beyond Hydra's sweepers (issue 29): pruning from inside the jobs, trials
that never wait on each other, a search that survives kill -9 of its sweeper, several sweepers
sharing one study (SQLite, PostgreSQL), and what outside tools read from the study.

The nntrain searches train the MLP on moons with trainer=debug (seconds); the others run a tiny
Hydra app written into tmp_path, whose jobs wait on each other through marker files, so that
no test depends on how fast the machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nntrain.checkpoint import load_checkpoint
from tests.conftest import read_metrics, run_nntrain, wait_until

pytest_plugins = ("tests.postgres",)

SEARCH = (
    "-m", "hparams_search=optuna", "trainer=debug", "data=moons", "trainer.report_images=false",
    "trainer.early_stopping.patience=null", "hydra.sweep.dir=sweep",
)  # fmt: skip


def study_in(sweep_dir: Path, name: str = "nntrain") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


def status(job_dir: Path) -> dict:
    return json.loads((job_dir / "status.json").read_text())


# --- pruning -----------------------------------------------------------------------------


def test_pruned_trials_stop_at_an_epoch_end_like_an_early_stop(tmp_path):
    # ThresholdPruner(upper=-1) prunes any val/acc once the warm-up (epochs < 2) is over: every trial stops
    # after epoch 2 of 5, whatever it learnt.
    done = run_nntrain(
        *SEARCH, "hydra.sweeper.n_trials=3", "trainer.max_epochs=5",
        "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.upper=-1",
        "hydra.sweeper.pruner.n_warmup_steps=2", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sweep_dir = tmp_path / "sweep"
    study = study_in(sweep_dir)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 3
    assert study.metric_names == ["val/acc"]  # optuna-dashboard's label for the objective
    for trial in study.trials:
        job_dir = Path(trial.user_attrs["job_dir"])
        assert job_dir == (sweep_dir / str(trial.number)).resolve()
        assert sorted(trial.intermediate_values) == [1, 2]  # one value per epoch, then stopped
        metrics = read_metrics(job_dir)
        assert metrics["epochs_run"] == 2 and metrics["pruned_epoch"] == 2
        assert not any(key.startswith("test/") for key in metrics)  # not tested
        assert status(job_dir)["status"] == "pruned"
        assert (job_dir / "checkpoints" / "best.pt").is_file()
        assert load_checkpoint(job_dir / "checkpoints" / "last.pt")["epoch"] == 2
        assert (
            "pruned after epoch 2: the search's pruner (ThresholdPruner"
            in (job_dir / "train.log").read_text()
        )
    assert "3 trials, 3 pruned, 0 failed" in done.stdout
    # the optuna command line lists them
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("optuna")), "trials", "--study-name", "nntrain",
         "--storage", f"sqlite:///{sweep_dir / 'optuna.db'}", "-f", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [row["state"] for row in json.loads(listed.stdout)] == ["PRUNED"] * 3


def test_a_median_pruned_search_keeps_every_epochs_value_and_tests_pruned_trials_if_asked(
    tmp_path,
):
    done = run_nntrain(
        *SEARCH, "hydra.sweeper.n_trials=4", "trainer.max_epochs=4",
        "hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.test_pruned=true", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for trial in study_in(tmp_path / "sweep").trials:
        metrics = read_metrics(Path(trial.user_attrs["job_dir"]))
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert sorted(trial.intermediate_values) == list(range(1, metrics["epochs_run"] + 1))
        assert ("pruned_epoch" in metrics) == (trial.state == TrialState.PRUNED)
        assert "test/acc" in metrics  # test_pruned=true: pruned trials are tested too


def test_a_pruner_that_cannot_work_is_one_sentence(tmp_path):
    done = run_nntrain(
        *SEARCH, "hydra/sweeper/pruner=median", "hydra.sweeper.metrics=[test/acc]", cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr == (
        "Error: hydra.sweeper.pruner needs a figure the trials have at every epoch's end, and "
        "hydra.sweeper.metrics names test/acc; search a val/ or train/ figure (e.g. val/acc, "
        "val/loss) or drop the pruner (hydra/sweeper/pruner=nop).\n"
    )
    done = run_nntrain(
        *SEARCH, "hydra/sweeper/pruner=median", "+hydra.sweeper.pruner.nope=1", cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "Error: hydra.sweeper.pruner (optuna.pruners.MedianPruner) cannot be built: TypeError: "
    )


# --- no barrier between trials -------------------------------------------------------------

APP = """
import sys, time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    markers = Path(cfg.markers)
    number = HydraConfig.get().job.num
    (markers / f"started-{number}").touch()
    if number == cfg.waits_for_job_of:  # held until a later trial has started
        deadline = time.monotonic() + 120
        while not (markers / f"started-{cfg.waits_for}").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"trial {cfg.waits_for} never started")
            time.sleep(0.05)
    time.sleep(cfg.sleep_s)
    return cfg.x


if __name__ == "__main__":
    main()
"""

CONFIG = """
defaults:
  - override hydra/sweeper: nntrain_optuna
x: 0.5
markers: .
waits_for_job_of: -1
waits_for: -1
sleep_s: 0.0
hydra:
  sweeper:
    direction: minimize
    n_trials: 4
    n_jobs: 1
    heartbeat_interval: 1
    params:
      x: interval(0, 1)
"""


def write_app(folder: Path) -> None:
    (folder / "conf").mkdir(parents=True, exist_ok=True)
    (folder / "conf" / "config.yaml").write_text(textwrap.dedent(CONFIG))
    (folder / "app.py").write_text(APP)


def app_command(folder: Path, *args: str) -> list[str]:
    return [sys.executable, str(folder / "app.py"), "-m", f"markers={folder}", *args]


def test_a_new_trial_starts_while_an_earlier_one_still_runs(tmp_path):
    # Trial 0 waits until trial 2 has started: with batches of n_jobs=2 (Hydra's sweepers)
    # trial 2 would wait for trial 0, and trial 0 would fail after 2 minutes.
    write_app(tmp_path)
    done = subprocess.run(
        app_command(
            tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2", "waits_for_job_of=0", "waits_for=2",
            "hydra.sweep.dir=sweep",
        ),
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    trials = study_in(tmp_path / "sweep").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert trials[2].datetime_start < trials[0].datetime_complete


# --- a search survives its own death ---------------------------------------------------------


def start(command: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def test_a_search_killed_with_sigkill_continues_and_resumes_its_trial_from_last_pt(tmp_path):
    nntrain = str(Path(sys.executable).with_name("nntrain"))
    command = [
        nntrain, *SEARCH, "hydra.sweeper.n_trials=2", "hydra.sweeper.params=null",
        "optimizer.lr=choice(1e-2,3e-2)", "trainer.max_epochs=150",
        "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3",
    ]  # fmt: skip
    sweeper = start(command, tmp_path)
    first = tmp_path / "sweep" / "0"
    wait_until(lambda: (first / "checkpoints" / "last.pt").is_file(), sweeper)
    os.killpg(sweeper.pid, signal.SIGKILL)  # the sweeper and its job (in its process)
    sweeper.communicate()
    killed_at = load_checkpoint(first / "checkpoints" / "last.pt")["epoch"]
    assert killed_at < 150

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "stopped beating (their job or sweeper died)" in again.stdout
    study = study_in(tmp_path / "sweep")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 2 and TrialState.RUNNING not in states
    assert states.count(TrialState.FAIL) == 1 and TrialState.WAITING not in states
    (retried,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert retried.state == TrialState.COMPLETE and retried.params == study.trials[0].params
    assert Path(retried.user_attrs["job_dir"]) == first.resolve()  # in its own directory
    log = (first / "train.log").read_text()
    assert f"resumed at epoch {killed_at + 1}" in log
    # its epochs were not trained twice: as many optimizer steps as a run of the same length
    (other,) = [t for t in study.trials if t.state == TrialState.COMPLETE and t != retried]
    other_steps = load_checkpoint(Path(other.user_attrs["job_dir"]) / "checkpoints" / "last.pt")
    assert load_checkpoint(first / "checkpoints" / "last.pt")["step"] == other_steps["step"]
    assert read_metrics(first)["epochs_run"] == 150
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.name.isdigit()) == [
        "0",
        str(other.number),
    ]


# --- several sweepers, one study ----------------------------------------------------------------


def two_sweepers_share_a_study(tmp_path: Path, *storage: str) -> optuna.Study:
    """Two sweeper processes with the same command (and sweep dir) and one study: the second
    starts once the first has made the study, as from a second shell."""
    write_app(tmp_path)
    command = app_command(
        tmp_path, "hydra.sweep.dir=sweep", "hydra.sweeper.n_trials=6", "sleep_s=0.5",
        "hydra.sweeper.study_name=shared", *storage,
    )  # fmt: skip
    first = start(command, tmp_path)
    wait_until(lambda: (tmp_path / "sweep" / "0").is_dir(), first)
    second = start(command, tmp_path)
    for sweeper in (first, second):
        _, err = sweeper.communicate(timeout=300)
        assert sweeper.returncode == 0, err
    url = storage[0].split("=", 1)[1] if storage else f"sqlite:///{tmp_path / 'sweep/optuna.db'}"
    return optuna.load_study(study_name="shared", storage=url)


def check_shared(study: optuna.Study, sweep_dir: Path) -> None:
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.WAITING) for t in study.trials)
    dirs = {t.user_attrs["job_dir"] for t in finished}
    assert len(dirs) == 6 and all(Path(d).parent == sweep_dir.resolve() for d in dirs)


def test_two_sweepers_on_one_sqlite_study_finish_exactly_n_trials(tmp_path):
    check_shared(two_sweepers_share_a_study(tmp_path), tmp_path / "sweep")


def test_two_sweepers_on_one_postgresql_study_finish_exactly_n_trials(
    tmp_path, fresh_postgres_database
):
    storage = f"hydra.sweeper.storage={fresh_postgres_database}"
    check_shared(two_sweepers_share_a_study(tmp_path, storage), tmp_path / "sweep")


def test_ctrl_c_in_a_trial_then_the_same_command_resumes_it_from_last_pt(tmp_path):
    command = [
        str(Path(sys.executable).with_name("nntrain")), *SEARCH, "hydra.sweeper.n_trials=1",
        "trainer.max_epochs=100",
    ]  # fmt: skip
    sweeper = start(command, tmp_path)
    job = tmp_path / "sweep" / "0"
    wait_until(lambda: (job / "checkpoints" / "last.pt").is_file(), sweeper)
    os.killpg(sweeper.pid, signal.SIGINT)  # as the terminal sends it
    _, err = sweeper.communicate(timeout=300)
    assert sweeper.returncode != 0 and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            "continue the search with the same command and hydra.sweep.dir (or storage): this "
            "trial runs again first, from its last.pt"
        )
    )
    stopped_at = load_checkpoint(job / "checkpoints" / "last.pt")["epoch"]

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = study_in(tmp_path / "sweep").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params
    assert f"resumed at epoch {stopped_at + 1}" in (job / "train.log").read_text()
    assert read_metrics(job)["epochs_run"] == 100
