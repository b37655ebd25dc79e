"""Parallel jobs (joblib) and clusters (submitit): what can be checked without GPUs or SLURM."""

import csv

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
    assert (
        "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
        in launcher
    )
    assert (
        "partition: gpu" in launcher and "nodes: 2" in launcher and "gpus_per_node: 1" in launcher
    )
    assert "timeout_min: 240" in launcher


def test_multirun_with_cfg_is_a_one_line_error(tmp_path):
    done = run_nntrain("-m", "--cfg", "job", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error: Only one of --run, --multirun")
    assert "Traceback" not in done.stderr
