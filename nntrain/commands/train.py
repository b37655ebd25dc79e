"""The `nntrain` command: Hydra composes configs/train.yaml with the user's overrides, this
module builds the data, model, optimizer and schedule from it and hands them to the Trainer.

No training logic lives here. Errors the user can fix (UserError) end as one line on stderr and
exit status 1, without a traceback.
"""

from __future__ import annotations

import copy
import re
import sys
import time
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from nntrain import files
from nntrain.commands.common import check_no_missing_values, run_app, user_errors_end_in_one_line
from nntrain.errors import UserError
from nntrain.instantiate import build


def path_safe(name: object) -> str:
    """`name` as one directory name, for the run dir outputs/<date>/<time>-<name>: every run of
    characters other than ASCII letters, digits, '.', '_' and '-' becomes one '_', so a name such
    as 'cnn on cifar/v2' neither nests directories nor needs quoting, in a shell or in a Hydra
    override (the run summary's `nntrain-eval ckpt=<run dir>`: Hydra's lexer rejects 'é')."""
    safe = re.sub(r"[^\w.-]+", "_", "" if name is None else str(name), flags=re.ASCII)
    return safe.strip("_") or "unnamed"


# configs/hydra/default.yaml names run dirs with ${nntrain.path_safe:${name}}: registered on
# import, before Hydra resolves the run dir (launchers' worker processes import this module too).
# Cached like ${now:...}: OmegaConf caches by the argument's text, and Hydra copies the sweep's
# cache into every job's config, so all jobs of `-m model=cnn,mlp` share one sweep dir (named
# as the config composes without the swept values) instead of one each per <model>-<data>.
OmegaConf.register_new_resolver("nntrain.path_safe", path_safe, replace=True, use_cache=True)


class HydraConfigForTheSweepDir(Callback):
    """Lets the sweep dir end with ${name} too. Its default, <model>-<data>, reads Hydra's
    choices through ${hydra:...}, which needs HydraConfig; in a multirun Hydra sets it only as
    each job starts, after the sweeper has resolved hydra.sweep.dir (facebookresearch/hydra
    #2247). A copy: HydraConfig.set_config makes the hydra node it is given read-only."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(copy.deepcopy(config))


def run(cfg: DictConfig, run_dir: str, show_progress: bool = False) -> dict[str, float]:
    """Build everything from the composed config, fit, test; returns the run's metrics."""
    from nntrain.reporting import console
    from nntrain.training import distributed
    from nntrain.training.seeding import check_seed, seed_everything

    check_no_missing_values(cfg)
    main_process = distributed.is_main_process()
    if not main_process:  # under torchrun only rank 0 speaks; the others report only problems
        console.log.setLevel("WARNING")
    if main_process:
        console.print_config_tree(cfg)
    check_seed(cfg.seed)
    trainer = build(cfg.trainer, "trainer", progress=show_progress and cfg.trainer.progress)
    data = build(cfg.data, "data")
    seed_everything(cfg.seed)  # right before the model: its initial weights follow the seed
    model = build(cfg.model, "model", input_shape=data.input_shape, num_classes=data.num_classes)
    optimizer = build(cfg.optimizer, "optimizer")
    scheduler = build(cfg.scheduler, "scheduler")
    # The checkpoints' copy of the config: resume= is how this process started, not the run.
    saved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    saved["resume"] = None
    resume = None
    if cfg.get("resume"):
        from nntrain.checkpoint import load_checkpoint
        from nntrain.commands.resume import check_same_run

        resume = load_checkpoint(cfg.resume)
        check_same_run(resume, saved, cfg.resume)
    result = trainer.fit(
        model,
        data,
        optimizer,
        scheduler,
        run_dir=run_dir,
        config_yaml=OmegaConf.to_yaml(saved),
        resume=resume,
    )
    if main_process:
        console.print_summary(result, run_dir)
    return result


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

    Every job leaves status.json (ok or failed, the error, the wall time) in its directory: the
    sweep summary reads it. In a multirun a failed job is recorded and the sweep goes on.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from nntrain.reporting.console import interactive, log
    from nntrain.training.signals import TrainingInterrupted

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # No live progress in multirun: its logs would fill with redraws.
    show_progress = interactive() and not multirun
    if multirun:
        device = device_for_job(cfg.trainer.device, hydra_cfg.job.num)
        if device != cfg.trainer.device:
            with open_dict(cfg):
                cfg.trainer.device = device
    start = time.perf_counter()
    status: dict[str, Any] = {"status": "ok", "error": None}
    try:
        result = run(cfg, str(run_dir), show_progress)
        return result[cfg.trainer.early_stopping.monitor]
    except TrainingInterrupted as stop:  # Ctrl-C stops the whole sweep, not one job
        status = {"status": "interrupted", "error": str(stop)}
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
        files.write_json(run_dir / "status.json", status)


@hydra.main(version_base="1.3", config_path="pkg://nntrain.configs", config_name="train")
def train_app(cfg: DictConfig) -> float:
    from nntrain.reporting.console import display_path, print_error
    from nntrain.training.signals import TrainingInterrupted

    try:
        with user_errors_end_in_one_line():
            return train(cfg)
    except TrainingInterrupted as stop:
        from hydra.core.hydra_config import HydraConfig

        run_dir = display_path(HydraConfig.get().runtime.output_dir)
        print_error(
            f"{stop} (saved to {run_dir}/checkpoints/last.pt); resume with:\n"
            f"  nntrain resume={run_dir}"
        )
        sys.exit(stop.exit_code)


def main() -> None:
    """Entry point of the `nntrain` console script and of `python -m nntrain`."""
    from nntrain.commands.resume import rewrite_argv
    from nntrain.training import distributed

    try:  # under torchrun all ranks share rank 0's run directory (see nntrain.training.distributed)
        run_app(train_app, lambda argv: distributed.one_run_dir(rewrite_argv(argv)))
    finally:
        distributed.shutdown()
