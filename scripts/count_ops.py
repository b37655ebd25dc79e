"""aten ops dispatched per optimizer step of a real `nntrain` run: a deterministic measure of
the loop's overhead (time on a shared machine is noisy; the count is the same on every run).

    python scripts/count_ops.py                  # MLP on digits
    python scripts/count_ops.py cnn digits       # any model and data option

Two one-epoch runs differ only in trainer.limit_train_batches (20 and 40 batches of 8); set-up,
validation and the test cancel out of (ops(40) - ops(20)) / 20, which is printed with the ops
that make it up (log steps every 10 steps are averaged in).
"""

from __future__ import annotations

import collections
import contextlib
import io
import sys
import tempfile
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from torch.utils._python_dispatch import TorchDispatchMode

from nntrain.commands.train import run


class OpCounter(TorchDispatchMode):
    """Counts every aten op that reaches the dispatcher, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count(model: str, data: str, batches: int) -> collections.Counter[str]:
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
    # The run's own printing (config tree, summary) is not what this script reports.
    quiet = contextlib.redirect_stdout(io.StringIO())
    with tempfile.TemporaryDirectory() as run_dir, quiet, OpCounter() as counter:
        run(cfg, run_dir)
    return counter.ops


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "mlp"
    data = sys.argv[2] if len(sys.argv) > 2 else "digits"
    short, long = count(model, data, 20), count(model, data, 40)
    total = sum(long.values()) - sum(short.values())
    print(f"{model} on {data}: {total / 20:.1f} aten ops per optimizer step")
    per_op = {name: (long[name] - short[name]) / 20 for name in set(short) | set(long)}
    for name, ops in sorted(per_op.items(), key=lambda item: (-item[1], item[0])):
        if ops:
            print(f"  {ops:6.2f}  {name}")


if __name__ == "__main__":
    main()
