"""Data-parallel training with PyTorch's own tools: `torchrun -m nntrain ...` and DDP.

torchrun starts one process per GPU (or CPU worker) and sets RANK, WORLD_SIZE, LOCAL_RANK and
the rendezvous address; srun with several tasks (hydra.launcher.tasks_per_node) sets SLURM's
equivalents, from which nntrain sets torchrun's. nntrain joins the process group before Hydra
starts (or, in a SLURM job, as the job starts), so that every rank agrees on one run directory. Rank 0 writes everything (checkpoints, TensorBoard, metrics, logs);
the others compute.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nntrain.errors import UserError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: `nntrain --help` and config errors must not pay for it.


def launched_by_torchrun() -> bool:
    """Whether this process is one of several ranks: torchrun's (WORLD_SIZE), or the tasks of
    one srun step (SLURM_STEP_NUM_TASKS, set by srun only: a batch script itself is not a rank)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or under_srun()


def under_srun() -> bool:
    return "WORLD_SIZE" not in os.environ and int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[07-09,12],cpu1' -> 'gpu07'."""
    import re

    match = re.match(r"([^,\[]+)(?:\[([^\]]*)\])?", nodelist)
    if match is None:
        return nodelist
    prefix, ranges = match.groups()
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def torchrun_env_from_slurm() -> None:
    """The variables torchrun would set, from srun's: the rank is SLURM_PROCID, the ranks'
    meeting point the first node of the step, on a port derived from the job id (MASTER_PORT,
    if set, wins)."""
    env = os.environ
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "localhost")
    env.setdefault("MASTER_ADDR", first_host(nodelist))
    env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
    env["RANK"], env["LOCAL_RANK"] = env["SLURM_PROCID"], env.get("SLURM_LOCALID", "0")
    env["WORLD_SIZE"] = env["SLURM_STEP_NUM_TASKS"]


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def _initialized() -> bool:
    if "torch" not in sys.modules:  # nothing can have joined a process group
        return False
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return _dist().get_world_size() if _initialized() else 1


def rank() -> int:
    return _dist().get_rank() if _initialized() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


# How long a collective waits for the other ranks before it fails (trainer.dist_timeout_s
# sets it once the config is composed): torch's own default for Gloo is 30 minutes, in which a
# frozen peer hangs the whole job without a word.
DEFAULT_TIMEOUT_S = 300.0


def init_from_env() -> None:
    """Join torchrun's process group: NCCL for CUDA tensors, Gloo for CPU ones (and for the
    small Python objects broadcast here)."""
    from datetime import timedelta

    import torch

    dist = _dist()
    if not launched_by_torchrun() or dist.is_initialized():
        return
    if under_srun():
        torchrun_env_from_slurm()
    timeout = timedelta(seconds=DEFAULT_TIMEOUT_S)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group(backend="cpu:gloo,cuda:nccl", timeout=timeout)
    else:
        dist.init_process_group(backend="gloo", timeout=timeout)


TIMEOUT_S = {"value": DEFAULT_TIMEOUT_S}  # the one in force, for the message of a timeout


def set_timeout(seconds: float) -> None:
    """Collectives from now on fail after `seconds` without an answer from every rank."""
    TIMEOUT_S["value"] = seconds
    if world_size() == 1:
        return
    from datetime import timedelta

    dist = _dist()
    if hasattr(dist, "set_timeout"):  # torch >= 2.7
        dist.set_timeout(timedelta(seconds=seconds))
    else:
        from torch.distributed.distributed_c10d import _set_pg_timeout

        _set_pg_timeout(timedelta(seconds=seconds))


def broadcast_from_main(value: Any) -> Any:
    """Rank 0's value, on every rank."""
    if world_size() == 1:
        return value
    holder = [value]
    _dist().broadcast_object_list(holder, src=0)
    return holder[0]


def one_run_dir(argv: list[str]) -> list[str]:
    """Under torchrun, the overrides that make every rank use rank 0's run directory (each rank
    would otherwise stamp its own time) and leave Hydra's files to rank 0."""
    if not launched_by_torchrun():
        return argv
    init_from_env()
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        stamp = broadcast_from_main(time.strftime("%Y-%m-%d/%H-%M-%S"))
        # configs/hydra/default.yaml's run dir with rank 0's time (quoted: the override grammar
        # takes a nested interpolation only in a quoted value).
        argv = [
            *argv,
            f"hydra.run.dir='${{nntrain.new_run_dir:outputs/{stamp}-${{nntrain.path_safe:${{name}}}}}}'",
        ]
    if not is_main_process():  # rank 0 writes .hydra/ (all ranks compose the same config)
        argv = [*argv, "hydra.output_subdir=null"]
    return argv


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """A summed copy over all ranks (the tensor itself is left alone)."""
    if world_size() == 1:
        return tensor
    dist = _dist()
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def agreed_signal(signum: int | None, device: torch.device) -> int | None:
    """The stop signal one of the ranks received (the highest number if several did), on every
    rank: all stop at the same step, and all say why alike."""
    if world_size() == 1:
        return signum
    import torch

    dist = _dist()
    value = torch.tensor([signum or 0], dtype=torch.int64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return int(value.item()) or None


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP syncs them at the
    start of each forward, so after the last training batch each rank holds its own; evaluation
    and checkpoints need the same ones everywhere."""
    if world_size() == 1:
        return
    for buffer in model.buffers():
        _dist().broadcast(buffer, src=0)


def barrier() -> None:
    if world_size() > 1:
        _dist().barrier()


def weights_agree(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether every rank holds the same weights (a checksum of all parameters and buffers)."""
    if world_size() == 1:
        return True
    import torch

    with torch.no_grad():
        checksum = torch.stack(
            [
                t.detach().double().sum()
                for t in model.state_dict().values()
                if t.is_floating_point()
            ]
        ).sum()
    sums = [torch.zeros_like(checksum) for _ in range(world_size())]
    _dist().all_gather(sums, checksum.to(device))
    return all(torch.equal(s, sums[0]) for s in sums)


def shutdown() -> None:
    if _initialized():
        _dist().destroy_process_group()


# Gloo's words for a peer that froze (no answer within the timeout) and one that is gone.
FROZEN = ("timed out", "timeout")
GONE = ("connection closed by peer", "connection reset", "broken pipe", "connection refused")


def peer_failure(error: BaseException, run_dir: str = "<run dir>") -> str | None:
    """One sentence for a collective that failed because another rank stopped answering
    (None for any other error). Gloo does not say which rank it waited for; with two ranks
    it can only be the other one."""
    text = str(error).lower()
    frozen, gone = any(w in text for w in FROZEN), any(w in text for w in GONE)
    if not isinstance(error, RuntimeError) or not (frozen or gone):
        return None
    me, count = rank(), world_size()
    who = f"rank {1 - me}" if count == 2 else f"one of the other {count - 1} ranks"
    if frozen:
        what = (
            f"{who} stopped answering: no reply within trainer.dist_timeout_s="
            f"{TIMEOUT_S['value']:g} s (a frozen or suspended process, or a stuck node)"
        )
    else:
        what = f"{who} is gone (its process ended or its node went down)"
    return (
        f"rank {me}: {what}; the job stops here: continue it from its last saved step with "
        f"resume={run_dir}."
    )


@contextlib.contextmanager
def peers_must_answer(run_dir: str) -> Iterator[None]:
    """A collective that failed for want of a peer ends as one sentence (a UserError)."""
    try:
        yield
    except RuntimeError as error:
        sentence = peer_failure(error, run_dir) if world_size() > 1 else None
        if sentence is None:
            raise
        raise UserError(sentence) from error
