"""The training loop: fit a model on a data object, checkpoint the best epoch, test it.

Read Trainer.fit top to bottom: set up, then per epoch train (forward, loss, backward,
unscale, clip, step, schedule), validate, early-stop and checkpoint; finally test with the best
weights and write metrics.json. The per-step path has no host synchronisation except on log steps.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from nntrain.checkpoint import load_checkpoint, save_checkpoint
from nntrain.console import TrainProgress, format_epoch_line
from nntrain.early_stopping import EarlyStopping
from nntrain.errors import UserError, check_positive_int, is_number, require
from nntrain.metrics import RunningClassification
from nntrain.optim import build_optimizer
from nntrain.reproducibility import configure_determinism

log = logging.getLogger("nntrain")

PRECISIONS = ("auto", "32", "bf16", "16")


class Loader(Protocol):
    def __len__(self) -> int: ...
    def __iter__(self): ...  # yields (inputs, targets) on the training device
    def set_epoch(self, epoch: int) -> None: ...


class DataModule(Protocol):
    num_classes: int
    class_names: list[str]

    def setup(self, device: torch.device) -> None: ...
    def train_loader(self) -> Loader: ...
    def val_loader(self) -> Loader: ...
    def test_loader(self) -> Loader: ...


def resolve_device(device: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; anything else must exist on this machine."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise UserError(
            f"trainer.device must be auto, cpu, cuda, cuda:N or mps, got {device!r}."
        ) from error
    if resolved.type == "cuda":
        require(
            torch.cuda.is_available(),
            f"trainer.device={device} but CUDA is not available here; use trainer.device=auto.",
        )
    if resolved.type == "mps":
        require(
            torch.backends.mps.is_available(),
            f"trainer.device={device} but MPS is not available here; use trainer.device=auto.",
        )
    return resolved


def resolve_precision(precision: object, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting, or None for full fp32.

    auto: bf16 on CUDA GPUs that support it, else fp16 (with a GradScaler); fp32 elsewhere,
    since CPU autocast is slower than fp32 for most of these models.
    """
    setting = str(precision)
    require(
        setting in PRECISIONS,
        f"trainer.precision must be one of auto, 32, bf16, 16, got {precision!r}.",
    )
    if setting == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if setting == "16":
        require(
            device.type == "cuda", "trainer.precision=16 needs a CUDA device; use bf16 or 32 here."
        )
        return torch.float16
    return torch.bfloat16 if setting == "bf16" else None


def limit_batches(available: int, limit: object, key: str) -> int:
    """Lightning's convention: an int is a number of batches, a float a fraction of them."""
    if isinstance(limit, int) and not isinstance(limit, bool):
        require(limit >= 1, f"{key} must be >= 1 batch or a fraction in (0, 1], got {limit}.")
        return min(available, limit)
    require(
        is_number(limit) and 0 < limit <= 1,  # type: ignore[operator]
        f"{key} must be a number of batches (int >= 1) or a fraction in (0, 1], got {limit!r}.",
    )
    return max(1, int(available * limit))  # type: ignore[operator]


@dataclass
class FitState:
    """Everything a fit changes as it goes; checkpoint() turns it into a checkpoint dict."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    stopper: EarlyStopping
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken

    def checkpoint(self, **extra: Any) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "monitor": self.stopper.monitor,
            "best_metric": self.stopper.best,
            "early_stopping": self.stopper.state_dict(),
            **extra,
        }


class Trainer:
    """Runs fit (train + validate per epoch, early stopping, checkpoints) and test."""

    def __init__(
        self,
        max_epochs: int = 30,
        device: str = "auto",
        precision: str | int = "auto",
        grad_clip: float | None = 1.0,
        accumulate_grad_batches: int = 1,
        early_stopping: Mapping[str, Any] | None = None,
        limit_train_batches: int | float = 1.0,
        limit_val_batches: int | float = 1.0,
        deterministic: bool = False,
        progress: bool = True,
        log_every_n_steps: int = 10,
        channels_last: bool | str = "auto",
    ) -> None:
        self.max_epochs = check_positive_int("trainer.max_epochs", max_epochs, example=30)
        self.device = resolve_device(str(device))
        self.autocast_dtype = resolve_precision(precision, self.device)
        require(
            grad_clip is None or (is_number(grad_clip) and grad_clip > 0),
            f"trainer.grad_clip must be a number > 0 or null (off), got {grad_clip!r}.",
        )
        self.grad_clip = grad_clip
        self.accumulate = check_positive_int(
            "trainer.accumulate_grad_batches", accumulate_grad_batches, example=2
        )
        self.early_stopping_config = dict(early_stopping or {})
        EarlyStopping(**self.early_stopping_config)  # validate now, before any data is loaded
        limit_batches(1, limit_train_batches, "trainer.limit_train_batches")
        limit_batches(1, limit_val_batches, "trainer.limit_val_batches")
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        require(
            isinstance(deterministic, bool),
            f"trainer.deterministic must be true or false, got {deterministic!r}.",
        )
        self.deterministic = deterministic
        self.progress = bool(progress)
        self.log_every_n_steps = check_positive_int("trainer.log_every_n_steps", log_every_n_steps)
        require(
            channels_last in ("auto", True, False),
            f"trainer.channels_last must be auto, true or false, got {channels_last!r}.",
        )
        self.channels_last_setting = channels_last
        self.channels_last = False  # decided per model in fit

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[
            self.autocast_dtype
        ]

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )

    def fit(
        self,
        model: nn.Module,
        data: DataModule,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler],
        run_dir: str | Path,
        config_yaml: str = "",
        backbone_lr_scale: float = 1.0,
    ) -> dict[str, float]:
        """Train, keep the best epoch by the monitored metric, test it; returns metrics.json's content.

        optimizer and scheduler are the config's partials; backbone_lr_scale multiplies the lr of
        a pretrained backbone's parameter groups (see optim.param_groups).
        """
        from nntrain.tb_writer import TensorBoardLogger

        run_dir = Path(run_dir)
        configure_determinism(self.deterministic, self.device)
        data.setup(self.device)
        self.channels_last = self._use_channels_last(model)
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        train_loader, val_loader = data.train_loader(), data.val_loader()
        train_batches = limit_batches(
            len(train_loader), self.limit_train_batches, "trainer.limit_train_batches"
        )
        val_batches = limit_batches(
            len(val_loader), self.limit_val_batches, "trainer.limit_val_batches"
        )
        steps_per_epoch = math.ceil(train_batches / self.accumulate)
        opt = build_optimizer(optimizer, model, backbone_lr_scale)
        state = FitState(
            model=model,
            optimizer=opt,
            scheduler=scheduler(
                opt, total_steps=steps_per_epoch * self.max_epochs, steps_per_epoch=steps_per_epoch
            ),
            scaler=torch.amp.GradScaler(
                self.device.type, enabled=self.autocast_dtype == torch.float16
            ),
            stopper=EarlyStopping(**self.early_stopping_config),
        )
        stopper = state.stopper
        checkpoints = run_dir / "checkpoints"
        tensorboard = TensorBoardLogger(run_dir / "tb")
        self._log_setup(model, train_batches, steps_per_epoch)

        samples_per_sec, best_metrics = [], {}
        with TrainProgress(self.progress) as progress:
            while state.epoch < self.max_epochs:
                epoch_start = time.perf_counter()
                if hasattr(model, "on_epoch_start"):  # e.g. unfreeze a backbone at epoch k
                    model.on_epoch_start(state.epoch)
                train = self._train_epoch(state, train_loader, train_batches, progress, tensorboard)
                val = self.evaluate(model, val_loader, val_batches)
                state.epoch += 1
                metrics = {
                    "train/loss": train["loss"],
                    "train/acc": train["acc"],
                    "val/loss": val["loss"],
                    "val/acc": val["acc"],
                    "lr": state.scheduler.get_last_lr()[0],
                    "train/samples_per_sec": train["samples_per_sec"],
                    "epoch_time": time.perf_counter() - epoch_start,
                }
                samples_per_sec.append(train["samples_per_sec"])
                improved = stopper.update(metrics[stopper.monitor], state.epoch - 1)
                checkpoint = state.checkpoint(
                    metrics=metrics, class_names=list(data.class_names), config=config_yaml
                )
                if improved:
                    best_metrics = metrics
                    save_checkpoint(checkpoint, checkpoints / "best.pt")
                save_checkpoint(checkpoint, checkpoints / "last.pt")
                tensorboard.scalars(
                    {k: metrics[k] for k in ("val/loss", "val/acc", "train/samples_per_sec")},
                    state.step,
                )
                log.info(format_epoch_line(state.epoch - 1, self.max_epochs, metrics, improved))
                if stopper.should_stop:
                    log.info(
                        f"early stopping: {stopper.monitor} has not improved for {stopper.wait} epochs "
                        f"(best {stopper.best:.4f} at epoch {stopper.best_epoch + 1})"
                    )
                    break
        tensorboard.close()

        if stopper.best_epoch < 0:
            raise UserError(
                f"no epoch produced a finite {stopper.monitor}, so there is no best checkpoint; "
                "the loss probably diverged: lower optimizer.lr."
            )
        test = self.test(model, data, checkpoints / "best.pt")
        # The first epoch pays for warm-up (allocations, kernel selection): left out when
        # there are others.
        train_speed = samples_per_sec[1:] or samples_per_sec
        result = {
            "val/acc": best_metrics["val/acc"],
            "val/loss": best_metrics["val/loss"],
            stopper.monitor: stopper.best,
            "test/acc": test["test/acc"],
            "test/loss": test["test/loss"],
            "best_epoch": stopper.best_epoch + 1,
            "epochs_run": state.epoch,
            "train/samples_per_sec": sum(train_speed) / len(train_speed),
        }
        (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        return result

    def _use_channels_last(self, model: nn.Module) -> bool:
        """channels_last (NHWC) helps convolutions on CUDA GPUs (tensor cores, cuDNN's fast
        paths); auto turns it on there for models that have 2-D convolutions."""
        if self.channels_last_setting != "auto":
            return bool(self.channels_last_setting)
        has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        return self.device.type == "cuda" and has_conv

    def _to_model_layout(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.channels_last and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def _log_setup(self, model: nn.Module, train_batches: int, steps_per_epoch: int) -> None:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info(
            f"{type(model).__name__}: {trainable:,} trainable / {total:,} parameters | device {self.device} | "
            f"{self.precision_name} | {train_batches} batches, {steps_per_epoch} optimizer steps per epoch"
        )

    def _train_epoch(
        self,
        state: FitState,
        loader: Loader,
        n_batches: int,
        progress: TrainProgress,
        tensorboard: Any,
    ) -> dict[str, float]:
        model, opt, sched, scaler = state.model, state.optimizer, state.scheduler, state.scaler
        model.train()
        loader.set_epoch(state.epoch)
        running = RunningClassification(self.device)
        window, window_start = running.snapshot(), time.perf_counter()
        progress.start_epoch(state.epoch, self.max_epochs, n_batches)
        epoch_start = time.perf_counter()
        for index, (inputs, targets) in enumerate(loader):
            if index >= n_batches:
                break
            # Micro-batches of one optimizer step share its gradient: each contributes 1/k of
            # it (k = size of this group; the last group of an epoch may be shorter).
            group_start = index - index % self.accumulate
            group_size = min(self.accumulate, n_batches - group_start)
            with self.autocast():
                logits = model(self._to_model_layout(inputs))
                loss = F.cross_entropy(logits, targets)
            scaler.scale(loss / group_size).backward()
            running.update(loss, logits, targets)
            progress.advance()
            if index + 1 - group_start < group_size:
                continue
            if self.grad_clip is not None:
                scaler.unscale_(opt)  # clip the true gradient, not the loss-scaled one
                nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            state.step += 1
            if state.step % self.log_every_n_steps == 0:
                stats = running.compute(since=window)  # the one host sync of a log step
                now = time.perf_counter()
                lr = sched.get_last_lr()[0]
                tensorboard.scalars(
                    {"train/loss": stats["loss"], "train/acc": stats["acc"], "lr": lr}, state.step
                )
                progress.show(
                    stats["loss"], stats["acc"], lr, stats["count"] / (now - window_start)
                )
                window, window_start = running.snapshot(), now
        epoch_stats = running.compute()
        epoch_stats["samples_per_sec"] = epoch_stats["count"] / (time.perf_counter() - epoch_start)
        return epoch_stats

    @torch.inference_mode()
    def evaluate(
        self, model: nn.Module, loader: Any, n_batches: int | None = None
    ) -> dict[str, float]:
        """Mean loss and accuracy of model over (the first n_batches of) loader."""
        model.eval()
        running = RunningClassification(self.device)
        for index, (inputs, targets) in enumerate(loader):
            if n_batches is not None and index >= n_batches:
                break
            with self.autocast():
                logits = model(self._to_model_layout(inputs))
                loss = F.cross_entropy(logits.float(), targets)
            running.update(loss, logits, targets)
        return running.compute()

    def test(self, model: nn.Module, data: DataModule, checkpoint: str | Path) -> dict[str, float]:
        """Load the checkpoint's weights into model and score it on the test split."""
        state = load_checkpoint(checkpoint, map_location=self.device)
        model.load_state_dict(state["model"])
        stats = self.evaluate(model, data.test_loader())
        log.info(
            f"test with {Path(checkpoint).name} (epoch {state['epoch']}): "
            f"test/loss {stats['loss']:.4f}  test/acc {stats['acc']:.4f}"
        )
        return {"test/loss": stats["loss"], "test/acc": stats["acc"]}
