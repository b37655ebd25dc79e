"""aten ops dispatched per optimizer step of a real `nntrain` run: a deterministic measure of
the loop's overhead (time on a shared machine is noisy; the count is the same on every run).

    python scripts/count_ops.py                  # MLP on digits
    python scripts/count_ops.py cnn digits       # any model and data option

Two one-epoch runs differ only in trainer.limit_train_batches (20 and 40 batches of 8); set-up,
validation and the test cancel out of (ops(40) - ops(20)) / 20, which is printed with the ops
that make it up (log steps every 10 steps are averaged in), then the same for two careful hand
loops (scripts/benchmark.py's hand_step: the same model, optimizer with nntrain's parameter
groups and fused kernel, warmup+cosine schedule, clipping at 1.0 and loss):
  - over the run's own loader (its per-batch indexing and normalisation counted in both), and
  - over in-memory tensors: the training batches gathered once, normalised and on the device,
    each step indexing a pre-drawn permutation of them (no loader, no per-batch normalisation):
    the budget of issue 28, which tests/test_op_count.py holds the Trainer to (at most 5 % more
    than either loop).
"""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import sys
import tempfile
from typing import Any

import torch
from benchmark import careful_hand_loop, hand_step  # this folder's benchmark.py
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from torch.utils._python_dispatch import TorchDispatchMode

from nntrain.commands.train import run
from nntrain.instantiate import build


class OpCounter(TorchDispatchMode):
    """Counts every aten op that reaches the dispatcher, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def compose_run(model: str, data: str, batches: int) -> Any:
    overrides = [
        f"model={model}",
        f"data={data}",
        "data.batch_size=8",  # enough batches for 40 steps even on digits
        "trainer.max_epochs=1",
        "trainer.device=cpu",
        f"trainer.limit_train_batches={batches}",
        "trainer.limit_val_batches=1",
        "trainer.report_images=false",
        "trainer.progress=false",
    ]
    with initialize_config_module("nntrain.configs", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def count(model: str, data: str, batches: int) -> collections.Counter[str]:
    cfg = compose_run(model, data, batches)
    # The run's own printing (config tree, summary) is not what this script reports.
    quiet = contextlib.redirect_stdout(io.StringIO())
    with tempfile.TemporaryDirectory() as run_dir, quiet, OpCounter() as counter:
        run(cfg, run_dir)
    return counter.ops


def hand_loop_parts(model: str, data: str, batches: int) -> tuple[Any, ...]:
    """The run's config, the hand loop's model, optimizer and schedule, and the run's loader."""
    cfg = compose_run(model, data, batches)
    data_module = build(cfg.data, "data")
    net, opt, sched = careful_hand_loop(cfg, data_module, torch.device("cpu"), batches)
    loader = data_module.train_loader()
    loader.set_epoch(0)
    return cfg, net, opt, sched, loader


def count_hand(model: str, data: str, batches: int) -> collections.Counter[str]:
    """The careful hand loop over the first `batches` batches of the run's own loader."""
    cfg, net, opt, sched, loader = hand_loop_parts(model, data, batches)
    total = torch.zeros(())
    with OpCounter() as counter:
        for index, (x, y) in enumerate(loader):
            if index == batches:
                break
            hand_step(net, x, y, opt, sched, cfg.trainer.grad_clip, total)
        float(total)
    return counter.ops


def count_in_memory(model: str, data: str, batches: int) -> collections.Counter[str]:
    """The careful hand loop as one writes it over tensors already in memory: the training
    batches gathered once (normalised, on the device) and shuffled by a permutation drawn once;
    a step's only data ops are a slice of the permutation and two index ops."""
    cfg, net, opt, sched, loader = hand_loop_parts(model, data, batches)
    gathered = list(itertools.islice(loader, batches))
    inputs = torch.cat([x for x, _ in gathered])
    targets = torch.cat([y for _, y in gathered])
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(0))
    size = cfg.data.batch_size
    total = torch.zeros(())
    with OpCounter() as counter:
        for start in range(0, batches * size, size):
            index = order[start : start + size]
            hand_step(net, inputs[index], targets[index], opt, sched, cfg.trainer.grad_clip, total)
        float(total)
    return counter.ops


def report(title: str, short: collections.Counter[str], long: collections.Counter[str]) -> float:
    total = sum(long.values()) - sum(short.values())
    print(f"{title}: {total / 20:.1f} aten ops per optimizer step")
    per_op = {name: (long[name] - short[name]) / 20 for name in set(short) | set(long)}
    for name, ops in sorted(per_op.items(), key=lambda item: (-item[1], item[0])):
        if ops:
            print(f"  {ops:6.2f}  {name}")
    return total / 20


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "mlp"
    data = sys.argv[2] if len(sys.argv) > 2 else "digits"
    trainer = report(f"nntrain, {model} on {data}", count(model, data, 20), count(model, data, 40))
    hand = report(
        "careful hand loop over the run's loader",
        count_hand(model, data, 20),
        count_hand(model, data, 40),
    )
    in_memory = report(
        "careful hand loop over in-memory tensors",
        count_in_memory(model, data, 20),
        count_in_memory(model, data, 40),
    )
    print(f"nntrain / hand loop: {trainer / hand:.3f}")
    print(f"nntrain / in-memory hand loop: {trainer / in_memory:.3f}")


if __name__ == "__main__":
    main()
