"""Training throughput of nntrain against a hand-written loop and the classic PIL pipeline.

For each case (a model on data of a real set's shape and dtype, made in memory so it runs
offline) it measures training samples/s of
  (a) nntrain's Trainer as the CLI builds it (TensorBoard and progress on) with eager steps
      (trainer.cuda_graphs=false), and on CUDA its
      captured steps as their own columns: trainer.cuda_graphs=true (the step recorded as one
      CUDA graph) and trainer.cuda_graphs=reduce-overhead (the step compiled whole by
      torch.compile, replayed as CUDA graphs),
  (b) the better of the hand loops a careful person writes (hand_step: decay / no-decay
      parameter groups, the fused optimizer, clipping, the running loss summed on the device):
      fp32 and, on CUDA, bf16 autocast, each in NCHW and (conv models on CUDA) channels_last,
      over the same model, optimizer, schedule and in-memory data,
  (c) the classic pipeline: a Dataset returning PIL images + ToTensor/Normalize (+ crop/flip
      for CIFAR) + DataLoader, with 0 and 2 workers, same model and optimizer.
Modes are interleaved (a, b, c0, c2, a, b, ...) and each reports the median of its rounds. On
CUDA each mode's window is calibrated to about --window seconds (default 2) of the fp32 hand loop.

    python scripts/benchmark.py                  # the full table (a few minutes on 2 CPU cores)
    python scripts/benchmark.py --quick          # a smoke check
    python scripts/benchmark.py --json out.json  # also write the figures as JSON
    python scripts/benchmark.py --startup-only   # only start-up and the figures' time
    python scripts/benchmark.py --speedrun --speedrun-args data.download=false
        # `nntrain experiment=cifar10_speedrun` with a cold, then a warm compile cache

Start-up is measured to the first optimizer step: `nntrain` (the digits MLP, as a user starts it)
with train_step wrapped to end the process right after its first call, against
`python -c "import torch, torchvision"` (the goal: at most 1.2x). The whole one-step run (its
validation, test, checkpoints and figures) is reported beside it. The figures' time is measured
in a process that has imported what a run has: importing matplotlib, then drawing and saving the
figures of a 10-class image run (curves, confusion matrix, sample grid) and of a binary 2-feature
run (curves, confusion matrix, ROC, precision-recall, decision boundary).

JSON schema: {"machine": str, "device": str, "torch": str, "date": str, "rounds": int,
"cases": {case: {"samples_per_sec": {mode: {"median", "min", "max"}} (modes a_trainer,
a_captured and a_reduce_overhead on CUDA, b_hand_loop = the better hand loop, c_classic_w0, c_classic_w2),
"hand_loops": {loop: {"median", "min", "max"}}, "best_hand_loop": loop, "steps": per window,
"overhead_ratio": a/b, "captured_ratio": a_captured/b and "reduce_overhead_ratio":
a_reduce_overhead/b (CUDA), "vs_classic_ratio":
a/best(c0, c2) (null with --no-classic), "step_ms": {mode: median ms per step}}},
"startup": {"seconds": {"import_torch_torchvision", "first_step", "one_step_run", "help"},
"first_step_ratio", "one_step_ratio", "help_ratio"},
"figures": {"import_matplotlib_s", "import_sklearn_metrics_s", "ten_class_image_run_s",
"binary_two_feature_run_s", "per_figure_ms": {figure: ms}}} (the runs' times leave the imports out) (startup and figures are absent with --no-startup),
"speedrun": {"cold"|"warm": {"wall_s", "compile_s", "train_s" (CUDA events, compilation left
out), "steps", "test_acc"}} (only with --speedrun, which runs nothing else).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from nntrain.data.augment import CropFlip
from nntrain.data.in_memory import InMemoryData, Normalize
from nntrain.instantiate import build
from nntrain.optim.optimizers import build_optimizer


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # config option of the model group
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool  # CIFAR: crop + flip in every pipeline
    batch_size: int = 128
    cuda_only: bool = False


CASES = {
    "mlp_mnist": Case("mlp_mnist", "mlp", (1, 28, 28), (0.1307,), (0.3081,), augment=False),
    "cnn_cifar": Case("cnn_cifar", "cnn", (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), augment=True),
    "resnet18_cifar": Case("resnet18_cifar", "resnet18", (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), augment=True, cuda_only=True),
}  # fmt: skip


class SyntheticImages(InMemoryData):
    """uint8 images of a real set's shape, random content: throughput does not depend on it."""

    name = "synthetic"

    def __init__(self, case: Case, n: int, seed: int = 0) -> None:
        super().__init__(case.batch_size, val_fraction=0.05, test_fraction=0.05, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, *case.shape), dtype=torch.uint8, generator=gen)
        targets = torch.randint(0, 10, (n,), generator=gen)
        self._set_splits(images, targets)
        mean = 255 * torch.tensor(case.mean).view(-1, 1, 1)
        std = 255 * torch.tensor(case.std).view(-1, 1, 1)
        self.transform = Normalize(mean, std)
        self.augment = CropFlip(4) if case.augment else None
        self.num_classes, self.input_shape = 10, case.shape
        self.class_names = [str(i) for i in range(10)]


def compose_config(case: Case, device: str):
    overrides = [f"model={case.model}", f"trainer.device={device}", "trainer.progress=true"]
    with initialize_config_module("nntrain.configs", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def build_parts(cfg, data: InMemoryData):
    torch.manual_seed(0)
    model = build(cfg.model, "model", input_shape=data.input_shape, num_classes=data.num_classes)
    return model, build(cfg.optimizer, "optimizer"), build(cfg.scheduler, "scheduler")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_trainer(
    case: Case, data: InMemoryData, device: str, steps: int, captured: bool | str = False
) -> float:
    """(a): Trainer.fit over two epochs of `steps` batches; its samples/s leaves out epoch 1
    (and any compilation or graph recording). captured: the trainer.cuda_graphs setting."""
    cfg = compose_config(case, device)
    trainer = build(
        cfg.trainer,
        "trainer",
        cuda_graphs=captured,
        progress=True,
        max_epochs=2,
        limit_train_batches=steps,
        limit_val_batches=1,
    )
    model, optimizer, scheduler = build_parts(cfg, data)
    with tempfile.TemporaryDirectory() as run_dir:
        result = trainer.fit(model, data, optimizer, scheduler, run_dir=run_dir)
    return result["train/samples_per_sec"]


def hand_step(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    clip: float | None,
    total: torch.Tensor,
    autocast_dtype: torch.dtype | None = None,
) -> None:
    """One optimizer step as a careful person writes it: forward and loss (under autocast when
    given a dtype), backward, clip, step, zero the gradients, schedule, and the running loss
    summed on the device (no .item(), so no host sync per step)."""
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    sched.step()
    total += loss.detach()


@dataclass(frozen=True)
class HandLoop:
    """One of the hand loops: its autocast dtype (None: fp32) and memory layout."""

    name: str
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False


def hand_loops(device: str, has_conv: bool) -> list[HandLoop]:
    """The loops a careful person would try: fp32 and, on CUDA, bf16 autocast, each in NCHW
    and (for conv models on CUDA) channels_last; the table shows the better of them, so each
    precision is compared in the layout it is fastest in."""
    loops = [HandLoop("fp32")]
    if device.startswith("cuda"):
        loops.append(HandLoop("bf16", torch.bfloat16))
        if has_conv:
            loops += [
                HandLoop("fp32_nhwc", None, channels_last=True),
                HandLoop("bf16_nhwc", torch.bfloat16, channels_last=True),
            ]
    return loops


def hand_loop(
    model, batches: Callable[[], object], device: torch.device, steps: int, opt, sched, clip,
    loop: HandLoop = HandLoop("fp32"),
) -> float:  # fmt: skip
    """samples/s of hand_step over `steps` batches, after a warm-up of 2."""
    model.train()
    if loop.channels_last:
        model.to(memory_format=torch.channels_last)
    total = torch.zeros((), device=device)  # the running loss, read once at the end

    def one_pass(count: int) -> int:
        seen = 0
        for index, (x, y) in enumerate(batches()):
            if index >= count:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if loop.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            hand_step(model, x, y, opt, sched, clip, total, loop.autocast_dtype)
            seen += len(y)
        return seen

    one_pass(2)  # warm-up: allocations, kernel selection, worker start
    sync(device)
    start = time.perf_counter()
    seen = one_pass(steps)
    sync(device)
    seconds = time.perf_counter() - start
    assert math.isfinite(float(total)), "the hand loop's loss diverged"
    return seen / seconds


def careful_hand_loop(cfg, data: InMemoryData, device: torch.device, steps: int):
    """The model, optimizer (decay / no-decay parameter groups, the fused kernel the Trainer's
    config picks) and schedule of cfg, set up as the hand loops use them."""
    data.setup(device)
    model, optimizer, scheduler = build_parts(cfg, data)
    model.to(device)
    opt = build_optimizer(optimizer, model, fused=cfg.trainer.fused_optimizer)
    sched = scheduler(opt, total_steps=10 * steps, steps_per_epoch=steps)
    return model, opt, sched


def run_hand(
    case: Case, data: InMemoryData, device: str, steps: int, loop: HandLoop = HandLoop("fp32")
) -> float:
    """(b): the same model/optimizer/schedule over the same in-memory loader, no framework."""
    cfg = compose_config(case, device)
    dev = torch.device(device)
    model, opt, sched = careful_hand_loop(cfg, data, dev, steps)
    loader = data.train_loader()
    return hand_loop(
        model, lambda: iter(loader), dev, steps, opt, sched, cfg.trainer.grad_clip, loop
    )


class PILDataset(torch.utils.data.Dataset):
    """The classic recipe: one PIL image per __getitem__, torchvision transforms per sample."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        image = Image.fromarray(self.images[index])
        return self.transform(image), int(self.targets[index])


def run_classic(case: Case, data: InMemoryData, device: str, steps: int, workers: int) -> float:
    """(c): PIL Dataset + ToTensor/Normalize (+ RandomCrop/Flip for CIFAR) + DataLoader."""
    from torchvision import transforms

    cfg = compose_config(case, device)
    dev = torch.device(device)
    train = data.splits["train"]
    images = train.inputs.cpu().permute(0, 2, 3, 1).numpy()  # N,H,W,C as PIL wants
    if images.shape[-1] == 1:
        images = images[..., 0]
    steps_list = (
        [transforms.RandomCrop(case.shape[-1], padding=4), transforms.RandomHorizontalFlip()]
        if case.augment
        else []
    )
    transform = transforms.Compose(
        [*steps_list, transforms.ToTensor(), transforms.Normalize(case.mean, case.std)]
    )
    dataset = PILDataset(images, train.targets.cpu().numpy(), transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=case.batch_size, shuffle=True, num_workers=workers,
        pin_memory=dev.type == "cuda", drop_last=True, persistent_workers=workers > 0,
    )  # fmt: skip
    model, optimizer, scheduler = build_parts(cfg, data)
    model.to(dev)
    # The optimizer kernel the Trainer uses for this config: only the loop and data differ.
    opt = build_optimizer(optimizer, model, fused=cfg.trainer.fused_optimizer)
    sched = scheduler(opt, total_steps=10 * steps, steps_per_epoch=steps)
    return hand_loop(model, lambda: iter(loader), dev, steps, opt, sched, cfg.trainer.grad_clip)


def wall_time(command: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


# Run as `python -c`: nntrain's own entry point, with the train_step a fit chooses
# (nntrain.training.fit_step) wrapped so that the process ends (os._exit, no clean-up) right
# after the first optimizer step.
FIRST_STEP = """
import os, sys
import torch
from nntrain.training import fit_step
step = fit_step.train_step
def first_step_then_exit(*args, **kwargs):
    step(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    print("first optimizer step done", flush=True)
    os._exit(0)
fit_step.train_step = first_step_then_exit
sys.argv[0] = "nntrain"
from nntrain.commands.train import main
main()
"""
MARKER = "first optimizer step done"


# Run as `python -c` for --speedrun: nntrain's own entry point with every training step (the
# one the Trainer chose: train_step or the captured step) between two CUDA events; at exit the
# events' times go to $NNTRAIN_BENCH_STEPS as JSON.
TIMED_STEPS = """
import atexit, json, os, sys
import torch
from nntrain.training import trainer
choose, events = trainer.Trainer._choose_step, []
def choose_timed(self, *args, **kwargs):
    fit_step = choose(self, *args, **kwargs)
    step = fit_step.call
    def timed_step(*args, **kwargs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = step(*args, **kwargs)
        end.record()
        events.append((start, end))
        return result
    fit_step.call = timed_step
    return fit_step
def report():
    torch.cuda.synchronize()
    first_start, first_end = events[0]
    json.dump({
        "step_ms": [start.elapsed_time(end) for start, end in events],
        "first_end_to_last_end_ms": first_end.elapsed_time(events[-1][1]),
    }, open(os.environ["NNTRAIN_BENCH_STEPS"], "w"))
atexit.register(report)
trainer.Trainer._choose_step = choose_timed
sys.argv[0] = "nntrain"
from nntrain.commands.train import main
main()
"""


def speedrun_once(run_dir: Path, cache: Path, extra: list[str]) -> dict:
    """One `nntrain experiment=cifar10_speedrun` in a fresh process with the inductor cache in
    `cache`: its wall time, and from its metrics.json and CUDA events the rest."""
    steps_file = run_dir.with_suffix(".steps.json")
    env = {
        **os.environ,
        "TORCHINDUCTOR_CACHE_DIR": str(cache),
        "NNTRAIN_BENCH_STEPS": str(steps_file),
    }
    command = [sys.executable, "-c", TIMED_STEPS, "experiment=cifar10_speedrun"]
    command += [f"hydra.run.dir={run_dir}", "trainer.progress=false", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the speedrun failed: {done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    steps = json.loads(steps_file.read_text())
    typical = statistics.median(steps["step_ms"][1:] or steps["step_ms"])
    return {
        "wall_s": wall,
        "compile_s": metrics.get("compile_seconds", 0.0),
        # From the end of the first (compiling) step to the end of the last, on the GPU's clock,
        # plus one typical step for the first: everything the training took but compilation.
        "train_s": (steps["first_end_to_last_end_ms"] + typical) / 1000,
        "steps": len(steps["step_ms"]),
        "test_acc": metrics["test/acc"],
    }


def measure_speedrun(extra: list[str], console: Any) -> dict:
    """The speedrun preset with a cold compile cache (a new, empty folder), then warm (the
    same folder again)."""
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        for state in ("cold", "warm"):
            figures = speedrun_once(Path(folder) / f"run_{state}", Path(folder) / "cache", extra)
            result[state] = figures
            console.print(
                f"speedrun, {state} compile cache: training {figures['train_s']:.2f} s "
                f"(CUDA events, {figures['steps']} steps), compile {figures['compile_s']:.1f} s, "
                f"wall {figures['wall_s']:.1f} s, test accuracy {100 * figures['test_acc']:.2f} %"
            )
    return result


def wall_time_to_first_step(args: list[str], cwd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", FIRST_STEP, *args], cwd=cwd, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0 or MARKER not in done.stdout:
        raise RuntimeError(f"the first-step run failed: {done.stderr[-2000:]}")
    return seconds


def measure_startup(rounds: int) -> dict:
    """Wall time to nntrain's first optimizer step, of a whole one-step run and of
    `nntrain --help`, against the time Python takes just to import torch and torchvision
    (interleaved, median of rounds)."""
    nntrain = str(Path(sys.executable).with_name("nntrain"))
    one_step = [
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
    ]
    commands: dict[str, Callable[[str], float]] = {
        "import_torch_torchvision": partial(wall_time, [sys.executable, "-c", "import torch, torchvision"]),
        "first_step": partial(wall_time_to_first_step, one_step),
        "one_step_run": partial(wall_time, [nntrain, *one_step]),
        "help": partial(wall_time, [nntrain, "--help"]),
    }  # fmt: skip
    seen: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(rounds):
            for name, measure in commands.items():
                seen[name].append(measure(cwd))
    seconds = {name: statistics.median(values) for name, values in seen.items()}
    baseline = seconds["import_torch_torchvision"]
    return {
        "seconds": seconds,
        "first_step_ratio": seconds["first_step"] / baseline,
        "one_step_ratio": seconds["one_step_run"] / baseline,
        "help_ratio": seconds["help"] / baseline,
    }


def figure_timings() -> dict:
    """In this process (torch and nntrain imported, as at the end of a run): matplotlib's
    import, then the figures of a 10-class image run and of a binary 2-feature run, each drawn
    and saved as a PNG (synthetic numbers of the real shapes)."""
    start = time.perf_counter()
    # What every figure needs: the figure, its axes and text, the Agg canvas and the fonts.
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401

    from nntrain.reporting import figures, metric_figures

    import_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    history = [
        {"epoch": e, "train/loss": 1 / e, "val/loss": 1.1 / e, "train/acc": 1 - 1 / (e + 1),
         "val/acc": 1 - 1 / (e + 2), "lr": 1e-3 / e}
        for e in range(1, 11)
    ]  # fmt: skip
    # A 10-class validation split at about 97 % accuracy: a few errors off the diagonal.
    counts = np.diag(rng.integers(15, 25, 10))
    counts[rng.integers(0, 10, 6), rng.integers(0, 10, 6)] += 1
    images, names = rng.random((32, 1, 8, 8)), [str(i % 10) for i in range(32)]
    truth = rng.integers(0, 2, 200)
    scores = np.clip(0.4 * truth + 0.6 * rng.random(200), 0, 1)
    points = rng.normal(size=(200, 2))
    pictures = {
        "curves": lambda: metric_figures.training_curves(history, 7),
        "confusion_matrix_10": lambda: figures.confusion_matrix_figure(counts, names[:10]),
        "samples": lambda: figures.sample_grid(images, names, names[::-1], rng.random(32)),
        "confusion_matrix_2": lambda: figures.confusion_matrix_figure(counts[:2, :2], ["a", "b"]),
        "roc_curve": lambda: metric_figures.roc_figure(truth, scores),
        "pr_curve": lambda: metric_figures.pr_figure(truth, scores),
        "decision_boundary": lambda: figures.decision_boundary_figure(
            lambda grid: (grid[:, 0] > 0).astype(int), points, truth, ["a", "b"]
        ),
    }
    per_figure = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, draw in pictures.items():
            if name == "roc_curve":  # the first figure that needs scikit-learn's metrics
                begin = time.perf_counter()
                import sklearn.metrics  # noqa: F401

                sklearn_s = time.perf_counter() - begin
            begin = time.perf_counter()
            draw().save(Path(folder) / f"{name}.png")
            per_figure[name] = 1000 * (time.perf_counter() - begin)
    image_run = ("curves", "confusion_matrix_10", "samples")
    binary_run = ("curves", "confusion_matrix_2", "roc_curve", "pr_curve", "decision_boundary")
    return {
        "import_matplotlib_s": import_s,
        "import_sklearn_metrics_s": sklearn_s,  # binary runs only (ROC, precision-recall)
        "ten_class_image_run_s": sum(per_figure[n] for n in image_run) / 1000,
        "binary_two_feature_run_s": sum(per_figure[n] for n in binary_run) / 1000,
        "per_figure_ms": per_figure,
    }


def measure_figures() -> dict:
    """figure_timings in a fresh process (where matplotlib is not imported yet)."""
    done = subprocess.run(
        [sys.executable, __file__, "--figures-only"], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, few steps: a smoke check")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds per mode (median)"
    )
    parser.add_argument(
        "--cases", nargs="*", choices=list(CASES), help="default: every case the device runs"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--no-startup", action="store_true", help="skip the start-up and figure timings"
    )
    parser.add_argument(
        "--startup-only", action="store_true", help="only the start-up and figure timings"
    )
    parser.add_argument(
        "--no-classic", action="store_true", help="skip (c), the PIL pipeline (data-bound, slow)"
    )
    parser.add_argument(
        "--window", type=float, default=2.0, help="seconds a mode's window lasts on CUDA"
    )
    parser.add_argument(
        "--speedrun",
        action="store_true",
        help="only the speedrun: `nntrain experiment=cifar10_speedrun` with a cold, then a warm "
        "compile cache (time to the final accuracy by CUDA events, compile time, wall time, "
        "test accuracy)",
    )
    parser.add_argument(
        "--speedrun-args", nargs="*", default=[], help="extra overrides for the speedrun runs"
    )
    parser.add_argument("--figures-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def default_cases(device: str) -> list[str]:
    """Every case the device runs (ResNet-18 on CUDA only: hours a round on a CPU)."""
    return [n for n, c in CASES.items() if device.startswith("cuda") or not c.cuda_only]


def calibrated_steps(case: Case, device: str, window_s: float) -> int:
    """Steps for a window of about window_s seconds of the fp32 hand loop on this device (at
    least 50, at most 5,000), so that every mode's window is long enough to be stable."""
    probe = SyntheticImages(case, n=case.batch_size * 48)
    rate = run_hand(case, probe, device, 40)  # samples/s
    return max(50, min(5000, math.ceil(window_s * rate / case.batch_size)))


# The captured steps' columns on CUDA and their trainer.cuda_graphs settings.
CAPTURED_MODES: dict[str, bool | str] = {"a_captured": True, "a_reduce_overhead": "reduce-overhead"}


def case_modes(
    case: Case, data: InMemoryData, device: str, steps: int, classic: bool = True
) -> dict[str, Callable[[], float]]:
    """The modes of one case: (a) the Trainer (and on CUDA its captured step), (b) each hand
    loop, (c) the classic pipeline with 0 and 2 workers."""
    has_conv = case.model != "mlp"
    modes: dict[str, Callable[[], float]] = {
        "a_trainer": partial(run_trainer, case, data, device, steps),
    }
    if device.startswith("cuda"):  # the whole step captured: one CUDA graph, or compiled
        for mode, setting in CAPTURED_MODES.items():
            modes[mode] = partial(run_trainer, case, data, device, steps, captured=setting)
    for loop in hand_loops(device, has_conv):
        modes[f"b_hand_{loop.name}"] = partial(run_hand, case, data, device, steps, loop)
    if classic:
        modes["c_classic_w0"] = partial(run_classic, case, data, device, steps, workers=0)
        modes["c_classic_w2"] = partial(run_classic, case, data, device, steps, workers=2)
    return modes


def measure_case(
    name: str, device: str, steps: int, rounds: int, console: Any, classic: bool = True
) -> dict:
    """One case's modes, interleaved round by round (a, b..., c0, c2, a, b..., ...)."""
    case = CASES[name]
    data = SyntheticImages(case, n=case.batch_size * (steps + 4) * 2)
    modes = case_modes(case, data, device, steps, classic)
    seen: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_index in range(rounds):
        for mode, measure in modes.items():
            seen[mode].append(measure())
            console.print(
                f"[dim]{name} round {round_index + 1}/{rounds} {mode}: {seen[mode][-1]:,.0f} samples/s[/]"
            )
    stats = {
        m: {"median": statistics.median(v), "min": min(v), "max": max(v)} for m, v in seen.items()
    }
    hands = {m.removeprefix("b_hand_"): v for m, v in stats.items() if m.startswith("b_hand_")}
    best_hand = max(hands, key=lambda loop: hands[loop]["median"])
    speeds = {m: v for m, v in stats.items() if not m.startswith("b_hand_")}
    speeds["b_hand_loop"] = hands[best_hand]  # the better hand loop
    a, b = speeds["a_trainer"]["median"], hands[best_hand]["median"]
    best_classic = max(
        (speeds[m]["median"] for m in ("c_classic_w0", "c_classic_w2") if m in speeds),
        default=math.nan,
    )
    result = {
        "samples_per_sec": speeds,
        "hand_loops": hands,
        "best_hand_loop": best_hand,
        "steps": steps,
        "overhead_ratio": a / b,
        "vs_classic_ratio": None if math.isnan(best_classic) else a / best_classic,
        "step_ms": {m: 1000 * case.batch_size / s["median"] for m, s in speeds.items()},
    }
    for mode in CAPTURED_MODES:
        if mode in speeds:
            ratio = "captured_ratio" if mode == "a_captured" else "reduce_overhead_ratio"
            result[ratio] = speeds[mode]["median"] / b
    return result


def print_cases(report: dict, rounds: int, console: Any) -> None:
    from rich.table import Table

    table = Table(
        title=f"training samples/s on {report['device']} ({report['date']}, median of {rounds})"
    )
    captured = any("a_captured" in r["samples_per_sec"] for r in report["cases"].values())
    graph_columns = ["(a) graph", "(a) reduce-overhead"] if captured else []
    columns = ["case", "(a) nntrain", *graph_columns]
    columns += ["(b) better hand loop", "(c) classic w0", "(c) classic w2", "(a)/(b)"]
    columns += [*(["graph/(b)", "r-o/(b)"] if captured else []), "(a)/(c)"]
    for column in columns:
        table.add_column(column, justify="right")
    modes = ["a_trainer", *(list(CAPTURED_MODES) if captured else [])]
    modes += ["b_hand_loop", "c_classic_w0", "c_classic_w2"]
    for name, result in report["cases"].items():
        s = result["samples_per_sec"]
        cells = [
            f"{s[m]['median']:,.0f} [{s[m]['min']:,.0f}-{s[m]['max']:,.0f}]" if m in s else "-"
            for m in modes
        ]
        cells[modes.index("b_hand_loop")] += f" {result['best_hand_loop']}"
        ratios = [f"{result['overhead_ratio']:.3f}"]
        if captured:
            for ratio in ("captured_ratio", "reduce_overhead_ratio"):
                ratios.append(f"{result.get(ratio, math.nan):.2f}")
        vs_classic = result["vs_classic_ratio"]
        table.add_row(name, *cells, *ratios, "-" if vs_classic is None else f"{vs_classic:.2f}")
    console.print(table)
    for name, result in report["cases"].items():
        loops = ", ".join(f"{k} {v['median']:,.0f}" for k, v in result["hand_loops"].items())
        console.print(f"{name}: hand loops {loops} ({result['steps']} steps a window)")


def report_startup(report: dict, rounds: int, console: Any) -> None:
    """Start-up to the first optimizer step (against importing torch and torchvision) and the
    figures' time, into report and onto the console."""
    startup = measure_startup(rounds)
    report["startup"] = startup
    s = startup["seconds"]
    console.print(
        f"start-up (median of {rounds}): import torch, torchvision {s['import_torch_torchvision']:.2f} s; "
        f"nntrain to its first optimizer step {s['first_step']:.2f} s ({startup['first_step_ratio']:.2f}x, goal <= 1.2x); "
        f"whole one-step run with its figures {s['one_step_run']:.2f} s ({startup['one_step_ratio']:.2f}x); "
        f"nntrain --help {s['help']:.2f} s ({startup['help_ratio']:.2f}x)"
    )
    report["figures"] = drawn = measure_figures()
    console.print(
        f"figures: import matplotlib {drawn['import_matplotlib_s']:.2f} s, then a 10-class "
        f"image run's {drawn['ten_class_image_run_s']:.2f} s, a binary 2-feature run's "
        f"{drawn['binary_two_feature_run_s']:.2f} s after importing sklearn.metrics "
        f"({drawn['import_sklearn_metrics_s']:.2f} s) ("
        + ", ".join(f"{k} {v:.0f} ms" for k, v in drawn["per_figure_ms"].items())
        + ")"
    )


def main() -> int:
    args = parse_args()
    if args.figures_only:  # measure_figures' child: the timings as JSON on stdout
        print(json.dumps(figure_timings()))
        return 0

    from rich.console import Console

    console = Console(width=max(Console().width, 130))  # the table is wide; pipes default to 80
    device = args.device
    rounds = 1 if args.quick else args.rounds
    names = args.cases or default_cases(device)
    if args.startup_only or args.speedrun:
        names = []
    # Windows of a few seconds each: this shared VM has slow spells of a second or two, which
    # a window of 150 MLP steps (0.7 s) caught whole in some rounds and not in others. On CUDA
    # the steps are calibrated to about args.window seconds of the fp32 hand loop (50 steps of
    # the MLP took 0.1 s on an H200: too short to be stable).
    steps_for = {"mlp_mnist": 500, "cnn_cifar": 6, "resnet18_cifar": 6}
    if args.quick:
        steps_for = dict.fromkeys(CASES, 2)
    elif device != "cpu":
        steps_for = {n: calibrated_steps(CASES[n], device, args.window) for n in names}
    report: dict = {
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "rounds": rounds,
        "cases": {},
    }
    for name in names:
        report["cases"][name] = measure_case(
            name, device, steps_for[name], rounds, console, classic=not args.no_classic
        )
    if names:
        print_cases(report, rounds, console)
    if args.speedrun:
        report["speedrun"] = measure_speedrun(args.speedrun_args, console)
    elif not args.no_startup:
        report_startup(report, rounds, console)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
