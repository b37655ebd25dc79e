"""Parallel jobs (joblib) and clusters (submitit): what can be checked without GPUs or SLURM."""

import csv
import re

from nntrain.commands.train import device_for_job
from tests.conftest import run_nntrain


def test_parallel_jobs_spread_over_the_gpus():
    assert [device_for_job("auto", n, cuda_devices=4) for n in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"
    ]  # fmt: skip
    assert device_for_job("auto", 3, cuda_devices=1) == "auto"  # one GPU: every job uses it
    assert device_for_job("auto", 3, cuda_devices=0) == "auto"  # CPU
    assert device_for_job("cuda:1", 3, cuda_devices=4) == "cuda:1"  # an explicit choice wins


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    done = run_nntrain(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer=debug", "optimizer.lr=1e-3,3e-3",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    with (sweep / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all((sweep / str(job) / "checkpoints" / "best.pt").is_file() for job in (0, 1))
    # The two jobs' lines interleave on one terminal: each says whose it is, within 80 columns.
    rows = [line for line in done.stdout.splitlines() if re.search(r"\b[12]/2 ", line)]
    assert len(rows) == 4, done.stdout
    assert sorted(row.split(" | ")[0] for row in rows) == ["job 0"] * 2 + ["job 1"] * 2
    assert all(len(row) <= 80 for row in rows), rows
    assert sum(line.startswith("job 0 | epoch ") for line in done.stdout.splitlines()) == 1
    assert "job 0 | " not in (sweep / "0" / "train.log").read_text()  # its own file needs none


def test_slurm_launcher_config_composes(tmp_path):
    done = run_nntrain(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.nodes=2",
        "--cfg",
        "hydra",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    launcher = done.stdout.split("  launcher:\n", 1)[1]
    assert "_target_: hydra_plugins.nntrain_slurm_launcher.slurm_launcher.SlurmLauncher" in launcher
    assert "partition: gpu" in launcher and "nodes: 2" in launcher
    # asks for nothing a small CPU partition lacks, unless the user sets it
    assert "gpus_per_node: null" in launcher and "mem_gb: null" in launcher
    assert "cpus_per_task: null" in launcher
    assert "timeout_min: 240" in launcher and "max_num_timeout: 3" in launcher


def test_multirun_with_cfg_is_a_one_line_error(tmp_path):
    done = run_nntrain("-m", "--cfg", "job", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error: Only one of --run, --multirun")
    assert "Traceback" not in done.stderr


# --- hydra/launcher=slurm without a cluster (tests/test_slurm.py runs it on one) ---------------


def make_sweep(sweep_dir, statuses):
    """Job dirs 0, 1, ... as a sweep leaves them: overrides, status.json, a last.pt."""
    import json

    for number, status in enumerate(statuses):
        job = sweep_dir / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={number + 1}e-3\n")
        (job / "checkpoints").mkdir()
        (job / "checkpoints" / "last.pt").write_bytes(b"saved")
        if status:
            (job / "status.json").write_text(json.dumps({"status": status}))


def test_resume_of_a_sweep_takes_its_unfinished_jobs_back_to_the_slurm_launcher(tmp_path):
    from hydra_plugins.nntrain_slurm_launcher.slurm_launcher import with_own_overrides
    from nntrain.launch.resume_command_line import rewrite_argv

    sweep_dir = tmp_path / "sweep"
    make_sweep(sweep_dir, ["ok", "interrupted", None])  # job 2 was killed before status.json
    argv = rewrite_argv(["-m", "hydra/launcher=slurm", f"resume={sweep_dir}", "seed=3"])
    assert argv == [
        "-m", "hydra/launcher=slurm", "seed=3",
        f"resume='{sweep_dir / '1'}','{sweep_dir / '2'}'", f"hydra.sweep.dir='{sweep_dir}'",
    ]  # fmt: skip
    # each job (as the sweeper hands it over) gets back its own overrides, directory, last.pt
    assert with_own_overrides(["seed=3", f"resume={sweep_dir / '1'}"]) == [
        "optimizer.lr=2e-3", "seed=3", f"resume='{sweep_dir / '1' / 'checkpoints' / 'last.pt'}'",
        "hydra.sweep.subdir='1'",
    ]  # fmt: skip
    assert with_own_overrides(["seed=3"]) == ["seed=3"]  # a job of a new sweep: as it is


def test_resume_of_a_sweep_is_refused_in_one_sentence_when_it_cannot_work(tmp_path):
    import pytest

    from nntrain.errors import UserError
    from nntrain.launch.resume_command_line import rewrite_argv

    sweep_dir = tmp_path / "sweep"
    make_sweep(sweep_dir, ["ok", "ok"])
    with pytest.raises(UserError, match=r"every job of .*sweep finished; nothing to resume\.$"):
        rewrite_argv(["-m", "hydra/launcher=slurm", f"resume={sweep_dir}"])
    with pytest.raises(UserError, match=r"needs hydra/launcher=slurm .* nntrain resume="):
        rewrite_argv(["-m", f"resume={sweep_dir / '0'}"])
    with pytest.raises(UserError) as error:  # it said: <cwd>/latest is not a directory
        rewrite_argv(["-m", "hydra/launcher=slurm", "resume=latest"])
    assert str(error.value) == (
        "resume=latest continues one run, without -m: nntrain resume=latest; in a sweep (-m) "
        "resume= takes a job directory or a sweep directory."
    )


def test_sbatch_refusals_become_one_sentence():
    from hydra_plugins.nntrain_slurm_launcher.slurm_launcher import describe_refusal

    stderr = (
        "sbatch: error: Memory specification can not be satisfied\n"
        "sbatch: error: Batch job submission failed: Requested node configuration is not available"
    )
    assert describe_refusal(stderr).startswith(
        "SLURM refused the jobs: Memory specification can not be satisfied; ask for what the "
        "cluster has (hydra.launcher.partition=..., mem_gb=..."
    )
    only = "sbatch: error: Batch job submission failed: Invalid account or account/partition"
    assert describe_refusal(only).startswith(
        "SLURM refused the jobs: Invalid account or account/partition; ask for"
    )


def test_the_tasks_of_an_srun_step_become_torchrun_ranks(monkeypatch):
    from nntrain.training import distributed

    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        # setenv first: monkeypatch then restores these keys' absence after the test (a bare
        # delenv of an absent key records nothing, and the ranks set below leaked into every
        # later nntrain process of this test worker, which waited for its peers at gpu07).
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu[07-08],cpu1")
    assert distributed.under_srun() and distributed.launched_by_torchrun()
    distributed.torchrun_env_from_slurm()
    import os

    assert {k: os.environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR")} == {
        "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "gpu07"
    }  # fmt: skip
    assert os.environ["MASTER_PORT"] == str(20000 + 123456 % 20000)
    assert not distributed.under_srun()  # torchrun's variables now say it
    assert distributed.first_host("node3") == "node3"
    assert distributed.first_host("n[1,4-5]") == "n1"


def test_ctrl_c_in_a_parallel_sweep_lets_every_running_job_save(tmp_path):
    """The terminal's SIGINT reaches the main process and every joblib worker. joblib killed the
    workers as soon as the main process or the first job stopped, so a slower job died in its
    save (no status.json, no resume line, a cut-short temporary). Now each job saves and says
    how to resume it, and the sweep's table lists both."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    args = [
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep",
        "data=moons", "trainer.device=cpu", "trainer.report_images=false",
        "trainer.max_epochs=10000", "trainer.early_stopping.patience=null",
        "model.hidden=[8],[1024,1024]",  # job 1 takes longer to stop and save
    ]  # fmt: skip
    nntrain = str(Path(sys.executable).with_name("nntrain"))
    process = subprocess.Popen(
        [nntrain, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # its own process group, as a terminal's command
    )  # fmt: skip
    sweep = tmp_path / "sweep"
    deadline = time.monotonic() + 180
    while not all((sweep / job / "checkpoints" / "last.pt").is_file() for job in "01"):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole process group
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    for job in "01":
        status = json.loads((sweep / job / "status.json").read_text())
        assert status["status"] == "interrupted", status
        assert status["error"].endswith(f"resume with: nntrain resume={sweep / job}")
        assert sorted(p.name for p in (sweep / job / "checkpoints").iterdir()) == [
            "best.pt", "last.pt"
        ]  # fmt: skip
        assert f"nntrain resume=sweep/{job}" in stderr
    with (sweep / "summary.csv").open() as file:
        assert [r["status"] for r in csv.DictReader(file)] == ["interrupted", "interrupted"]
    assert "SIGINT: waiting for the running jobs (0, 1) to save their last.pt" in stderr
    assert stderr.strip().splitlines()[-1] == "Error: interrupted by SIGINT."


def test_the_first_ctrl_c_waits_for_the_running_jobs_and_a_second_one_does_not(tmp_path):
    import threading
    import time

    import pytest

    from nntrain.commands.parallel_jobs import WaitForRunningJobs

    for job in ("0", "1"):
        (tmp_path / job / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / "status.json").write_text("{}")  # job 0 had ended; job 1 runs
    handler = WaitForRunningJobs(tmp_path)
    threading.Timer(0.3, (tmp_path / "1" / "status.json").write_text, ["{}"]).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        handler(2, None)
    assert (tmp_path / "1" / "status.json").is_file() and time.monotonic() - started >= 0.3
    (tmp_path / "2" / ".hydra").mkdir(parents=True)  # a job that has not ended
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        handler(2, None)  # pressed again while waiting (a nested call): no wait at all
    # Waiting would last until job 2 ends (never, here) or 600 s pass: a bound far below that
    # proves there was none, and holds on a busy machine (0.1 s raced with the load).
    assert time.monotonic() - started < 10
