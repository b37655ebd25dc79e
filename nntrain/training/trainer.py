"""The training loop: fit a model on a data object, checkpoint the best epoch, test it.

Read Trainer.fit top to bottom: set up (or resume), then per epoch train (forward, loss,
backward, unscale, clip, step, schedule), validate, early-stop and checkpoint; finally test with
the best weights and write metrics.json. The per-step path has no host synchronisation except on
log and checkpoint steps: metrics accumulate on the device, and a non-finite loss shows up in
their sums, so it is caught there too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from nntrain.checkpoint import load_checkpoint, save_checkpoint
from nntrain.devices import resolve_device, resolve_precision, use_channels_last
from nntrain.errors import UserError, check_positive_int, is_number, require
from nntrain.inference.metrics import RunningClassification
from nntrain.inference.tta import check_mode, tta_logits
from nntrain.optim.optimizers import build_optimizer
from nntrain.reporting.console import TrainProgress, format_epoch_line
from nntrain.reporting.tensorboard import TensorBoardLogger
from nntrain.training import distributed
from nntrain.training.early_stopping import EarlyStopping
from nntrain.training.lookahead import Lookahead
from nntrain.training.seeding import configure_determinism
from nntrain.training.signals import StopRequests, TrainingInterrupted
from nntrain.training.state import FitState

log = logging.getLogger("nntrain")


class Loader(Protocol):
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...  # on the device
    def set_epoch(self, epoch: int, start_batch: int = 0) -> None: ...


class DataModule(Protocol):
    num_classes: int
    class_names: list[str]

    def input_spec(self) -> dict[str, Any]: ...  # how to preprocess new inputs (predict)
    def setup(self, device: torch.device) -> None: ...
    def train_loader(self) -> Loader: ...
    def val_loader(self) -> Loader: ...
    def test_loader(self) -> Loader: ...


class NullLogger:
    """TensorBoard on ranks other than 0: nothing is written."""

    def scalars(self, *args: Any) -> None: ...
    def image(self, *args: Any) -> None: ...
    def hparams(self, *args: Any) -> None: ...
    def close(self) -> None: ...


class NonFiniteLoss(UserError):
    """The training loss became NaN or infinite."""


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


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class Trainer:
    """Runs fit (train + validate per epoch, early stopping, checkpoints, resume) and test."""

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
        checkpoint: Mapping[str, Any] | None = None,
        report_images: bool = True,
        sync_batchnorm: bool = False,
        label_smoothing: float = 0.0,
        lookahead: Mapping[str, Any] | None = None,
        test_time_augmentation: str = "none",
        compile: bool | str = False,  # shadows the builtin: the name users know from torch
    ) -> None:
        self.max_epochs = check_positive_int("trainer.max_epochs", max_epochs, example=30)
        self.world, self.rank = distributed.world_size(), distributed.rank()
        if self.world > 1 and torch.cuda.is_available() and str(device) == "auto":
            device = f"cuda:{distributed.local_rank()}"  # one GPU per torchrun process
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
        every = dict(checkpoint or {}).get("every_n_steps")
        if every is not None:
            check_positive_int("trainer.checkpoint.every_n_steps", every, example=100)
        self.checkpoint_every_n_steps = every
        self.report_images = bool(report_images)
        self.sync_batchnorm = bool(sync_batchnorm)
        require(
            not (self.sync_batchnorm and self.world > 1 and self.device.type != "cuda"),
            "trainer.sync_batchnorm=true needs CUDA devices (PyTorch's SyncBatchNorm has no CPU "
            "implementation); leave it off on CPU.",
        )
        require(
            is_number(label_smoothing) and 0 <= label_smoothing < 1,
            f"trainer.label_smoothing must be a number in [0, 1), got {label_smoothing!r}.",
        )
        self.label_smoothing = float(label_smoothing)
        self.lookahead_config = dict(lookahead or {})
        Lookahead(**self.lookahead_config)  # validate now
        self.test_time_augmentation = check_mode(test_time_augmentation)
        require(
            compile in (True, False) or compile in COMPILE_MODES,
            f"trainer.compile must be true, false or a torch.compile mode "
            f"({', '.join(COMPILE_MODES)}), got {compile!r}.",
        )
        self.compile = compile
        if compile and self.device.type == "cpu":
            # Inductor builds C++ kernels on a CPU; without a compiler it fails at the first
            # step with a page of traceback.
            compilers = (os.environ.get("CXX", ""), "g++", "c++", "clang++")
            require(
                any(name and shutil.which(name) for name in compilers),
                "trainer.compile on a CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX); "
                "install one or set trainer.compile=false.",
            )

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[
            self.autocast_dtype
        ]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:  # fp32: skip the context's own cost on every step
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def fit(
        self,
        model: nn.Module,
        data: DataModule,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler],
        run_dir: str | Path,
        config_yaml: str = "",
        backbone_lr_scale: float = 1.0,
        resume: dict[str, Any] | None = None,
    ) -> dict[str, float]:
        """Train, keep the best epoch by the monitored metric, test it; returns metrics.json's content.

        optimizer and scheduler are the config's partials; backbone_lr_scale multiplies the lr of
        a pretrained backbone's parameter groups (see optim.param_groups). resume: a checkpoint
        of this run (last.pt) to continue from, exactly where it was saved.
        """
        run_dir = Path(run_dir)
        checkpoints = run_dir / "checkpoints"
        configure_determinism(self.deterministic, self.device)
        data.setup(self.device)
        self.channels_last = use_channels_last(self.channels_last_setting, self.device, model)
        if self.world > 1 and self.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            synced = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
            log.info(
                f"SyncBatchNorm: {synced} BatchNorm layers use all {self.world} ranks' batches"
            )
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if resume is None and hasattr(model, "initialize_from_data"):  # e.g. a whitening layer
            model.initialize_from_data(self._first_train_inputs(data, model.init_samples))
        self.trained = self._wrap_for_training(model)
        train_loader, val_loader = data.train_loader(), data.val_loader()
        if self.world > 1:  # each rank trains on its own shard of every epoch's order
            train_loader.shard(self.rank, self.world)
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
            lookahead=Lookahead(**self.lookahead_config),
        )
        self.total_steps = steps_per_epoch * self.max_epochs
        stopper = state.stopper
        self._log_setup(model, train_batches, steps_per_epoch)
        if resume is not None:
            state.load(resume)
            log.info(
                f"resumed at epoch {state.epoch + 1}, batch {state.batches_done}, "
                f"optimizer step {state.step}"
            )
        # The run's fixed facts travel in every checkpoint (eval and predict rebuild from them).
        facts = {
            "class_names": list(data.class_names),
            "config": config_yaml,
            "inputs": data.input_spec() if hasattr(data, "input_spec") else None,
        }

        # A resumed run rewrites TensorBoard's curves from its step on (purge_step), so steps
        # trained after the last checkpoint of the interrupted run do not appear twice.
        tensorboard = (
            TensorBoardLogger(run_dir / "tb", purge_step=state.step if resume else None)
            if self.rank == 0
            else NullLogger()
        )
        try:
            with TrainProgress(self.progress) as progress, StopRequests() as stop:
                while state.epoch < self.max_epochs and not stopper.should_stop:
                    epoch_start = time.perf_counter()
                    if hasattr(model, "on_epoch_start"):  # e.g. unfreeze a backbone at epoch k
                        trainable = [p.requires_grad for p in model.parameters()]
                        model.on_epoch_start(state.epoch)
                        # DDP all-reduces the parameters that were trainable when it was built:
                        # a change needs a new wrapper, or the ranks drift apart.
                        if self.world > 1 and trainable != [
                            p.requires_grad for p in model.parameters()
                        ]:
                            self.trained = self._wrap_for_training(model)
                    train = self._train_epoch(
                        state,
                        train_loader,
                        train_batches,
                        progress,
                        tensorboard,
                        stop,
                        facts,
                        checkpoints,
                    )
                    state.lookahead.at_epoch_end(model)
                    distributed.broadcast_buffers(model)  # the same BatchNorm statistics everywhere
                    val = self.evaluate(model, val_loader, val_batches)
                    state.epoch, state.batches_done, state.running_sums = state.epoch + 1, 0, None
                    metrics = {
                        "train/loss": train["loss"],
                        "train/acc": train["acc"],
                        "val/loss": val["loss"],
                        "val/acc": val["acc"],
                        "lr": state.scheduler.get_last_lr()[0],
                        "train/samples_per_sec": train["samples_per_sec"],
                        "epoch_time": time.perf_counter() - epoch_start,
                    }
                    state.samples_per_sec.append(train["samples_per_sec"])
                    improved = stopper.update(metrics[stopper.monitor], state.epoch - 1)
                    if improved:
                        state.best_metrics = {"val/loss": val["loss"], "val/acc": val["acc"]}
                    checkpoint = state.checkpoint(metrics=metrics, **facts)
                    if improved:
                        self._save(checkpoint, checkpoints / "best.pt")
                    self._save(checkpoint, checkpoints / "last.pt")
                    tensorboard.scalars(
                        {
                            k: metrics[k]
                            for k in ("val/loss", "val/acc", "train/samples_per_sec", "epoch_time")
                        },
                        state.step,
                    )
                    log.info(format_epoch_line(state.epoch - 1, self.max_epochs, metrics, improved))
                    if stop.signum is not None:
                        raise TrainingInterrupted(stop.signum, state.step)
                    if stopper.should_stop:
                        log.info(
                            f"early stopping: {stopper.monitor} has not improved for "
                            f"{stopper.wait} epochs (best {stopper.best:.4f} at epoch "
                            f"{stopper.best_epoch + 1})"
                        )
            if stopper.best_epoch < 0:
                raise UserError(
                    f"no epoch produced a finite {stopper.monitor}, so there is no best "
                    "checkpoint; the loss probably diverged: lower optimizer.lr."
                )
            distributed.barrier()  # best.pt is written (by rank 0) before any rank reads it
            if not distributed.weights_agree(model, self.device):
                raise RuntimeError("the ranks' weights differ after training: a DDP bug")
            if self.world > 1:
                log.info(f"weights identical on all {self.world} ranks")
            test = self.test(model, data, checkpoints / "best.pt")  # the best weights, from now on
            # The first epoch pays for warm-up (allocations, kernel selection): left out when
            # there are others.
            train_speed = state.samples_per_sec[1:] or state.samples_per_sec
            result = {
                **state.best_metrics,
                stopper.monitor: stopper.best,
                "test/acc": test["test/acc"],
                "test/loss": test["test/loss"],
                "best_epoch": stopper.best_epoch + 1,
                "epochs_run": state.epoch,
                "train/samples_per_sec": sum(train_speed) / len(train_speed),
            }
            if self.rank == 0:
                (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
            if self.report_images and self.rank == 0:
                from nntrain.reporting.end_of_run import write_end_of_run

                write_end_of_run(
                    tensorboard, self, model, data, run_dir, result, config_yaml, state.step
                )
        finally:
            tensorboard.close()
        return result

    def _save(self, checkpoint: dict[str, Any], path: Path) -> None:
        if self.rank == 0:  # one writer; every rank holds the same state
            save_checkpoint(checkpoint, path)

    def _to_model_layout(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.channels_last and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def _wrap_for_training(self, model: nn.Module) -> nn.Module:
        """What the training step calls: under torchrun, DDP (it averages the gradients across
        ranks), and torch.compile when asked. `model` stays the plain module that checkpoints,
        evaluation and the test use, so state dicts carry no `module.` or `_orig_mod.` prefix."""
        trained = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            cuda = self.device.type == "cuda"
            trained = DistributedDataParallel(model, device_ids=[self.device] if cuda else None)
        if self.compile:  # only the training forward is compiled
            mode = None if self.compile in (True, "default") else self.compile
            trained = torch.compile(trained, mode=mode)
        return trained

    def _first_train_inputs(self, data: DataModule, count: int) -> torch.Tensor:
        """At least `count` training inputs (as the model sees them), for data-dependent
        initialisation."""
        loader = data.train_loader()
        loader.set_epoch(0)
        batches, seen = [], 0
        for inputs, _ in loader:
            batches.append(self._to_model_layout(inputs))
            seen += len(inputs)
            if seen >= count:
                break
        return torch.cat(batches)[:count]

    def _log_setup(self, model: nn.Module, train_batches: int, steps_per_epoch: int) -> None:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info(
            f"{type(model).__name__}: {trainable:,} trainable / {total:,} parameters | "
            f"device {self.device} | {self.precision_name} | {train_batches} batches, "
            f"{steps_per_epoch} optimizer steps per epoch"
        )

    def _train_epoch(
        self,
        state: FitState,
        loader: Loader,
        n_batches: int,
        progress: TrainProgress,
        tensorboard: TensorBoardLogger,
        stop: StopRequests,
        facts: dict[str, Any],
        checkpoints: Path,
    ) -> dict[str, float]:
        """One epoch of training, from state.batches_done on (non-zero when resuming mid-epoch)."""
        model, opt, sched, scaler = state.model, state.optimizer, state.scheduler, state.scaler
        self.trained.train()
        first_batch = state.batches_done
        loader.set_epoch(state.epoch, start_batch=first_batch)
        carried = state.running_sums if self.rank == 0 else None  # see the checkpoint step
        running = RunningClassification(self.device, sums=carried)
        resumed_count = running.compute()["count"] if first_batch else 0
        window, window_start = running.snapshot(), time.perf_counter()
        progress.start_epoch(state.epoch, self.max_epochs, n_batches, completed=first_batch)
        epoch_start = time.perf_counter()
        for index, (inputs, targets) in enumerate(loader, start=first_batch):
            if index >= n_batches:
                break
            # Micro-batches of one optimizer step share its gradient: each contributes 1/k of
            # it (k = size of this group; the last group of an epoch may be shorter).
            group_start = index - index % self.accumulate
            group_size = min(self.accumulate, n_batches - group_start)
            last_micro_batch = index + 1 - group_start == group_size
            # DDP averages gradients at every backward; skip that until a step's last micro-batch.
            sync = (
                contextlib.nullcontext()
                if last_micro_batch or self.world == 1
                else self.trained.no_sync()
            )
            with sync:
                with self.autocast():
                    logits = self.trained(self._to_model_layout(inputs))
                    loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
                scaler.scale(loss / group_size if group_size > 1 else loss).backward()
            running.update(loss, logits, targets)
            progress.advance()
            if not last_micro_batch:
                continue
            log_step = (state.step + 1) % self.log_every_n_steps == 0
            grad_norm = None
            if self.grad_clip is not None or log_step:
                scaler.unscale_(opt)  # clip (and log) the true gradient, not the loss-scaled one
                # The norm before clipping; max_norm=inf only measures it.
                grad_norm = nn.utils.clip_grad_norm_(
                    model.parameters(), self.grad_clip or float("inf")
                )
            scaler.step(opt)  # under fp16, skips a step with inf/NaN gradients: not a failure
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            state.step += 1
            state.batches_done = index + 1
            state.lookahead.after_step(model, state.epoch, state.step, self.total_steps)
            if log_step:
                stats = running.compute(since=window, across_ranks=True)  # the log step's sync
                self._check_finite(stats["loss"], state)
                now = time.perf_counter()
                lr = sched.get_last_lr()[0]
                tensorboard.scalars(
                    {
                        "train/loss": stats["loss"],
                        "train/acc": stats["acc"],
                        "train/grad_norm": float(grad_norm),
                        "lr": lr,
                        **{
                            f"lr/{g.get('name', i)}": g["lr"]
                            for i, g in enumerate(opt.param_groups)
                        },
                    },
                    state.step,
                )
                progress.show(
                    stats["loss"], stats["acc"], lr, stats["count"] / (now - window_start)
                )
                window, window_start = running.snapshot(), now
            every = self.checkpoint_every_n_steps
            # Under DDP every rank must stop at the same step: they agree at log steps.
            stopping = stop.signum is not None
            if self.world > 1:
                stopping = log_step and distributed.any_rank(stopping, self.device)
            if stopping or (every and state.step % every == 0):
                self._check_finite(
                    running.compute(across_ranks=True)["loss"], state
                )  # no NaN saved
                # The epoch's sums over all ranks; on resume rank 0 carries them alone.
                state.running_sums = distributed.all_reduce_sum(running.snapshot())
                self._save(state.checkpoint(**facts), checkpoints / "last.pt")
                if stopping:
                    raise TrainingInterrupted(
                        stop.signum or signal.SIGTERM, state.step
                    )  # another rank was signalled
        epoch_stats = running.compute(across_ranks=True)
        self._check_finite(epoch_stats["loss"], state)
        trained_here = epoch_stats["count"] - resumed_count
        epoch_stats["samples_per_sec"] = trained_here / max(time.perf_counter() - epoch_start, 1e-9)
        return epoch_stats

    def _check_finite(self, loss: float, state: FitState) -> None:
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                f"the training loss became {loss} in epoch {state.epoch + 1}, by optimizer step "
                f"{state.step} (checked every trainer.log_every_n_steps={self.log_every_n_steps} "
                "steps); usual causes: a learning rate too high (lower optimizer.lr), fp16 "
                "overflow (use trainer.precision=bf16 or 32), or NaN/Inf in the data; last.pt and "
                "best.pt keep the last finite state."
            )

    @torch.inference_mode()
    def evaluate(
        self, model: nn.Module, loader: Loader, n_batches: int | None = None, tta: str = "none"
    ) -> dict[str, float]:
        """Mean loss and accuracy of model over (the first n_batches of) loader, each batch seen
        through the test-time augmentation `tta` (see nntrain.inference.tta)."""
        model.eval()
        running = RunningClassification(self.device)
        for index, (inputs, targets) in enumerate(loader):
            if n_batches is not None and index >= n_batches:
                break
            with self.autocast():
                logits = tta_logits(model, self._to_model_layout(inputs), tta)
                loss = F.cross_entropy(logits.float(), targets)
            running.update(loss, logits, targets)
        return running.compute()

    @torch.inference_mode()
    def predict(
        self, model: nn.Module, loader: Loader, tta: str = "none"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All logits (float32) and targets of loader, gathered on the device and moved to the
        CPU in one transfer at the end; `tta` as in evaluate."""
        model.eval()
        outputs, labels = [], []
        for inputs, targets in loader:
            with self.autocast():
                outputs.append(tta_logits(model, self._to_model_layout(inputs), tta).float())
            labels.append(targets)
        return torch.cat(outputs).cpu(), torch.cat(labels).cpu()

    def test(self, model: nn.Module, data: DataModule, checkpoint: str | Path) -> dict[str, float]:
        """Load the checkpoint's weights into model and score it on the test split."""
        state = load_checkpoint(checkpoint, map_location=self.device)
        model.load_state_dict(state["model"])
        tta = self.test_time_augmentation
        stats = self.evaluate(model, data.test_loader(), tta=tta)
        log.info(
            f"test with {Path(checkpoint).name} (epoch {state['epoch']}"
            f"{'' if tta == 'none' else ', test-time augmentation ' + tta}): "
            f"test/loss {stats['loss']:.4f}  test/acc {stats['acc']:.4f}"
        )
        return {"test/loss": stats["loss"], "test/acc": stats["acc"]}
