"""Exact resume, in process: a run stopped by SIGTERM mid-epoch and resumed from its last.pt
must end bitwise where the same run trained straight through ends."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from nntrain.checkpoint import load_checkpoint
from nntrain.training.signals import TrainingInterrupted
from nntrain.training.trainer import Trainer

# Figures that measure the machine, not the training.
TIMINGS = ("train/samples_per_sec", "epoch_time")


class SignalAt(nn.Module):
    """The model, sending this process SIGTERM at its n-th training forward (0 = never): the
    Trainer finishes that step, writes last.pt mid-epoch and stops, as when a user kills it."""

    def __init__(self, inner: nn.Module, at: int = 0) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                signal.raise_signal(signal.SIGTERM)
        return self.inner(inputs)


def fit(
    run_dir: Path,
    make_model: Callable[[], nn.Module],
    make_data: Callable[[], Any],
    optimizer: Callable[..., torch.optim.Optimizer],
    scheduler: Callable[..., Any],
    stop_at: int = 0,
    resume: dict | None = None,
    **trainer: Any,
) -> dict[str, float]:
    torch.manual_seed(0)
    model = SignalAt(make_model(), stop_at)
    settings = {"device": "cpu", "progress": False, "report_images": False, **trainer}
    return Trainer(**settings).fit(
        model, make_data(), optimizer, scheduler, run_dir=run_dir, resume=resume
    )


def assert_resume_is_exact(tmp_path: Path, stop_at: int, **run: Any) -> dict[str, Any]:
    """Train straight, then stopped at training forward `stop_at` and resumed; both runs'
    last.pt (weights, optimizer, schedule, EMA, history) and results must be equal. Returns
    the straight run's last.pt."""
    straight = fit(tmp_path / "straight", **run)
    with pytest.raises(TrainingInterrupted):
        fit(tmp_path / "cut", stop_at=stop_at, **run)
    saved = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert saved["batches_done"] > 0  # stopped mid-epoch
    resumed = fit(tmp_path / "cut", resume=saved, **run)
    assert without(resumed, TIMINGS) == without(straight, TIMINGS)
    a, b = (
        load_checkpoint(tmp_path / name / "checkpoints" / "last.pt") for name in ("straight", "cut")
    )
    for key in ("model", "train_model", "ema", "scheduler", "step", "epoch"):
        assert_equal(a.get(key), b.get(key), key)
    assert_equal(a["optimizer"]["state"], b["optimizer"]["state"], "optimizer")
    assert [without(row, TIMINGS) for row in a["history"]] == [
        without(row, TIMINGS) for row in b["history"]
    ]
    return a


def without(row: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in row.items() if k not in keys}


def assert_equal(a: Any, b: Any, where: str) -> None:
    """Bitwise equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal(x, y, f"{where}[{index}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    else:
        assert a == b, where
