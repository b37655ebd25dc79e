"""DDP with torchrun: 2 processes on the CPU (gloo), as a user starts them."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
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


# Two torchrun "nodes" on this machine (c10d rendezvous on 127.0.0.1), each in its own session
# so that a signal reaches one node only; validation-heavy (one training batch per epoch, the
# whole validation split in batches of 8), so that a random moment often falls in validation.
TWO_NODE_RUN = (
    "trainer=debug", "trainer.max_epochs=1000", "trainer.early_stopping.patience=null",
    "trainer.limit_train_batches=1", "trainer.limit_val_batches=1.0", "data.batch_size=8",
    "trainer.report_images=false", "hydra.run.dir=run",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_two_nodes(*args: str, cwd: Path) -> list[subprocess.Popen]:
    """Two torchrun agents on this machine. Node 0 hosts the rendezvous store (is_host): left
    to a race, node 1 sometimes hosted it, and a signal that ended node 1 first took the store
    from node 0's agent before it could report its worker's exit (RendezvousConnectionError)."""
    endpoint = f"127.0.0.1:{free_port()}"
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "stdin": subprocess.DEVNULL}
    nodes = []
    for is_host in ("true", "false"):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
            "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", f"--rdzv_conf=is_host={is_host}",
            "-m", "nntrain", *args,
        ]  # fmt: skip
        nodes.append(subprocess.Popen(command, cwd=cwd, text=True, start_new_session=True, **pipes))
    return nodes


def wait_for(path: Path, nodes: list[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert all(node.poll() is None for node in nodes), [n.communicate() for n in nodes]
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.1)


def worker_of(agent: subprocess.Popen) -> int:
    """The training process torchrun's agent started (its one child)."""
    children = Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_sigterm_to_one_node_stops_both_at_the_same_step(tmp_path):
    nodes = start_two_nodes(*TWO_NODE_RUN, cwd=tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    wait_for(last, nodes)
    delay = random.uniform(0, 1.5)  # into training or validation of a later epoch
    time.sleep(delay)
    nodes[1].send_signal(signal.SIGTERM)  # its agent passes it on to its worker
    outputs = [node.communicate(timeout=120) for node in nodes]
    first_err = outputs[0][1]
    assert "exitcode  : 143" in first_err, (delay, first_err[-3000:])  # rank 0 stopped too
    assert "Connection closed" not in first_err + outputs[1][1]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "interrupted", (delay, status)
    assert status["error"].startswith("interrupted by SIGTERM at step ")
    step = int(status["error"].rsplit(" ", 1)[1])
    assert load_checkpoint(last)["step"] == step  # saved at the step both stopped at
    said = [err.count("Error: interrupted by SIGTERM") for _, err in outputs]
    assert said == [1, 0], said  # rank 0 says it once (its node's log), rank 1 stays quiet


def test_a_frozen_peer_ends_the_job_with_one_sentence_within_the_timeout(tmp_path):
    nodes = start_two_nodes(*TWO_NODE_RUN, "trainer.dist_timeout_s=5", cwd=tmp_path)
    wait_for(tmp_path / "run" / "checkpoints" / "last.pt", nodes)
    frozen = worker_of(nodes[1])
    os.kill(frozen, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        _, err = nodes[0].communicate(timeout=90)
        took = time.monotonic() - stopped
    finally:
        os.kill(frozen, signal.SIGKILL)
        os.killpg(nodes[1].pid, signal.SIGKILL)
        nodes[1].communicate()
    sentence = (
        "Error: rank 0: rank 1 stopped answering: no reply within trainer.dist_timeout_s=5 s (a "
        "frozen or suspended process, or a stuck node); the job stops here: continue it from its "
        "last saved step with resume=run."
    )
    assert sentence in err, err[-3000:]
    assert took < 5 + 20, took  # the timeout, and torchrun's agent ending the worker
    worker_part = err.split("torch/distributed/elastic/")[0]  # before torchrun's own report
    assert "Traceback" not in worker_part and worker_part.count("Error:") == 1
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and "rank 1 stopped answering" in status["error"]


# nntrain on rank 1 sends itself SIGTERM as its final test starts: a real signal, timed exactly.
SIGTERM_IN_RANK_1S_TEST = """
import os, signal, sys
from nntrain.training.trainer import Trainer
original = Trainer.test
def test(self, *args, **kwargs):
    if os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGTERM)
    return original(self, *args, **kwargs)
Trainer.test = test
from nntrain.commands.train import main
sys.argv = ["nntrain", *sys.argv[1:]]
main()
"""


def test_a_signal_to_one_rank_during_the_final_test_lets_every_rank_finish_it(tmp_path):
    script = tmp_path / "nntrain_sigterm_in_test.py"
    script.write_text(SIGTERM_IN_RANK_1S_TEST)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), "trainer=debug", "trainer.report_images=false", "hydra.run.dir=run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SIGTERM: finishing the final test first (it completes the run)" in done.stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "ok", status
    assert read_metrics(tmp_path / "run")["epochs_run"] == 2
