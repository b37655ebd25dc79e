"""The Trainer's per-step overhead, counted: aten ops dispatched per optimizer step against a
careful hand loop (scripts/benchmark.py's hand_step: decay / no-decay parameter groups, fused
AdamW, clipping, the running loss summed on the device) over the same model and data, drawing
its batches from the same loader or from in-memory tensors (issue 28's budget: a permutation
indexed, no loader). Counts are deterministic, unlike times on a shared machine: they hold with
other suites running beside this one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from nntrain.instantiate import build
from tests.conftest import compose_config

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
OVERRIDES = (
    "model=mlp",
    "data=digits",
    "data.batch_size=8",
    "trainer.device=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_val_batches=1",
    "trainer.report_images=false",
    "trainer.progress=false",
)


def load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def count_ops_script() -> Any:
    """scripts/count_ops.py, which imports scripts/benchmark.py as `benchmark`."""
    load_script("benchmark")
    return load_script("count_ops")


def trainer_ops(batches: int, tmp_path: Path) -> int:
    """Ops of a whole one-epoch Trainer.fit over `batches` training batches (set-up,
    validation and test included: they cancel out of a difference)."""
    cfg = compose_config(*OVERRIDES, f"trainer.limit_train_batches={batches}")
    trainer = build(cfg.trainer, "trainer")
    data = build(cfg.data, "data")
    torch.manual_seed(0)
    model = build(cfg.model, "model", input_shape=data.input_shape, num_classes=data.num_classes)
    optimizer, scheduler = build(cfg.optimizer, "optimizer"), build(cfg.scheduler, "scheduler")
    with count_ops_script().OpCounter() as counter:
        trainer.fit(model, data, optimizer, scheduler, run_dir=tmp_path / f"run{batches}")
    return sum(counter.ops.values())


def hand_ops(batches: int) -> int:
    """Ops of the benchmark's careful hand loop over the first `batches` batches of the same
    model, data and loader (scripts/count_ops.py's count, the loader's own ops in both)."""
    return sum(count_ops_script().count_hand("mlp", "digits", batches).values())


def in_memory_ops(batches: int) -> int:
    """Ops of the careful hand loop over `batches` batches drawn from in-memory tensors (already
    normalised, on the device: a slice of a permutation and two index ops per batch)."""
    return sum(count_ops_script().count_in_memory("mlp", "digits", batches).values())


@pytest.fixture(scope="module")
def one_thread():
    """Counts do not depend on threads; on a shared 2-core machine one thread is much faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trainer_per_step(tmp_path_factory, one_thread) -> float:
    """The Trainer's ops per step, counted once for the tests below (two whole runs)."""
    tmp_path = tmp_path_factory.mktemp("op_count")
    # Two runs differing only in their number of steps: everything but the steps cancels.
    return (trainer_ops(40, tmp_path) - trainer_ops(20, tmp_path)) / 20


@pytest.mark.parametrize(
    "reference",
    ["the run's loader", "in-memory tensors"],
    ids=["hand loop", "in-memory hand loop"],
)
def test_the_trainer_dispatches_at_most_5_percent_more_ops_per_step_than_a_hand_loop(
    trainer_per_step, one_thread, reference
):
    """Against count_ops' careful hand loop over the run's loader, and (issue 28's budget)
    against one with no loader at all, which the Trainer's own loader (indexing, normalising
    each batch) must fit into along with its bookkeeping."""
    ops = hand_ops if reference == "the run's loader" else in_memory_ops
    hand = (ops(40) - ops(20)) / 20
    assert trainer_per_step <= hand * 1.05, (
        f"Trainer {trainer_per_step:.1f} ops per step, hand loop over {reference} {hand:.1f}"
    )
    # The model's own work is most of both: the count measures something real.
    assert hand > 100


def test_deferred_accuracy_counts_what_the_per_step_count_does():
    """The Trainer's eager step keeps predictions to count at reads (fewer ops a step): the
    sums it reads, at log steps and past the pending limit alike, are the per-step ones."""
    from nntrain.inference.metrics import RunningClassification

    cpu = torch.device("cpu")
    now, deferred = RunningClassification(cpu), RunningClassification(cpu, deferred=True)
    generator = torch.Generator().manual_seed(0)
    for step in range(2 * RunningClassification.PENDING_LIMIT + 7):
        logits = torch.randn(8, 3, generator=generator)
        targets = torch.randint(0, 3, (8,), generator=generator)
        for running in (now, deferred):
            running.update(logits.logsumexp(1).mean(), logits, targets)
        if step % 10 == 9:
            assert torch.equal(now.snapshot(), deferred.snapshot())
    assert now.compute() == deferred.compute()
    assert torch.equal(now.sums, deferred.snapshot())
