"""DDP with torchrun: 2 processes on the CPU (gloo), as a user starts them."""

import subprocess
import sys
from pathlib import Path

import torch

from nntrain.checkpoint import load_checkpoint
from tests.conftest import read_metrics


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "nntrain",
        *args,
    ]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def test_two_ranks_train_in_one_run_dir_with_identical_weights(tmp_path):
    done = torchrun(
        "trainer=debug", "trainer.max_epochs=3", "trainer.checkpoint.every_n_steps=2", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs  # both ranks wrote into rank 0's run dir
    run_dir = runs[0]
    assert run_dir.name.endswith("-mlp-digits")  # named like a run without torchrun
    log = (run_dir / "train.log").read_text()
    # checked by all-gathering a checksum of every parameter and buffer at the end
    assert "weights identical on all 2 ranks" in log
    assert log.count("] epoch  train/loss") == 1 and log.count("]   1/3 ") == 1  # rank 1 is quiet
    metrics = read_metrics(run_dir)
    assert metrics["epochs_run"] == 3
    # each rank trains on half of each epoch: 5 batches of 64 per rank, 3 epochs
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 15
    assert "nntrain: run summary" in done.stdout and done.stdout.count("nntrain: run summary") == 1

    resumed = torchrun(f"resume={run_dir}", "trainer.max_epochs=4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run_dir / "train.log").read_text().count("weights identical on all 2 ranks") == 2
    assert read_metrics(run_dir)["epochs_run"] == 4
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 20
    assert torch.isfinite(torch.tensor(read_metrics(run_dir)["test/loss"]))


def test_sync_batchnorm_on_cpu_ranks_is_one_clear_sentence(tmp_path):
    # PyTorch's SyncBatchNorm exists only for CUDA
    refused = torchrun("trainer=debug", "trainer.sync_batchnorm=true", cwd=tmp_path)
    assert refused.returncode != 0
    message = (
        "Error: trainer.sync_batchnorm=true needs CUDA devices (PyTorch's SyncBatchNorm has no "
        "CPU implementation); leave it off on CPU."
    )
    assert message in refused.stderr


def test_unfreezing_a_backbone_mid_run_keeps_the_ranks_identical(tmp_path):
    # DDP reduces only the parameters that were trainable when it was built; the Trainer
    # rebuilds it when a model's on_epoch_start changes that set (before, ranks drifted apart).
    done = torchrun(
        "trainer=debug", "trainer.limit_train_batches=2", "model=resnet18",
        "model.freeze_backbone=true", "model.unfreeze_at_epoch=2", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    log = (run_dir / "train.log").read_text()
    assert "backbone unfrozen: trainable 11,301,578 / total 11,301,578 parameters" in log
    assert "weights identical on all 2 ranks" in log
