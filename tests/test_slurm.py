"""hydra/launcher=slurm on a real SLURM cluster: sweeps, SIGTERM, time limits, DDP over srun,
jobs that cannot start; and scripts/slurm_local.sh's down and up.

Run with a cluster up (a single-node one on this machine: docs/pages/clusters.md):

    bash scripts/slurm_local.sh up && pytest -m slurm

They take a few minutes (SLURM schedules, requeues and polls in seconds), so a plain `pytest`
skips them, as it does where no cluster answers. The runs are tiny (digits, CPU). The tests of down and up come first in this file (pytest runs
a file in order, on one worker), so that every other test runs after a down/up cycle; they run
only on the cluster slurm_local.sh made (its slurm.conf says so), never on a real one.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nntrain.checkpoint import load_checkpoint
from tests.conftest import read_metrics, run_nntrain, wait_until

pytestmark = pytest.mark.slurm

SMALL = ("trainer=debug", "trainer.report_images=false", "trainer.early_stopping.patience=null")
ROOT = Path(__file__).resolve().parent.parent
SLURM_LOCAL = ROOT / "scripts" / "slurm_local.sh"


def cluster_answers() -> str | None:
    """Why the tests cannot run here, or None."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo missing): bash scripts/slurm_local.sh up"
    try:
        done = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "SLURM does not answer (sinfo timed out): bash scripts/slurm_local.sh up"
    if done.returncode != 0 or not done.stdout.strip():
        return "SLURM does not answer (sinfo failed): bash scripts/slurm_local.sh up"
    return None


@pytest.fixture(autouse=True)
def slurm_cluster(request):
    if "slurm" not in (request.config.getoption("-m") or ""):
        pytest.skip("SLURM tests run with: pytest -m slurm (they take minutes)")
    reason = cluster_answers()
    if reason:
        skip_unless_required(reason)


def skip_unless_required(reason: str) -> None:
    """Skip; but where a skip would hide that nothing ran (CI sets NNTRAIN_SLURM_REQUIRED=1,
    .ci/run), fail."""
    if os.environ.get("NNTRAIN_SLURM_REQUIRED") == "1":
        pytest.fail(f"NNTRAIN_SLURM_REQUIRED=1, yet {reason}")
    pytest.skip(reason)


def sweep(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_nntrain(
        "-m", "hydra/launcher=slurm", *args, "hydra.sweep.dir=sweep", cwd=cwd, timeout=timeout
    )


def summary(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "summary.csv").open() as file:
        return list(csv.DictReader(file))


def status(job_dir: Path) -> dict:
    return json.loads((job_dir / "status.json").read_text())


def squeue_ids(name: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


# --- scripts/slurm_local.sh: down and up (first: the tests below run after these cycles) -----


def slurm_local(action: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The local cluster's script, as a user runs it (a generous limit: down waits up to 30 s
    per daemon, up up to 120 s for the node on a busy machine)."""
    return subprocess.run(
        ["bash", str(SLURM_LOCAL), action],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def local_cluster():
    """Skips unless the cluster is slurm_local.sh's own (and we may stop it: root); brings it
    back up whatever the test did."""
    conf = Path("/etc/slurm/slurm.conf")
    if not (conf.is_file() and conf.read_text().startswith("# Written by nntrain's")):
        skip_unless_required(
            "not the cluster scripts/slurm_local.sh made: down/up is not tried on it"
        )
    if os.geteuid() != 0:
        skip_unless_required("scripts/slurm_local.sh needs root")
    yield
    up = slurm_local("up")
    assert up.returncode == 0, up.stderr


def node_state() -> str:
    return subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=60
    ).stdout.strip()


def test_down_then_up_twice_ends_with_a_responding_node_each_time(local_cluster, tmp_path):
    for _ in range(2):
        down = slurm_local("down")
        assert down.returncode == 0, down.stderr
        assert down.stdout.splitlines()[-1].endswith("every daemon has exited")
        for daemon in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            alive = subprocess.run(["ps", "-C", daemon, "-o", "stat="], capture_output=True)
            assert all(s.startswith("Z") for s in alive.stdout.decode().split()), daemon
        up = slurm_local("up")
        assert up.returncode == 0, up.stderr
        assert re.fullmatch(
            r"slurm_local: up in \d+ s: node \S+ idle in partition local, a test job ran "
            r"\(sinfo, squeue, sacct work; stop with: bash \S+ down\)",
            up.stdout.splitlines()[-1],
        ), up.stdout
        assert node_state() == "idle"  # not idle*: it answers
        # and runs a job to its end
        job = subprocess.run(
            ["srun", "-t", "1", "-J", "nntrain-test-job", "echo", "ran"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert (job.returncode, job.stdout) == (0, "ran\n"), job.stderr


def fake_program(folder: Path, name: str, script: str) -> dict:
    """An environment whose PATH finds a stand-in for `name` first: a broken install."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{script}\n")
    (folder / name).chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}", "SLURM_LOCAL_WAIT_S": "10"}


def test_up_on_a_broken_install_fails_in_one_sentence(local_cluster, tmp_path):
    assert slurm_local("down").returncode == 0
    refusing = fake_program(
        tmp_path / "bin", "slurmd", "echo 'slurmd: fatal: stand-in' >&2; exit 1"
    )
    up = slurm_local("up", env=refusing)
    assert up.returncode == 1
    assert up.stderr == (
        "slurm_local: up failed: slurmd did not start (exit 1); last error in "
        "/var/log/slurm/slurmd.out: slurmd: fatal: stand-in.\n"
    )
    # a slurmd that returns as if it had started, and does not run: the node never answers
    silent = fake_program(tmp_path / "bin", "slurmd", "exit 0")
    up = slurm_local("up", env=silent)
    assert up.returncode == 1
    assert re.fullmatch(
        r"slurm_local: up failed: the node \S+ is \S+ after 10 s: not (idle|responding \(the \* "
        r"means slurmd does not answer the controller\)), and slurmd is not running; [^\n]+\.\n",
        up.stderr,
    ), up.stderr
    assert "Traceback" not in up.stderr and "up in" not in up.stdout
    # the fixture's up (the real slurmd) brings the node back


# --- the launcher ------------------------------------------------------------------------


def test_a_two_job_sweep_runs_every_job_and_writes_the_summary(tmp_path):
    done = sweep(*SMALL, "optimizer.lr=1e-3,3e-3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = summary(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "checkpoints" / "best.pt").is_file()
        assert read_metrics(tmp_path / "sweep" / job)["epochs_run"] == 2


def test_sbatch_refusing_the_jobs_is_one_sentence(tmp_path):
    done = sweep(*SMALL, "hydra.launcher.partition=no_such_partition", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: SLURM refused the jobs: invalid partition specified: no_such_partition; ask for "
        "what the cluster has (hydra.launcher.partition=..., mem_gb=..., gpus_per_node=..., "
        "cpus_per_task=...; `sinfo -o '%P %c %m %G'` lists the partitions' CPUs, memory and "
        "GPUs)."
    )


def test_a_job_stopped_by_sigterm_leaves_the_sweep_going_and_resumes_through_the_launcher(
    tmp_path,
):
    name = f"nntrain-term-{time.time_ns()}"
    command = [
        "-m", "hydra/launcher=slurm", f"hydra.launcher.name={name}", *SMALL,
        "trainer.max_epochs=2,300", "hydra.sweep.dir=sweep",
    ]  # fmt: skip
    background = start_nntrain(command, tmp_path)
    long_job = tmp_path / "sweep" / "1"
    wait_until(lambda: (long_job / "checkpoints" / "last.pt").is_file(), background, every_s=0.5)
    (array_id,) = {i.split("_")[0] for i in squeue_ids(name)}
    subprocess.run(["scancel", "--signal=TERM", f"{array_id}_1"], check=True)
    _, err = background.communicate(timeout=300)
    assert background.returncode == 1, err[-3000:]  # a job did not finish: scripts see it
    assert "Traceback" not in err
    rows = summary(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["ok", "interrupted"]
    assert f"resume with: nntrain -m hydra/launcher=slurm resume={long_job}" in rows[1]["error"]
    assert "continue them with: nntrain -m hydra/launcher=slurm resume=sweep." in err
    stopped = load_checkpoint(long_job / "checkpoints" / "last.pt")
    stopped_at = stopped["step"]
    # The job may save a few epochs between the check above and the signal (an idle machine
    # runs one in well under a second): the resumed run goes two epochs past where it stopped.
    epochs = stopped["epoch"] + 2

    # Every unfinished job of the sweep, with its own overrides (300 epochs: cut here)
    resumed = run_nntrain(
        "-m", "hydra/launcher=slurm", "resume=sweep", f"trainer.max_epochs={epochs}",
        cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["status"] for r in summary(tmp_path / "sweep")] == ["ok", "ok"]
    log = (long_job / "train.log").read_text()
    assert f"optimizer step {stopped_at}" in log.split("resumed at", 1)[1].splitlines()[0]
    assert read_metrics(long_job)["epochs_run"] == epochs


def test_a_job_warned_before_its_time_limit_is_requeued_and_ends_as_an_uninterrupted_run(
    tmp_path,
):
    # SLURM warns a job signal_delay_s before its time limit with SIGUSR2 to its steps (submitit
    # asks sbatch for --signal=USR2@signal_delay_s): nntrain saves last.pt, submitit requeues
    # the job, and it continues from last.pt. The test sends that signal itself once the job
    # has saved an epoch (scancel --signal=USR2, what SLURM's timer does), so that neither an
    # idle machine (the run ends before SLURM's 60 s timer fires) nor a busy one decides
    # whether the warning comes. With timeout_min=10 submitit counts it as a time-out (any
    # warning in the last 10 minutes of a job is one), so it is requeued as after a time limit.
    name = f"nntrain-limit-{time.time_ns()}"
    deterministic = (*SMALL, "trainer.deterministic=true", "trainer.max_epochs=600")
    reference = start_nntrain([*deterministic, "hydra.run.dir=reference"], tmp_path)
    command = [
        "-m", "hydra/launcher=slurm", f"hydra.launcher.name={name}",
        "hydra.launcher.timeout_min=10", "hydra.launcher.max_num_timeout=3", *deterministic,
        "hydra.sweep.dir=sweep",
    ]  # fmt: skip
    background = start_nntrain(command, tmp_path)
    job = tmp_path / "sweep" / "0"
    wait_until(lambda: (job / "checkpoints" / "last.pt").is_file(), background)
    (job_id,) = squeue_ids(name)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    _, err = background.communicate(timeout=900)
    assert background.returncode == 0, err[-3000:]
    log = (job / "train.log").read_text()
    assert "interrupted by SIGUSR2" in log and "resumed at epoch" in log
    assert "this job is timed-out" in log  # submitit's words: requeued as after a time limit
    assert status(job)["status"] == "ok"
    (script,) = (tmp_path / "sweep" / ".submitit").glob("*/*_submission.sh")
    assert "#SBATCH --signal=USR2@120\n" in script.read_text()  # SLURM's own timer, asked for
    _, err = reference.communicate(timeout=900)
    assert reference.returncode == 0, err[-3000:]
    requeued = load_checkpoint(job / "checkpoints" / "last.pt")
    uninterrupted = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    assert requeued["step"] == uninterrupted["step"] == 3000
    for key, value in uninterrupted["model"].items():
        assert torch.equal(requeued["model"][key], value), key


def test_a_search_keeps_two_trials_in_flight_and_its_jobs_report_to_the_study(tmp_path):
    # Every trial is pruned after its second epoch (ThresholdPruner(upper=-1)): the jobs, on
    # the cluster, reached the study (SQLite in the sweep dir) at each epoch's end.
    import optuna

    done = run_nntrain(
        "-m", "hparams_search=optuna", "hydra/launcher=slurm", *SMALL,
        "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", "trainer.max_epochs=4",
        "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.upper=-1",
        "hydra.sweeper.pruner.n_warmup_steps=2", "hydra.sweep.dir=sweep",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    storage = f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    trials = optuna.load_study(study_name="nntrain", storage=storage).trials
    assert [t.state.name for t in trials] == ["PRUNED"] * 3
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    # two at once from the start (the config says what the trials return: no trial alone)
    assert trials[1].datetime_start < trials[0].datetime_complete
    assert [r["status"] for r in summary(tmp_path / "sweep")] == ["pruned"] * 3


def test_two_tasks_of_one_job_train_one_ddp_run(tmp_path):
    done = sweep(*SMALL, "hydra.launcher.tasks_per_node=2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (job,) = [d for d in (tmp_path / "sweep").iterdir() if (d / ".hydra").is_dir()]
    log = (job / "train.log").read_text()
    assert "weights identical on all 2 ranks" in log
    # each rank trains on its half: 5 batches per rank per epoch (trainer=debug), 2 epochs
    assert load_checkpoint(job / "checkpoints" / "last.pt")["step"] == 10
    assert status(job)["status"] == "ok"


def test_a_sweep_whose_jobs_cannot_start_says_why_and_ctrl_c_cancels_them(tmp_path):
    # --begin=now+1hour holds the jobs pending (SLURM's reason: BeginTime)
    name = f"nntrain-pending-{time.time_ns()}"
    command = [
        "-m", "hydra/launcher=slurm", f"hydra.launcher.name={name}", *SMALL,
        "+hydra.launcher.additional_parameters.begin=now+1hour",
        "hydra.launcher.pending_report_s=2", "optimizer.lr=1e-3,3e-3", "hydra.sweep.dir=sweep",
    ]  # fmt: skip
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        sweep_process = subprocess.Popen(
            [str(Path(sys.executable).with_name("nntrain")), *command],
            cwd=tmp_path, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    try:
        # (the first line may come before the scheduler has looked at the jobs: reason None)
        said = lambda: "BeginTime" in out.read_text() + err.read_text()  # noqa: E731
        wait_until(said, sweep_process, every_s=0.5)
        (array_id,) = {i.split("_")[0] for i in squeue_ids(name)}
        line = next(
            line for line in (out.read_text() + err.read_text()).splitlines() if "BeginTime" in line
        )
        assert re.search(
            r"SLURM jobs after \d+ s: 2 pending: BeginTime \(not before its start time: --begin, "
            rf"or a requeued job's delay\); cancel them with: scancel {array_id}$",
            line,
        ), line
        sweep_process.send_signal(signal.SIGINT)  # Ctrl-C
        assert sweep_process.wait(timeout=120) == 130
    finally:
        sweep_process.kill()
    assert err.read_text().strip().splitlines()[-1] == (
        f"Error: interrupted: cancelled the sweep's SLURM jobs (scancel {array_id}); continue "
        "the sweep with: nntrain -m hydra/launcher=slurm resume=sweep"
    )
    assert "Traceback" not in err.read_text()
    assert squeue_ids(name) == []
    # The sweep is resumable: both jobs (they never ran) run now, with their own overrides
    resumed = run_nntrain("-m", "hydra/launcher=slurm", "resume=sweep", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = summary(tmp_path / "sweep")
    assert [(r["status"], r["epochs"]) for r in rows] == [("ok", "2"), ("ok", "2")]
    assert [r["overrides"].split()[-1] for r in rows] == [
        "optimizer.lr=0.001",
        "optimizer.lr=0.003",
    ]


def start_nntrain(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("nntrain")), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
