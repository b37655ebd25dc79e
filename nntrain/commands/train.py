"""The `nntrain` command: Hydra composes configs/train.yaml with the user's overrides, this
module builds the data, model, optimizer and schedule from it and hands them to the Trainer.

No training logic lives here. Errors the user can fix (UserError) end as one line on stderr and
exit status 1, without a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from nntrain import runs
from nntrain.commands.common import check_no_missing_values, run_app, user_errors_end_in_one_line
from nntrain.commands.schema_check import check_settings
from nntrain.errors import UserError
from nntrain.instantiate import build
from nntrain.launch import search_trial
from nntrain.launch.resume import (
    absolute_data_files,
    accept_resume,
    command_line_overrides,
    resumed_state,
)
from nntrain.launch.run_dirs import leave_status, refuse_a_taken_run_dir

if TYPE_CHECKING:
    from nntrain.training.epoch_judge import EpochJudge

# How a trial of an Optuna search that Ctrl-C stopped goes on: its sweeper queues it again.
CONTINUE_THE_SEARCH = (
    "continue the search with the same command and hydra.sweep.dir (or storage): this trial "
    "runs again first, from its last.pt"
)


def run(
    cfg: DictConfig,
    run_dir: str,
    show_progress: bool = False,
    on_accepted: Callable[[], None] | None = None,
    judge: EpochJudge | None = None,
) -> dict[str, float]:
    """Build everything from the composed config, fit, test; returns the run's metrics.
    on_accepted is called once every value is checked (and a resume matches its run), right
    before training: until then nothing of an existing run has changed. judge: a search's
    pruner, asked at each epoch's end."""
    from nntrain.reporting import console
    from nntrain.training import distributed
    from nntrain.training.seeding import check_seed, seed_everything

    started = time.perf_counter()
    check_no_missing_values(cfg)
    main_process = distributed.is_main_process()
    tree = start_reporting(cfg, main_process)  # (a resume's train.log is kept closed)
    check_seed(cfg.seed)  # before data.seed, which is ${seed}
    check_settings(cfg)  # every value, before anything is built or written
    absolute_data_files(cfg)
    resume = resumed_state(cfg)  # before the data is read: a changed table is refused first
    trainer = build(cfg.trainer, "trainer", progress=show_progress and cfg.trainer.progress)
    trainer.judge = judge
    data = build(cfg.data, "data")
    seed_everything(cfg.seed)  # right before the model: its initial weights follow the seed
    model = build_model(cfg, data)
    optimizer = build(cfg.optimizer, "optimizer")
    scheduler = build(cfg.scheduler, "scheduler")
    # The checkpoints' copy of the config: resume= is how this process started, not the run.
    saved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    saved["resume"] = None
    if resume is not None:
        accept_resume(cfg, resume, saved, Path(run_dir), main_process, tree)
    if on_accepted is not None:
        on_accepted()
    # A frozen or lost rank ends the run as one sentence.
    with distributed.peers_must_answer(console.display_path(run_dir)):
        result = trainer.fit(
            model,
            data,
            optimizer,
            scheduler,
            run_dir=run_dir,
            record={"config": OmegaConf.to_yaml(saved), "overrides": command_line_overrides()},
            resume=resume,
        )
    if main_process:
        wall_time = time.perf_counter() - started
        console.print_summary(result, run_dir, name=str(cfg.name), wall_time_s=wall_time)
    return result


def start_reporting(cfg: DictConfig, main_process: bool) -> Any:
    """The config tree printed (by rank 0 only: the other ranks report only problems), and
    returned for train.log, which takes nothing until a resume is accepted."""
    from nntrain.reporting import console

    if not main_process:
        console.log.setLevel("WARNING")
    console.LOG_FILE["enabled"] = not cfg.get("resume")
    if not main_process:
        return None
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.get()
    typed = [o for o in hydra_config.overrides.task if not o.split("=")[0].startswith("hydra.")]
    return console.print_config_tree(cfg, hydra_config.runtime.choices, typed)


def device_for_job(setting: str, job_number: int, cuda_devices: int | None = None) -> str:
    """In a sweep on a machine with several GPUs, job n trains on GPU n mod count: parallel jobs
    (hydra/launcher=joblib) spread over the GPUs instead of piling onto the first. Only for
    trainer.device=auto; CUDA_VISIBLE_DEVICES narrows the GPUs counted, as usual."""
    if setting != "auto":
        return setting
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count()
    return f"cuda:{job_number % cuda_devices}" if cuda_devices > 1 else setting


def train(cfg: DictConfig) -> float:
    """The Hydra job: run in Hydra's run dir; return the best monitored value (for sweepers).
    Every job leaves status.json (ok, pruned or failed, the error, the wall time) in its
    directory: the sweep summary reads it. In a multirun a failed job is recorded and the sweep
    goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from nntrain.commands.search_guard import refuse_a_search_without_multirun
    from nntrain.launch.job_process import keep_collector_off_imports
    from nntrain.reporting.console import interactive, log
    from nntrain.training import distributed
    from nntrain.training.signals import TrainingInterrupted

    distributed.init_from_env()  # a SLURM job's tasks (srun) join here; torchrun's did in main
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # No live progress in multirun: its logs would fill with redraws.
    show_progress = interactive() and not multirun
    if multirun:  # one job after another in this process (job_process.py says why)
        keep_collector_off_imports()
        with open_dict(cfg):
            cfg.trainer.device = device_for_job(cfg.trainer.device, hydra_cfg.job.num)
    start = time.perf_counter()
    status: dict[str, Any] = {"status": "ok", "error": None}
    accepted: list[bool] = []  # a resume refused before training leaves its run as it was
    try:
        refuse_a_search_without_multirun(cfg, hydra_cfg)  # hparams_search=... without -m
        result = run_as_trial(cfg, hydra_cfg, run_dir, show_progress, accepted)
        if "pruned_epoch" in result:
            status.update(status="pruned", pruned_epoch=int(result["pruned_epoch"]))
        status["objective"] = objective_of(cfg, result)
        return result[status["objective"]["metric"]]
    except TrainingInterrupted as stop:  # Ctrl-C stops the whole sweep, not one job
        status = {"status": "interrupted", "error": str(stop)}
        if multirun:  # the sweep's table says how to continue this job
            status["error"] += f"; {how_to_continue(hydra_cfg, run_dir)}"
        raise
    except KeyboardInterrupt:  # outside the training loop: while starting, or in the test
        status = {"status": "interrupted", "error": "KeyboardInterrupt"}
        raise
    except SystemExit as exit:  # e.g. submitit requeueing the job on a signal while starting
        status = {
            "status": "interrupted",
            "error": f"ended (exit status {exit.code}) between steps",
        }
        raise
    except Exception as error:
        status = {"status": "failed", "error": f"{type(error).__name__}: {error}".splitlines()[0]}
        if not multirun:
            raise
        if isinstance(error, UserError):
            log.error(f"job failed: {error}")
        else:  # a bug: its traceback goes to the job's log, the sweep goes on
            log.exception("job failed")
        return float("nan")
    finally:
        status["wall_time_s"] = round(time.perf_counter() - start, 3)
        leave_status(cfg, run_dir, status, multirun, accepted=bool(accepted))


def how_to_continue(hydra_cfg: Any, run_dir: Path) -> str:
    """How to continue a sweep's job that was interrupted."""
    if search_trial.ENVIRONMENT_VARIABLE in os.environ:  # a trial of an Optuna search
        return CONTINUE_THE_SEARCH
    launcher = hydra_cfg.runtime.choices.get("hydra/launcher")
    how = "nntrain -m hydra/launcher=slurm" if launcher == "slurm" else "nntrain"
    return f"resume with: {how} resume={run_dir}"


def run_as_trial(
    cfg: DictConfig, hydra_cfg: Any, run_dir: Path, show_progress: bool, accepted: list[bool]
) -> dict[str, float]:
    """run(), as a trial of its search when an Optuna search started this job (it reports each
    epoch's figure to the study and may be pruned); `accepted` gets True once training starts."""
    from hydra.types import RunMode

    from nntrain.launch.search_trial import joined_trial
    from nntrain.training import distributed

    # (hydra.sweep.dir is not resolved outside a multirun: its default names a new folder)
    sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    with joined_trial(sweep_dir, distributed.is_main_process()) as trial:  # None: no search
        return run(cfg, str(run_dir), show_progress, lambda: accepted.append(True), judge=trial)


def objective_of(cfg: DictConfig, result: dict[str, float]) -> dict[str, str]:
    """What the value a job returns is, for a search that optimizes it (direction=auto): the
    monitor, or val/loss for a regression, which has no accuracy (Trainer._stopper_for)."""
    monitor = cfg.trainer.early_stopping.monitor
    followed = monitor if monitor in result else "val/loss"
    mode = cfg.trainer.early_stopping.mode if followed == monitor else "min"
    return {"metric": followed, "mode": str(mode)}


def build_model(cfg: DictConfig, data: Any) -> Any:
    """The config's model. A resumed run's weights all come from its checkpoint: pretrained
    weights are not fetched again (a job requeued on a node without the internet, or a
    weights_path that is gone, would fail), but the backbone keeps its own learning rate."""
    from nntrain.models.contract import build_checked

    shape = {"input_shape": tuple(data.input_shape), "num_classes": data.num_classes}
    if not cfg.get("resume"):
        model = build_checked(cfg.model, **shape)
    else:
        from nntrain.inference.trained_run import without_weight_files
        from nntrain.models.hooks import PretrainedBackbone

        model_config, pretrained = without_weight_files(cfg.model)
        model = build_checked(model_config, **shape)
        if pretrained and isinstance(model, PretrainedBackbone):
            model.pretrained_backbone = True  # its parameter groups (model.backbone_lr_scale)
    warn_about_freezing(model, cfg.trainer.max_epochs)
    return model


def warn_about_freezing(model: Any, max_epochs: object) -> None:
    """A frozen backbone that trains nothing useful is allowed, and said: one with no
    pretrained weights (only the head learns, on random features), or one that
    model.unfreeze_at_epoch would unfreeze after the last epoch."""
    from nntrain.reporting.console import log

    if not getattr(model, "backbone_frozen", False):
        return
    if not getattr(model, "pretrained_backbone", True):
        log.warning(
            "model.freeze_backbone=true without pretrained weights (model.pretrained=true or "
            "model.weights_path): only the head trains, on a randomly initialised backbone"
        )
    unfreeze = getattr(model, "unfreeze_at_epoch", None)
    if isinstance(unfreeze, int) and isinstance(max_epochs, int) and unfreeze > max_epochs:
        log.warning(
            f"model.unfreeze_at_epoch={unfreeze} comes after the last epoch "
            f"(trainer.max_epochs={max_epochs}): the backbone stays frozen for the whole run"
        )


@hydra.main(version_base="1.3", config_path="pkg://nntrain.configs", config_name="train")
def train_app(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from nntrain.reporting.console import display_path, log, print_error
    from nntrain.reporting.sweep_summary import summarize_interrupted_sweep
    from nntrain.training import distributed
    from nntrain.training.signals import TrainingInterrupted

    try:
        with user_errors_end_in_one_line():
            return train(cfg)
    except TrainingInterrupted as stop:
        if not distributed.is_main_process():  # every rank stopped at this step; rank 0 says so
            sys.exit(stop.exit_code)
        shown = display_path(HydraConfig.get().runtime.output_dir)
        if stop.signum == signal.SIGUSR2 and "SUBMITIT_FOLDER" in os.environ:
            log.info(
                f"{stop}: SLURM's warning before the time limit (or a preemption); last.pt is "
                f"saved in {shown}; the job is requeued to continue from it (after a time limit "
                "up to hydra.launcher.max_num_timeout times)"
            )
            sys.exit(stop.exit_code)  # nntrain's SLURM launcher hands over to submitit
        summarize_interrupted_sweep()  # a sweep stops at this job: the table of those that ran
        how = f"nntrain resume={shown}"
        if distributed.world_size() > 1:
            how = f"the same torchrun or srun command, with -m nntrain resume={shown}"
        if search_trial.ENVIRONMENT_VARIABLE in os.environ:  # a trial of an Optuna search
            print_error(f"{stop} (saved to {shown}/checkpoints/last.pt); {CONTINUE_THE_SEARCH}")
            sys.exit(stop.exit_code)
        print_error(f"{stop} (saved to {shown}/checkpoints/last.pt); resume with:\n  {how}")
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        summarize_interrupted_sweep()
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        if runs.saved_any(run_dir):  # e.g. during the final test: the training is saved
            shown = display_path(run_dir)
            print_error(
                f"interrupted by SIGINT; the checkpoints in {shown} are saved: finish the run "
                f"(its test) with nntrain resume={shown}"
            )
        else:
            print_error("interrupted by SIGINT before the first checkpoint; nothing was saved.")
            # Also before the task began (train's own clean-up did not run): Hydra's train.log.
            runs.remove_unsaved(run_dir)
        sys.exit(130)


def main() -> None:
    """Entry point of the `nntrain` console script and of `python -m nntrain`."""
    from nntrain.launch.resume_command_line import rewrite_argv
    from nntrain.training import distributed

    if distributed.under_srun():  # `srun -n 2 nntrain ...`: ranks as torchrun would number them
        distributed.torchrun_env_from_slurm()
    try:  # under torchrun all ranks share rank 0's run directory (see nntrain.training.distributed)
        run_app(
            train_app,
            lambda argv: distributed.one_run_dir(rewrite_argv(refuse_a_taken_run_dir(argv))),
        )
    finally:
        distributed.shutdown()
