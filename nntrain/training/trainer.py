"""The training loop: fit a model on a data object, keep the best epoch, test it.

Read Trainer.fit top to bottom: prepare the run (or resume it), then per epoch train (one
train_step per optimizer step, see step.py), end the epoch (validate, early-stop, checkpoint),
and finish (test the best weights, write metrics.json and the figures). The per-step path has
no host synchronisation except on log and checkpoint steps: metrics accumulate on the device,
and a non-finite loss shows up in their sums, so it is caught there too.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nntrain import files, runs
from nntrain.checkpoint import load_checkpoint, save_checkpoint
from nntrain.data.class_weights import describe as describe_class_weights
from nntrain.data.mixing import Mixing
from nntrain.data.protocols import DataModule, Loader, task_of
from nntrain.devices import Compute, resolve_device, resolve_precision
from nntrain.errors import UserError, require
from nntrain.inference.logits import score, score_regression
from nntrain.inference.metrics import RunningClassification, RunningRegression, running_metrics
from nntrain.models.contract import training_fault
from nntrain.models.hooks import EpochAware, InitializedFromData
from nntrain.optim.optimizers import build_optimizer
from nntrain.optim.schedules import PlateauSchedule
from nntrain.reporting.console import TrainProgress, display_path, figure
from nntrain.reporting.model_summary import model_summary
from nntrain.reporting.tensorboard import RunLogger, TensorBoardLogger
from nntrain.schema import checked
from nntrain.tasks import CLASSIFICATION, Task
from nntrain.training import distributed
from nntrain.training.compilation import require_a_cxx_compiler, use_persistent_cache
from nntrain.training.compiled_step import captured_mode, check_cuda_graphs, describe_capture
from nntrain.training.early_stopping import NO_MONITOR, EarlyStopping
from nntrain.training.ema import start_ema
from nntrain.training.end_of_run import write_end_of_run
from nntrain.training.epoch_judge import EpochJudge
from nntrain.training.fit_step import FitStep
from nntrain.training.lookahead import Lookahead
from nntrain.training.overfit import overfit_loader
from nntrain.training.seeding import configure_determinism
from nntrain.training.settings import TrainerSettings
from nntrain.training.signals import StopRequests, TrainingInterrupted
from nntrain.training.state import Run, RunState
from nntrain.training.step import StepParts, optimizer_step_groups

log = logging.getLogger("nntrain")


class NonFiniteLoss(UserError):
    """The training loss became NaN or infinite."""


def limit_batches(available: int, limit: int | float) -> int:
    """Lightning's convention: an int is a number of batches, a float a fraction of them
    (checked by TrainerSettings)."""
    if isinstance(limit, int):
        return min(available, limit)
    return max(1, int(available * limit))


class Trainer:
    """Holds the training settings (checked when built, before any data is loaded) and runs
    fit: train + validate per epoch, early stopping, checkpoints, resume, then the test."""

    def __init__(self, settings: TrainerSettings | None = None, **values: Any) -> None:
        """settings: the trainer node, checked (nntrain.schema.checked); or the settings as
        keyword arguments (Trainer(max_epochs=3)), checked here. Nothing is loaded yet."""
        s = settings if settings is not None else checked(TrainerSettings, values)
        self.settings = s
        self.max_epochs = s.max_epochs
        self._use_devices(s.device, s.precision, s.dist_timeout_s)
        self.grad_clip, self.grad_clip_mode = s.grad_clip, s.grad_clip_mode
        self.ema = s.ema
        self.accumulate = s.accumulate_grad_batches
        self.limit_train_batches, self.limit_val_batches = (
            s.limit_train_batches,
            s.limit_val_batches,
        )
        # Each fit starts a restarted copy.
        self.early_stopping = EarlyStopping(**vars(s.early_stopping))
        self.deterministic, self.progress = s.deterministic, s.progress
        self.log_every_n_steps = s.log_every_n_steps
        self.channels_last = s.channels_last  # the setting; each fit decides for its model
        self.checkpoint_every_n_steps = s.checkpoint.every_n_steps
        self.report_images, self.sync_batchnorm = s.report_images, s.sync_batchnorm
        check_sync_batchnorm(self.sync_batchnorm, self.world, self.device)
        self.label_smoothing = s.label_smoothing
        self.lookahead = Lookahead(**vars(s.lookahead))
        self.test_time_augmentation = s.test_time_augmentation
        self.compile = check_compile(s.compile, self.device)
        self.fused_optimizer = s.fused_optimizer
        self.cuda_graphs = check_cuda_graphs(s.cuda_graphs or False, self.device)
        self.overfit_batches = s.overfit_batches or 0
        # The step the last fit trained with and its set-up time: an outcome, read by tests and
        # benchmarks; the loop reads its own fit's (Run.fit_step).
        self.last_step: FitStep | None = None
        # A search's pruner (nntrain.launch.search_trial), set by the job that runs a trial.
        self.judge: EpochJudge | None = None

    def _use_devices(self, device: str, precision: str | int, dist_timeout_s: float) -> None:
        """This process's place in a torchrun job (world, rank), its device and precision."""
        self.world, self.rank = distributed.world_size(), distributed.rank()
        # A frozen rank ends the job after this long (see README, Clusters).
        distributed.set_timeout(dist_timeout_s)
        if self.world > 1 and torch.cuda.is_available() and str(device) == "auto":
            device = f"cuda:{distributed.local_rank()}"  # one GPU per torchrun process
        self.device = resolve_device(str(device))
        self.precision = precision
        self.autocast_dtype = resolve_precision(precision, self.device)

    def compute_for(self, model: nn.Module) -> Compute:
        """Device, autocast dtype and memory layout for model (channels_last=auto: conv models)."""
        return Compute.resolve(self.device, self.precision, self.channels_last, model)

    def fit(
        self,
        model: nn.Module,
        data: DataModule,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler],
        run_dir: str | Path,
        record: dict[str, Any] | None = None,
        resume: dict[str, Any] | None = None,
    ) -> dict[str, float]:
        """Train, keep the best epoch by the monitored metric, test it; returns metrics.json's
        content.

        optimizer and scheduler are the config's partials (called with the parameter groups,
        and with the optimizer and step counts). record: how the run was started (its config as
        YAML under "config", its command-line overrides under "overrides"), kept in every
        checkpoint. resume: a checkpoint of this run (last.pt) to continue from, exactly where
        it was saved.
        """
        run = self._prepare(
            model, data, optimizer, scheduler, Path(run_dir), record or {}, resume is not None
        )
        if resume is not None:
            self._resume(run, resume)
        # A resumed run rewrites TensorBoard's curves after its checkpoint's step (purge_step),
        # so steps trained after the last checkpoint of the interrupted run do not appear twice;
        # the points of that step itself (its epoch's val/loss) were trained before it and stay.
        purge_step = run.state.step + 1 if resume else None
        run.tensorboard = self._open_logger(run.run_dir, purge_step)
        state = run.state
        try:
            with TrainProgress(self.progress) as progress, StopRequests() as stop:
                while state.epoch < self.max_epochs and not state.stopper.should_stop:
                    epoch_start = time.perf_counter()
                    self._start_epoch(run)
                    train = self._train_epoch(run, progress, stop)
                    progress.validating()
                    self._end_epoch(run, train, epoch_start, stop)
            return self._finish_all_ranks(run) if self.world > 1 else self._finish(run)
        except (UserError, TrainingInterrupted):
            raise
        except Exception as error:
            fault = training_fault(error, run.model)  # the user's to fix, not our bug
            if fault is not None:
                raise UserError(fault) from error
            raise
        finally:
            run.tensorboard.close()

    def _finish_all_ranks(self, run: Run) -> dict[str, float]:
        """_finish under DDP. A stop signal that reaches one rank during the final test cannot
        stop it alone (the others would wait for it in their next collective): every rank
        finishes the test, one pass over the test split, and the run is complete."""
        with StopRequests(finishing="the final test first (it completes the run)") as late:
            result = self._finish(run)
        if late.signum is not None:
            log.info(
                f"{signal.Signals(late.signum).name} arrived during the final test; the test was "
                "finished on every rank and the run is complete."
            )
        return result

    # -- the phases of fit, in order --------------------------------------------------------

    def _prepare(
        self,
        model: nn.Module,
        data: DataModule,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler],
        run_dir: Path,
        record: dict[str, Any],
        resuming: bool,
    ) -> Run:
        """Everything a run needs before its first step: the model on the device in its memory
        layout (and its data-dependent weights, unless resuming), the loaders, the optimizer,
        schedule and scaler, and a fresh RunState."""
        task = task_of(data)
        check_data_fits(data, self.test_time_augmentation, task)
        log_class_weights(data)
        configure_determinism(self.deterministic, self.device)
        self._tidy_run_dir(run_dir)
        data.setup(self.device)
        compute = self.compute_for(model)
        model = self._place_model(model, data, compute, resuming)
        self._write_model_summary(model, data, run_dir)
        forward = self._wrap_for_training(model)
        train_loader, val_loader = self._loaders(data)
        train_batches, val_batches = self._batch_counts(train_loader, val_loader)
        steps_per_epoch = math.ceil(train_batches / self.accumulate)
        total_steps = steps_per_epoch * self.max_epochs
        opt = build_optimizer(optimizer, model, self.fused_optimizer)
        schedule = scheduler(opt, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
        fit_step = self._choose_step(model, compute, opt, schedule)
        state = self._fresh_state(model, opt, schedule, compute, task)
        log.info(
            f"{describe_parameters(model)} (layers: model_summary.txt) | device {self.device} | "
            f"{compute.precision_name}{describe_capture(fit_step.mode, self.device)} | "
            f"{train_batches} batches, {steps_per_epoch} optimizer steps per epoch"
        )
        return Run(
            state=state,
            model=model,
            forward=forward,
            data=data,
            train_loader=train_loader,
            val_loader=val_loader,
            train_batches=train_batches,
            val_batches=val_batches,
            total_steps=total_steps,
            compute=compute,
            run_dir=run_dir,
            metadata={
                "class_names": list(data.class_names),
                "config": "",
                **record,
                "inputs": data.input_spec(),
            },
            tensorboard=RunLogger(),  # opened by fit once the run's first step is known
            fit_step=fit_step,
            task=task,
            target_scale=float(getattr(data, "target_std", 1.0)),
        )

    def _write_model_summary(self, model: nn.Module, data: DataModule, run_dir: Path) -> None:
        """model_summary.txt: the layers, their output shapes and parameters (rank 0 only)."""
        if self.rank == 0:
            summary = model_summary(model, tuple(data.input_shape), self.device)
            files.write_text(run_dir / "model_summary.txt", summary)

    def _tidy_run_dir(self, run_dir: Path) -> None:
        """Temporary files of a checkpoint write cut short (a kill mid-save) are removed, said."""
        if self.rank == 0:
            for stale in runs.remove_stale_temporaries(run_dir):
                log.info(f"removed {stale.name}, left by a checkpoint write that was cut short")

    def _fresh_state(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
        compute: Compute,
        task: Task,
    ) -> RunState:
        """A run's state at its first step: what a checkpoint restores when resuming."""
        stopper = self._stopper_for(task)
        state = RunState(
            model=model,
            optimizer=optimizer,
            scheduler=schedule,
            scaler=compute.grad_scaler(),
            stopper=stopper,
            lookahead=self.lookahead.restarted(),
            ema=start_ema(self.ema, model),  # of the plain module: DDP's ranks hold the same one
        )
        if isinstance(state.scheduler, PlateauSchedule):
            follow_monitor(state.scheduler, stopper, task)
        return state

    def _choose_step(
        self,
        model: nn.Module,
        compute: Compute,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
    ) -> FitStep:
        """train_step, or a captured step (trainer.cuda_graphs), with its set-up to time."""
        captured = captured_mode(
            self.cuda_graphs,
            self.device,
            model,
            compute.autocast_dtype,
            self.world,
            optimizer,
            schedule,
        )
        fit_step = FitStep.choose(captured, self.device, compiled=bool(self.compile))
        self.last_step = fit_step
        return fit_step

    def _batch_counts(self, train_loader: Loader, val_loader: Loader) -> tuple[int, int]:
        """Batches an epoch trains and validates on (this rank's shard, after limit_*)."""
        if self.world > 1:  # each rank trains on its own shard of every epoch's order
            train_loader.shard(self.rank, self.world)
        train_batches = limit_batches(len(train_loader), self.limit_train_batches)
        val_batches = limit_batches(len(val_loader), self.limit_val_batches)
        check_validation(len(val_loader), self.early_stopping.monitor)
        return train_batches, val_batches

    def _loaders(self, data: DataModule) -> tuple[Loader, Loader]:
        """The training and validation loaders; under trainer.overfit_batches (the sanity
        check) both are the same few training batches."""
        if self.overfit_batches:
            batches = overfit_loader(data, self.overfit_batches)
            return batches, batches
        return data.train_loader(), data.val_loader()

    def _place_model(
        self, model: nn.Module, data: DataModule, compute: Compute, resuming: bool
    ) -> nn.Module:
        """The model as it trains: SyncBatchNorm under torchrun when asked, on the device in
        its memory layout, with its data-dependent weights (e.g. a whitening layer) unless a
        checkpoint brings them."""
        if self.world > 1 and self.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            synced = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
            log.info(
                f"SyncBatchNorm: {synced} BatchNorm layers use all {self.world} ranks' batches"
            )
        model.to(self.device)
        if compute.channels_last:
            model.to(memory_format=torch.channels_last)
        if isinstance(model, InitializedFromData) and not resuming:
            model.initialize_from_data(first_inputs(data, compute, model.init_samples))
        return model

    def _resume(self, run: Run, checkpoint: dict[str, Any]) -> None:
        """Put a checkpoint of this run back: the run continues exactly where it was saved."""
        run.state.load(checkpoint)
        state = run.state
        log.info(
            f"resumed at epoch {state.epoch + 1}, batch {state.batches_done}, "
            f"optimizer step {state.step}"
        )
        self._align_schedule(run)
        if state.epoch >= self.max_epochs or state.stopper.should_stop:
            why = (
                "it stopped early"
                if state.stopper.should_stop
                else f"it has trained {state.epoch} epochs, trainer.max_epochs={self.max_epochs}"
            )
            log.info(f"nothing more to train ({why}): testing the run as it is")

    def _align_schedule(self, run: Run) -> None:
        """Continue the schedule where this run's own steps would have brought it by the saved
        epoch and batch. Resumed with another trainer.accumulate_grad_batches or
        limit_train_batches, an epoch has another number of steps and the schedule another
        length: the saved step count would land elsewhere in it (a larger
        accumulate_grad_batches ends a cosine early and trains the rest at its floor)."""
        state, scheduler = run.state, run.state.scheduler
        if isinstance(scheduler, PlateauSchedule) or state.epoch >= self.max_epochs:
            return  # plateau: stepped per epoch; nothing left to train
        steps_per_epoch = run.total_steps // self.max_epochs
        done = min(state.batches_done, run.train_batches)
        position = state.epoch * steps_per_epoch + done // self.accumulate
        if position == scheduler.last_epoch:
            return
        log.info(
            f"the schedule continues at step {position} of {run.total_steps}: this run's "
            f"{steps_per_epoch} optimizer steps per epoch differ from the checkpoint's "
            "(trainer.accumulate_grad_batches or limit_train_batches changed)"
        )
        scheduler.last_epoch = position - 1
        scheduler.step()  # sets each group's lr (and a cycled momentum) for that position

    def _start_epoch(self, run: Run) -> None:
        """The model's own epoch hook, e.g. unfreeze a backbone at epoch k."""
        state, model = run.state, run.model
        if isinstance(model, EpochAware):
            trainable = [p.requires_grad for p in model.parameters()]
            model.on_epoch_start(state.epoch)
            # DDP all-reduces the parameters that were trainable when it was built: a change
            # needs a new wrapper, or the ranks drift apart.
            if self.world > 1 and trainable != [p.requires_grad for p in model.parameters()]:
                run.forward = self._wrap_for_training(model)

    def _train_epoch(
        self, run: Run, progress: TrainProgress, stop: StopRequests
    ) -> dict[str, float]:
        """One epoch of training, from state.batches_done on (non-zero when resuming mid-epoch)."""
        state = run.state
        run.forward.train()
        first_batch = state.batches_done
        run.train_loader.set_epoch(state.epoch, start_batch=first_batch)
        carried = state.running_sums if self.rank == 0 else None  # see _save_mid_epoch
        running = self._running(run, carried)
        resumed_count = running.compute()["count"] if first_batch else 0
        window = LogWindow(running.snapshot(), time.perf_counter())
        progress.start_epoch(state.epoch, self.max_epochs, run.train_batches, completed=first_batch)
        parts = self._step_parts(run)
        epoch_start = time.perf_counter()
        groups = optimizer_step_groups(
            run.train_loader, first_batch, run.train_batches, self.accumulate
        )
        # overfit_batches fits its batches as they are: no MixUp/CutMix either.
        mixing = mixing_of(run.data) if not self.overfit_batches else None
        compile_seconds = 0.0
        for batches_done, micro_batches in groups:
            # Every n steps, and at the epoch's last: a short run still gets its train curves.
            last_of_epoch = batches_done == run.train_batches
            log_step = (state.step + 1) % self.log_every_n_steps == 0 or last_of_epoch
            if mixing is not None:
                first = batches_done - len(micro_batches)
                micro_batches = mixing.mix_group(
                    micro_batches, run.data.num_classes, state.epoch, first, self.rank
                )
            setting_up = run.fit_step.set_up_pending
            grad_norm, seconds = run.fit_step(parts, micro_batches, running, log_step)
            if setting_up:  # timed on its own, left out of the epoch's figures
                compile_seconds += seconds
                epoch_start += seconds
                window = LogWindow(window.sums, window.start + seconds)
                resumed_count += sum(len(targets) for _, targets in micro_batches)
            progress.advance(len(micro_batches))
            state.step += 1
            state.batches_done = batches_done
            state.lookahead.after_step(run.model, state.epoch, state.step, run.total_steps)
            if state.ema is not None:
                state.ema.update(run.model)
            if log_step:
                window = self._log_step(run, running, window, grad_norm, progress)
            self._save_mid_epoch(run, running, stop, log_step)
        epoch_stats = running.compute(reduce=distributed.all_reduce_sum)
        self._check_finite(epoch_stats["loss"], run)
        trained_here = epoch_stats["count"] - resumed_count
        epoch_stats["samples_per_sec"] = trained_here / max(time.perf_counter() - epoch_start, 1e-9)
        epoch_stats["compile_seconds"] = compile_seconds
        return epoch_stats

    def _end_epoch(
        self, run: Run, train: dict[str, float], epoch_start: float, stop: StopRequests
    ) -> None:
        """Validate, keep the best checkpoint, write last.pt, log the epoch; stop if asked."""
        state, stopper = run.state, run.state.stopper
        state.lookahead.at_epoch_end(run.model)
        distributed.broadcast_buffers(run.model)  # the same BatchNorm statistics everywhere
        if state.ema is not None:  # each rank averaged its own statistics
            distributed.broadcast_buffers(state.ema.module)
        val_loss, val = self._score(run, run.val_loader, run.val_batches)  # nan: no val split
        state.epoch, state.batches_done, state.running_sums = state.epoch + 1, 0, None
        names = run.task.metrics  # acc; a regression's rmse, mae, r2
        metrics = {
            "train/loss": train["loss"],
            **{f"train/{name}": train[name] for name in names},
            "val/loss": val_loss,
            **{f"val/{name}": val[name] for name in names},
            "lr": float(state.scheduler.get_last_lr()[0]),
            "train/samples_per_sec": train["samples_per_sec"],
            "epoch_time": time.perf_counter() - epoch_start - train["compile_seconds"],
        }
        state.samples_per_sec.append(train["samples_per_sec"])
        state.history.append({"epoch": state.epoch, **metrics})  # for curves.png
        if isinstance(state.scheduler, PlateauSchedule):  # its lr for the next epoch
            state.scheduler.step(metrics[str(state.scheduler.monitor)])
        improved = stopper.update(
            metrics.get(stopper.monitor, math.nan),
            state.epoch - 1,
            metrics.get(stopper.tie_breaker or "", math.nan),
        )
        if improved:
            state.best_metrics = {"val/loss": val_loss, **{f"val/{n}": val[n] for n in names}}
        verdict = self._judged(run, metrics)  # before the save: last.pt knows it was pruned
        checkpoint = state.checkpoint(metrics=metrics, **run.metadata)
        if improved:
            self._save(checkpoint, run.checkpoints / "best.pt")
        self._save(checkpoint, run.checkpoints / "last.pt")
        shown = ("val/loss", *(f"val/{n}" for n in names), "train/samples_per_sec")
        run.tensorboard.scalars(
            {**{k: metrics[k] for k in shown}, "train/epoch_time": metrics["epoch_time"]},
            state.step,
        )
        for line in run.epoch_table.lines(state.epoch - 1, self.max_epochs, metrics, improved):
            log.info(line)
        if verdict:
            log.info(f"pruned after epoch {state.epoch}: {verdict}")
        # Agreed by all ranks (a signal may have reached one alone, or come during validation).
        signum = distributed.agreed_signal(stop.signum, self.device)
        if signum is not None:
            raise TrainingInterrupted(signum, state.step)
        if stopper.should_stop and not verdict:
            log.info(early_stop_line(stopper))

    def _judged(self, run: Run, metrics: dict[str, float]) -> str | None:
        """Ask the search's pruner (on rank 0: one report per epoch) whether the run should
        stop here; every rank follows its verdict, which stops the run like an early stop."""
        if self.judge is None:
            return None
        state = run.state
        verdict = None
        if self.rank == 0:
            verdict = self.judge.judge(state.epoch, metrics, state.stopper.monitor)
        if self.world > 1:
            verdict = distributed.broadcast_from_main(verdict)
        if verdict:
            state.stopper.prune(state.epoch - 1)
        return verdict

    def _finish(self, run: Run) -> dict[str, float]:
        """Test the best checkpoint on every rank; rank 0 writes metrics.json and the figures."""
        state, stopper = run.state, run.state.stopper
        if stopper.best_epoch < 0:
            raise UserError(
                f"no epoch produced a finite {stopper.monitor}, so there is no best checkpoint; "
                "the loss probably diverged: lower optimizer.lr."
            )
        distributed.barrier()  # best.pt is written (by rank 0) before any rank reads it
        # The EMA too, when on (a list: every rank must check the models in the same order).
        for model in [run.model] if state.ema is None else [run.model, state.ema.module]:
            if not distributed.weights_agree(model, self.device):
                raise RuntimeError("the ranks' weights differ after training: a DDP bug")
        if self.world > 1:
            log.info(f"weights identical on all {self.world} ranks")
        tested = self._tested(run)
        pruned = stopper.pruned_epoch is not None
        test: dict[str, float] = {}
        if not pruned or (self.judge is not None and self.judge.test_when_stopped):
            test = self.test(
                run.model, run.data.test_loader(), run.compute, tested, run.task, run.target_scale
            )
        # The first epoch pays for warm-up (allocations, kernel selection): left out when
        # there are others.
        train_speed = state.samples_per_sec[1:] or state.samples_per_sec
        result = {
            **state.best_metrics,
            **({} if stopper.monitor == NO_MONITOR else {stopper.monitor: stopper.best}),
            **{key: value for key, value in test.items() if key != "test/loss"},  # test/acc
            **({"test/loss": test["test/loss"]} if test else {}),
            "best_epoch": stopper.best_epoch + 1,
            **({"pruned_epoch": stopper.pruned_epoch + 1} if stopper.pruned_epoch is not None else {}),
            # best.pt was not kept (a resume from a loose last.pt): the test is last.pt's
            **({"tested_epoch": state.epoch} if tested.name == "last.pt" else {}),
            "epochs_run": state.epoch,
            "train/samples_per_sec": sum(train_speed) / len(train_speed),
            # torch.compile's first step or a CUDA graph's set-up: in no epoch's time or samples/s
            **(
                {"compile_seconds": run.fit_step.set_up_seconds}
                if run.fit_step.timed_set_up
                else {}
            ),
            # the model's size, e.g. an objective to minimise in a multi-objective search
            "parameters": sum(p.numel() for p in run.model.parameters()),
        }
        if self.rank == 0:
            files.write_json(run.run_dir / "metrics.json", result)
            # after metrics.json: a kill here loses no result
            write_end_of_run(run, result, self.report_images)
        return result

    def _tested(self, run: Run) -> Path:
        """best.pt; or, for a run resumed from a checkpoint kept without its run's best.pt (and
        with no better epoch since), last.pt, said once."""
        best = run.checkpoints / "best.pt"
        if best.is_file() or not (run.checkpoints / "last.pt").is_file():
            return best
        if self.rank == 0:
            log.warning(
                f"best.pt (epoch {run.state.stopper.best_epoch + 1}) is not in "
                f"{display_path(run.checkpoints)}: the run was resumed from a checkpoint kept "
                "without it and no later epoch was better; testing last.pt instead."
            )
        return run.checkpoints / "last.pt"

    def test(
        self,
        model: nn.Module,
        loader: Loader,
        compute: Compute,
        checkpoint: Path,
        task: Task = CLASSIFICATION,
        target_scale: float = 1.0,
    ) -> dict[str, float]:
        """Load the checkpoint's weights into model and score it on loader with the run's
        test-time augmentation (a regression: its RMSE, MAE and R², in the target's units)."""
        saved = load_checkpoint(checkpoint, map_location=self.device)
        model.load_state_dict(saved["model"])
        if not task.has_classes:
            figures = score_regression(model, loader, compute, target_scale)
            test = {
                "test/loss": figures.loss,
                **{f"test/{k}": v for k, v in figures.figures.items()},
            }
            shown = "  ".join(f"{key} {figure(value)}" for key, value in test.items())
            log.info(f"test with {checkpoint.name} (epoch {saved['epoch']}): {shown}")
            return test
        tta = self.test_time_augmentation
        scores = score(model, loader, compute, tta)
        log.info(
            f"test with {checkpoint.name} (epoch {saved['epoch']}"
            f"{'' if tta == 'none' else ', test-time augmentation ' + tta}): "
            f"test/loss {scores.loss:.4f}  test/acc {scores.acc:.4f}"
        )
        return {"test/loss": scores.loss, "test/acc": scores.acc}

    # -- helpers of the phases ----------------------------------------------------------------

    def _step_parts(self, run: Run) -> StepParts:
        state = run.state
        return StepParts(
            model=run.model,
            forward=run.forward,
            optimizer=state.optimizer,
            # plateau steps once per epoch, after validation (_end_epoch), not per step
            scheduler=None if isinstance(state.scheduler, PlateauSchedule) else state.scheduler,
            scaler=state.scaler,
            compute=run.compute,
            grad_clip=self.grad_clip,
            label_smoothing=self.label_smoothing,
            distributed=self.world > 1,
            task=run.task,
            class_weights=loss_weights(run.data, self.device),
            grad_clip_mode=self.grad_clip_mode,
        )

    def _log_step(
        self,
        run: Run,
        running: RunningClassification | RunningRegression,
        window: LogWindow,
        grad_norm: torch.Tensor | None,
        progress: TrainProgress,
    ) -> LogWindow:
        """The log step's one host sync: train figures since the last log step to TensorBoard
        and the progress bar; a non-finite loss stops the run here."""
        state = run.state
        sums = running.snapshot()
        groups = state.optimizer.param_groups
        # The sums, the gradient norm and the learning rates (device tensors under a captured
        # step) come back in one transfer: each read would wait for the device on its own.
        since = distributed.all_reduce_sum(sums - window.sums)
        extras = [grad_norm, *(g["lr"] for g in groups)]
        on_device = [x.reshape(1).to(since.dtype) for x in extras if isinstance(x, torch.Tensor)]
        read = iter(torch.cat([since, *on_device]).tolist())
        stats = running.figures([next(read) for _ in range(len(since))])
        host = [next(read) if isinstance(x, torch.Tensor) else x for x in extras]
        self._check_finite(stats["loss"], run)
        now = time.perf_counter()
        norm, lrs = host[0], host[1:]
        names = run.task.metrics
        run.tensorboard.scalars(
            {
                "train/loss": stats["loss"],
                **{f"train/{name}": stats[name] for name in names},
                "train/grad_norm": norm if norm is not None else math.nan,
                "train/lr": lrs[0],
                **{
                    f"train/lr_{g.get('name', i)}": lr
                    for i, (g, lr) in enumerate(zip(groups, lrs, strict=True))
                },
            },
            state.step,
        )
        main = run.task.main_metric  # acc, or a regression's r2
        rate = stats["count"] / (now - window.start)
        progress.show(stats["loss"], stats[main], lrs[0], rate, metric=main)
        return LogWindow(sums, now)

    def _save_mid_epoch(
        self,
        run: Run,
        running: RunningClassification | RunningRegression,
        stop: StopRequests,
        log_step: bool,
    ) -> None:
        """last.pt every trainer.checkpoint.every_n_steps, and when a stop signal came (then
        stop). Under DDP every rank must stop at the same step: they agree at log steps."""
        state, every = run.state, self.checkpoint_every_n_steps
        signum = stop.signum
        if self.world > 1:
            signum = distributed.agreed_signal(signum, self.device) if log_step else None
        stopping = signum is not None
        if not (stopping or (every and state.step % every == 0)):
            return
        self._check_finite(
            running.compute(reduce=distributed.all_reduce_sum)["loss"], run
        )  # no NaN saved
        # The epoch's sums over all ranks; on resume rank 0 carries them alone.
        state.running_sums = distributed.all_reduce_sum(running.snapshot())
        self._save(state.checkpoint(**run.metadata), run.checkpoints / "last.pt")
        if signum is not None:  # another rank may have been the one signalled
            raise TrainingInterrupted(signum, state.step)

    # -- the task switch: classification (the default) or regression -------------------------

    def _stopper_for(self, task: Task) -> EarlyStopping:
        """The run's early stopping; a regression has no accuracy: a monitor of one becomes
        its default, val/loss (min), and the log says so."""
        stopper = self.early_stopping.restarted()
        if task.offers(stopper.monitor):
            return stopper
        require(
            not task.has_classes,
            f"trainer.early_stopping.monitor={stopper.monitor} is a regression figure and this "
            "data is a classification; monitor val/acc or val/loss.",
        )
        monitor, mode = task.default_monitor, task.default_mode
        log.info(
            f"{task.name}: early stopping and best.pt follow {monitor} ({mode}) instead of "
            f"{stopper.monitor}; set trainer.early_stopping.monitor=val/r2 "
            "trainer.early_stopping.mode=max (or val/rmse, val/mae) to choose"
        )
        return EarlyStopping(monitor, mode, stopper.patience, stopper.min_delta)

    def _running(
        self, run: Run, carried: torch.Tensor | None
    ) -> RunningClassification | RunningRegression:
        # The eager step counts correct predictions at reads (fewer ops a step); a captured
        # one records update() into the sums tensor as it is (see RunningClassification).
        return running_metrics(
            run.task, self.device, run.target_scale, carried, deferred=run.fit_step.eager
        )

    def _score(self, run: Run, loader: Loader, limit: int | None) -> tuple[float, dict[str, float]]:
        """(loss, figures) on an evaluation loader: accuracy, or RMSE, MAE and R²; of the
        weights' EMA when trainer.ema is on."""
        model = run.state.evaluated_model
        if not run.task.has_classes:
            scores = score_regression(model, loader, run.compute, run.target_scale, limit)
        else:
            scores = score(model, loader, run.compute, limit=limit)
        return scores.loss, scores.figures

    def _open_logger(self, run_dir: Path, purge_step: int | None) -> RunLogger:
        if self.rank != 0:
            return RunLogger()
        return TensorBoardLogger(run_dir, purge_step=purge_step)

    def _save(self, checkpoint: dict[str, Any], path: Path) -> None:
        if self.rank == 0:  # one writer; every rank holds the same state
            save_checkpoint(checkpoint, path)

    def _wrap_for_training(self, model: nn.Module) -> nn.Module:
        """What the training step calls: under torchrun, DDP (it averages the gradients across
        ranks), and torch.compile when asked. The plain model stays what checkpoints,
        evaluation and the test use, so state dicts carry no `module.` or `_orig_mod.` prefix."""
        forward = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            cuda = self.device.type == "cuda"
            forward = DistributedDataParallel(model, device_ids=[self.device] if cuda else None)
        if self.compile:  # only the training forward is compiled
            use_persistent_cache()
            mode = None if self.compile in (True, "default") else str(self.compile)
            forward = torch.compile(forward, mode=mode)  # type: ignore[assignment]
        return forward

    def _check_finite(self, loss: float, run: Run) -> None:
        if not math.isfinite(loss):
            state = run.state
            # Said as it is: a run that diverges in its first epoch has saved nothing.
            kept = [name for name in ("last.pt", "best.pt") if (run.checkpoints / name).is_file()]
            saved = (
                f"{' and '.join(kept)} keep{'s' if len(kept) == 1 else ''} the last finite state"
                if kept
                else "no checkpoint was saved before it"
            )
            raise NonFiniteLoss(
                f"the training loss became {loss} in epoch {state.epoch + 1}, by optimizer step "
                f"{state.step} (checked every trainer.log_every_n_steps={self.log_every_n_steps} "
                "steps); usual causes: a learning rate too high (lower optimizer.lr), fp16 "
                f"overflow (use trainer.precision=bf16 or 32), or NaN/Inf in the data; {saved}."
            )


@dataclass
class LogWindow:
    """The metric sums and the time at the last log step: the next one reports the figures of
    the steps in between."""

    sums: torch.Tensor
    start: float


def first_inputs(data: DataModule, compute: Compute, count: int) -> torch.Tensor:
    """At least `count` training inputs of epoch 0 (as the model sees them), for data-dependent
    initialisation."""
    loader = data.train_loader()
    loader.set_epoch(0)
    batches, seen = [], 0
    for inputs, _ in loader:
        batches.append(compute.to_model_layout(inputs))
        seen += len(inputs)
        if seen >= count:
            break
    return torch.cat(batches)[:count]


def check_data_fits(data: DataModule, tta: str, task: Task = CLASSIFICATION) -> None:
    """What would otherwise fail (or mean nothing) only after the whole training."""
    require(
        not task.has_classes or data.num_classes >= 2,
        f"the data has {data.num_classes} class ({', '.join(data.class_names)}); a classifier "
        "needs at least two: add the images of another class (for an image folder, another "
        "sub-folder of train/).",
    )
    require(
        mixing_of(data) is None or (task.has_classes and len(data.input_shape) == 3),
        f"data.mixup_alpha and data.cutmix_alpha mix images of a classification, and this data "
        f"has {len(data.input_shape)}-D inputs {tuple(data.input_shape)} ({task.name}); set both "
        "to 0.",
    )
    require(
        tta == "none" or len(data.input_shape) == 3,
        f"trainer.test_time_augmentation={tta} needs images, and this data has "
        f"{len(data.input_shape)}-D inputs {tuple(data.input_shape)}; set "
        "trainer.test_time_augmentation=none.",
    )


def log_class_weights(data: DataModule) -> None:
    if (weights := loss_weights(data, torch.device("cpu"))) is not None:
        log.info(describe_class_weights(weights, data.class_names))


def loss_weights(data: DataModule, device: torch.device) -> torch.Tensor | None:
    """The training loss's per-class weights (data.class_weights; an optional attribute of a
    data class, None or absent: unweighted)."""
    weights = getattr(data, "class_weights", None)
    return None if weights is None else weights.to(device)


def mixing_of(data: DataModule) -> Mixing | None:
    """The data's MixUp/CutMix settings (data.mixup_alpha, ...) when they mix anything."""
    mixing = getattr(data, "mixing", None)
    return mixing if isinstance(mixing, Mixing) and mixing.enabled else None


def follow_monitor(schedule: PlateauSchedule, stopper: EarlyStopping, task: Task) -> None:
    """scheduler=plateau follows trainer.early_stopping's figure unless it names its own, which
    must be one the run computes."""
    figures = task.monitors
    require(
        schedule.monitor is None or schedule.monitor in figures,
        f"scheduler.monitor={schedule.monitor} is not a figure of this run; use one of "
        f"{', '.join(figures)}, or null (trainer.early_stopping.monitor).",
    )
    require(
        schedule.monitor is not None or stopper.monitor != NO_MONITOR,
        "scheduler=plateau follows trainer.early_stopping.monitor, which is none; set "
        "scheduler.monitor (e.g. train/loss) or another trainer.early_stopping.monitor.",
    )
    schedule.follow(stopper.monitor, stopper.mode)


def early_stop_line(stopper: EarlyStopping) -> str:
    tie = (
        f"; best.pt is epoch {stopper.best_epoch + 1}, of those epochs the one with the "
        f"lowest {stopper.tie_breaker}"
        if stopper.best_epoch != stopper.improved_epoch
        else ""
    )
    return (
        f"early stopping: {stopper.monitor} has not improved for {stopper.wait} epochs "
        f"(best {stopper.best:.4f}, first at epoch {stopper.improved_epoch + 1}{tie})"
    )


def describe_parameters(model: nn.Module) -> str:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{type(model).__name__}: {trainable:,} trainable / {total:,} parameters"


def check_validation(val_batches: int, monitor: str) -> None:
    """A run without a validation split (data.val_fraction=0) cannot pick its weights by one."""
    require(
        val_batches > 0 or not monitor.startswith("val/"),
        f"data.val_fraction=0 leaves no validation split and trainer.early_stopping.monitor="
        f"{monitor} needs one; set trainer.early_stopping.monitor=none (test the final weights) "
        "or a data.val_fraction above 0.",
    )


def check_compile(setting: bool | str, device: torch.device) -> bool | str:
    """trainer.compile on a CPU needs a C++ compiler on this machine."""
    if setting and device.type == "cpu":
        require_a_cxx_compiler("trainer.compile on a CPU", "trainer.compile=false")
    return setting


def check_sync_batchnorm(sync_batchnorm: bool, world: int, device: torch.device) -> None:
    require(
        not (sync_batchnorm and world > 1 and device.type != "cuda"),
        "trainer.sync_batchnorm=true needs CUDA devices (PyTorch's SyncBatchNorm has no CPU "
        "implementation); leave it off on CPU.",
    )
