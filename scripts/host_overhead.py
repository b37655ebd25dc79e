"""The host time nntrain's loop adds per optimizer step, where the step's arithmetic is nil.

A small model's CUDA step is launch-bound: the GPU waits for the host to dispatch kernels,
so every microsecond of Python the Trainer adds per step is training time there. This
measures that host time on a CPU with a model so small (4-8-3) that a step is almost all
dispatch: microseconds per optimizer step, median of interleaved rounds, of
  hand      the benchmark's careful hand loop (decay / no-decay groups, fused AdamW,
            clipping, the schedule, the running loss summed on the device),
  step      nntrain's train_step called in a bare loop (the metric sums added),
  trainer   Trainer.fit, progress bar on, TensorBoard logs every 10 steps (the defaults),
  quiet     Trainer.fit without the progress bar,
  no_logs   Trainer.fit without the progress bar, a log step every 1,000 steps,
and the ratios to the hand loop. On a GPU the same host work sits in front of each step.

    python scripts/host_overhead.py               # 3 rounds of 2 x 1,024 steps (~1 minute)
    python scripts/host_overhead.py --rounds 1 --samples 2048
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nntrain.devices import Compute
from nntrain.inference.metrics import RunningClassification
from nntrain.optim.optimizers import build_optimizer
from nntrain.optim.schedules import warmup_cosine
from nntrain.training.step import StepParts, train_step
from nntrain.training.trainer import Trainer
from tests.helpers import BlobData

BATCH = 16
OPTIMIZER = partial(torch.optim.AdamW, lr=1e-3)
SCHEDULE = partial(warmup_cosine, warmup_epochs=0.1)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def parts_for(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, object]:
    optimizer = build_optimizer(OPTIMIZER, model)
    return optimizer, SCHEDULE(optimizer, total_steps=2 * steps, steps_per_epoch=steps)


def loop_rate(samples: int, step_fn_for) -> float:
    """samples/s of the second of two epochs, each step made by step_fn_for(model, steps)."""
    data = BlobData(n=samples, batch_size=BATCH)
    data.setup(torch.device("cpu"))
    loader = data.train_loader()
    step = step_fn_for(tiny_model(), len(loader))
    rate = 0.0
    for epoch in range(2):
        loader.set_epoch(epoch)
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            step(x, y)
            seen += len(y)
        rate = seen / (time.perf_counter() - start)
    return rate


def hand(model: nn.Module, steps: int):
    optimizer, schedule = parts_for(model, steps)
    total = torch.zeros(())

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast("cpu", enabled=False):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()  # type: ignore[attr-defined]
        total.add_(loss.detach())

    return step


def bare_train_step(model: nn.Module, steps: int):
    optimizer, schedule = parts_for(model, steps)
    parts = StepParts(
        model=model, forward=model, optimizer=optimizer, scheduler=schedule,  # type: ignore[arg-type]
        scaler=torch.amp.GradScaler("cpu", enabled=False), compute=Compute(torch.device("cpu")),
        grad_clip=1.0, label_smoothing=0.0, distributed=False,
    )  # fmt: skip
    running = RunningClassification(torch.device("cpu"))
    return lambda x, y: train_step(parts, [(x, y)], running)


def trainer_rate(samples: int, progress: bool, log_every: int) -> float:
    trainer = Trainer(
        device="cpu", max_epochs=2, progress=progress, report_images=False, grad_clip=1.0,
        log_every_n_steps=log_every,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as run_dir:
        data = BlobData(n=samples, batch_size=BATCH)
        result = trainer.fit(tiny_model(), data, OPTIMIZER, SCHEDULE, run_dir=run_dir)
    return result["train/samples_per_sec"]  # epoch 2's, as the loops above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=16384, help="data set size (batch 16)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # dispatch cost, not intra-op parallelism
    modes = {
        "hand": lambda: loop_rate(args.samples, hand),
        "step": lambda: loop_rate(args.samples, bare_train_step),
        "trainer": lambda: trainer_rate(args.samples, True, 10),
        "quiet": lambda: trainer_rate(args.samples, False, 10),
        "no_logs": lambda: trainer_rate(args.samples, False, 1000),
    }
    seen: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode, measure in modes.items():
            seen[mode].append(measure())
    hand_us = 1e6 * BATCH / statistics.median(seen["hand"])
    for mode, rates in seen.items():
        us = 1e6 * BATCH / statistics.median(rates)
        print(f"{mode:8s} {us:7.1f} us per step  {us / hand_us:5.3f} x the hand loop")


if __name__ == "__main__":
    main()
