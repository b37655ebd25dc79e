"""A run being fitted: what it changes as it goes (RunState, which round-trips through a
checkpoint) and what it fixed at its start (Run).

A checkpoint taken mid-epoch (every_n_steps, or on SIGINT/SIGTERM) records how many batches of
the epoch are done and the epoch's running metric sums; together with the optimizer, scheduler,
scaler, early-stopping and RNG states, a resumed run continues exactly where the saved one was:
the data order of an epoch is a function of (seed, epoch), so skipping the done batches is enough.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nntrain.data.protocols import DataModule, Loader
from nntrain.devices import Compute
from nntrain.optim.optimizers import load_optimizer_state
from nntrain.reporting.console import EpochTable
from nntrain.reporting.tensorboard import RunLogger
from nntrain.tasks import CLASSIFICATION, Task
from nntrain.training.early_stopping import EarlyStopping
from nntrain.training.ema import WeightEma
from nntrain.training.fit_step import FitStep
from nntrain.training.lookahead import Lookahead
from nntrain.training.seeding import capture_rng_state, restore_rng_state


@dataclass
class RunState:
    """Everything a checkpoint must hold to continue the run exactly."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    stopper: EarlyStopping
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batches_done: int = 0  # batches of the current epoch already trained on
    running_sums: torch.Tensor | None = None  # the current epoch's metric sums so far
    best_metrics: dict[str, float] = field(default_factory=dict)  # the best epoch's figures
    samples_per_sec: list[float] = field(default_factory=list)  # one per finished epoch
    history: list[dict[str, float]] = field(default_factory=list)  # each epoch's metrics
    lookahead: Lookahead = field(default_factory=Lookahead)  # off unless configured
    ema: WeightEma | None = None  # trainer.ema: the weights' moving average, when on

    @property
    def evaluated_model(self) -> nn.Module:
        """What validation, best.pt and the test use: the weights' EMA when on."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self, **extra: Any) -> dict[str, Any]:
        """The state as a checkpoint dict: tensors, numbers, strings, lists and dicts only.

        "model" holds the weights to evaluate (what the test, nntrain-eval and nntrain-predict
        load): with trainer.ema on, the EMA; the raw weights that keep training are then under
        "train_model", and the EMA's update count under "ema"."""
        ema: dict[str, Any] = {}
        if self.ema is not None:
            ema = {"train_model": self.model.state_dict(), "ema": self.ema.state_dict()}
        return {
            "model": self.evaluated_model.state_dict(),
            **ema,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "batches_done": self.batches_done,
            "running_sums": self.running_sums.cpu() if self.running_sums is not None else None,
            "monitor": self.stopper.monitor,
            "best_metric": self.stopper.best,
            "best_metrics": dict(self.best_metrics),
            "early_stopping": self.stopper.state_dict(),
            "samples_per_sec": list(self.samples_per_sec),
            "history": [dict(row) for row in self.history],
            "rng": capture_rng_state(),
            "lookahead": self.lookahead.state_dict(),
            **extra,
        }

    def load(self, checkpoint: dict[str, Any]) -> None:
        """Put every piece of a checkpoint back (the model first: the optimizer's state refers
        to its parameters)."""
        self.model.load_state_dict(checkpoint.get("train_model", checkpoint["model"]))
        if self.ema is not None and "ema" in checkpoint:  # else the average starts afresh
            self.ema.load(checkpoint["model"], checkpoint["ema"])
        load_optimizer_state(self.optimizer, checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.stopper.load_state_dict(checkpoint["early_stopping"])
        self.epoch, self.step = checkpoint["epoch"], checkpoint["step"]
        self.batches_done = checkpoint.get("batches_done", 0)
        self.running_sums = checkpoint.get("running_sums")
        self.best_metrics = dict(checkpoint.get("best_metrics", {}))
        self.samples_per_sec = list(checkpoint.get("samples_per_sec", []))
        self.history = [dict(row) for row in checkpoint.get("history", [])]
        if "lookahead" in checkpoint:
            device = next(self.model.parameters()).device
            self.lookahead.load_state_dict(checkpoint["lookahead"], device)
        if "rng" in checkpoint:
            restore_rng_state(checkpoint["rng"])


@dataclass
class Run:
    """One fit: what Trainer.fit builds at its start and keeps fixed, around the RunState."""

    state: RunState
    model: nn.Module  # the plain module: checkpoints, validation and the test use it
    forward: nn.Module  # what the training step calls: model, or its DDP / compiled wrapper
    data: DataModule
    train_loader: Loader
    val_loader: Loader
    train_batches: int  # per epoch, after trainer.limit_train_batches
    val_batches: int
    total_steps: int  # optimizer steps of the whole run (the schedules' length)
    compute: Compute
    run_dir: Path
    # class_names, config (YAML) and inputs (input_spec), written into every checkpoint: eval
    # and predict rebuild the model from them.
    metadata: dict[str, Any]
    tensorboard: RunLogger
    fit_step: FitStep  # the step it trains with (train_step or a captured one) and its set-up
    task: Task = CLASSIFICATION  # or REGRESSION (the data's task)
    target_scale: float = 1.0  # a regression target's training std: errors in its units
    epoch_table: EpochTable = field(default_factory=EpochTable)  # the epoch lines' columns

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"
