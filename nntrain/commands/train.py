"""The `nntrain` command: Hydra composes configs/train.yaml with the user's overrides, this
module builds the data, model, optimizer and schedule from it and hands them to the Trainer.

No training logic lives here. Errors the user can fix (UserError) end as one line on stderr and
exit status 1, without a traceback.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from nntrain import files, runs
from nntrain.commands.common import check_no_missing_values, run_app, user_errors_end_in_one_line
from nntrain.commands.schema_check import check_settings
from nntrain.errors import UserError, require
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


def starts_pretrained(pretrained: object, weights_path: object) -> bool:
    """data.imagenet_normalization's default: whether the model starts from pretrained weights,
    downloaded (model.pretrained) or from a file (model.weights_path: a resnet18 state dict,
    trained on ImageNet-normalised images). A pretrained that is no bool counts as false here:
    the model refuses it under its own name."""
    if weights_path not in (None, ""):
        return True
    return pretrained if isinstance(pretrained, bool) else False


OmegaConf.register_new_resolver("nntrain.starts_pretrained", starts_pretrained, replace=True)


def new_run_dir(base: str) -> str:
    """The run (or sweep) directory base, or base-2, base-3, ... when a run holds it, claimed
    for this run (nntrain.runs.claim_new). Under torchrun rank 0 claims it and every rank gets
    rank 0's answer. Cached, so that Hydra's every resolution of hydra.run.dir gives the same."""
    from nntrain.training import distributed

    if {"--cfg", "-c", "--info", "-i"} & set(sys.argv[1:]):  # only printing: claim nothing
        return base

    def claimed() -> str:
        try:
            return str(runs.claim_new(base))
        except OSError as error:  # read-only, no such device, permissions
            raise UserError(
                f"cannot create the run directory {base} ({error.strerror or error}); run nntrain "
                "in a folder you can write to, or set hydra.run.dir to a writable place."
            ) from error

    if distributed.world_size() > 1:
        return str(distributed.broadcast_from_main(claimed() if distributed.rank() == 0 else None))
    return claimed()


OmegaConf.register_new_resolver("nntrain.new_run_dir", new_run_dir, replace=True, use_cache=True)


def refuse_a_taken_run_dir(argv: list[str]) -> list[str]:
    """A run directory given on the command line (hydra.run.dir=DIR) must be new or empty: a run
    owns its directory. It is claimed here, before Hydra writes into it; only resume= continues
    a run in its own directory (a checkpoint kept on its own continues in a new one)."""
    from nntrain.commands.resume import resumes_in_place

    if {"-m", "--multirun"} & set(argv):
        refuse_an_empty_range(argv)
        check_max_batch_size(argv)
        return claim_a_given_sweep_dir(argv)
    if resumes_in_place(argv):
        return argv
    given = [arg.split("=", 1)[1] for arg in argv if arg.split("=", 1)[0] == "hydra.run.dir"]
    if not given or "${" in given[-1] or os.environ.get("RANK", "0") != "0":
        return argv
    require(
        given[-1].strip("'\" ") != "",
        "hydra.run.dir is empty; give the run a folder of its own, e.g. hydra.run.dir=runs/first "
        "(or leave hydra.run.dir out: every run gets its own under outputs/).",
    )
    folder = Path(given[-1].strip("'\"")).expanduser()
    # A run owns its directory: on a failed start it removes what it wrote there (train.log,
    # tb/, ...), which in a folder of the user's could be their own files of those names.
    try:
        others = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    except OSError:  # an unreadable folder: claiming it below says why in one sentence
        others = []
    require(
        runs.holds_a_run(folder) or not others,
        f"hydra.run.dir={given[-1]} holds other files ({', '.join(others[:3])}"
        f"{', ...' if len(others) > 3 else ''}); give a new or empty folder (or leave "
        "hydra.run.dir out: every run gets its own under outputs/).",
    )
    try:
        claimed = runs.claim(folder)
    except OSError as error:
        raise UserError(
            f"cannot create the run directory {folder} ({error.strerror or error}); set "
            "hydra.run.dir to a folder you can write to."
        ) from error
    require(
        claimed,
        f"hydra.run.dir={given[-1]} already holds a run; give a new directory (or leave "
        f"hydra.run.dir out: every run gets its own), or continue that run with nntrain "
        f"resume={given[-1]}.",
    )
    return argv


def refuse_an_empty_range(argv: list[str]) -> None:
    """A swept range() without values (its stop is excluded) would make a sweep of no jobs,
    which ended at once with exit status 0 and an empty table: refused before anything."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import RangeSweep

    parser = OverridesParser.create()
    for argument in argv:
        if argument.startswith("-") or "=" not in argument:
            continue
        try:
            override = parser.parse_override(argument)
            empty = isinstance(override.value(), RangeSweep) and not list(override.sweep_iterator())
        except Exception:  # not a range; Hydra reports what it cannot read
            continue
        require(
            not empty,
            f"{argument} has no values (a range excludes its stop); give it at least one, e.g. "
            "range(1, 4) for 1, 2 and 3.",
        )


def check_max_batch_size(argv: list[str]) -> None:
    """Hydra's basic sweeper launches its jobs in batches of hydra.sweeper.max_batch_size
    (null: all at once); any other value ended in its AssertionError's traceback."""
    given = [
        a.split("=", 1)[1] for a in argv if a.split("=", 1)[0] == "hydra.sweeper.max_batch_size"
    ]
    value = given[-1].strip("'\" ") if given else "null"
    require(
        value == "null" or (value.isdigit() and int(value) >= 1),
        f"hydra.sweeper.max_batch_size must be a positive integer or null (launch every job at "
        f"once), got {given[-1] if given else value}; e.g. hydra.sweeper.max_batch_size=4.",
    )


def claim_a_given_sweep_dir(argv: list[str]) -> list[str]:
    """A sweep directory given on the command line (hydra.sweep.dir=DIR) must be new or empty,
    as a run's is: a second sweep there would overwrite the first one's jobs."""
    given = [arg.split("=", 1)[1] for arg in argv if arg.split("=", 1)[0] == "hydra.sweep.dir"]
    if not given or "${" in given[-1]:
        return argv
    folder = Path(given[-1].strip("'\"")).expanduser()
    # Empty, or the folder the command runs in: the jobs would land among the user's files.
    require(
        str(folder) != "." and folder.resolve() != Path.cwd().resolve(),
        f"hydra.sweep.dir={given[-1]} {'is empty' if not given[-1].strip() else 'is the current folder'}"
        "; give the sweep a folder of its own, e.g. hydra.sweep.dir=sweeps/lr (or leave "
        "hydra.sweep.dir out: every sweep gets its own).",
    )
    try:
        claimed = runs.claim(folder)
    except OSError as error:
        raise UserError(
            f"cannot create the sweep directory {folder} ({error.strerror or error}); set "
            "hydra.sweep.dir to a folder you can write to."
        ) from error
    require(
        claimed,
        f"hydra.sweep.dir={given[-1]} already holds a sweep or a run; give a new directory (or "
        "leave hydra.sweep.dir out: every sweep gets its own).",
    )
    return argv


class HydraConfigForTheSweepDir(Callback):
    """Lets the sweep dir end with ${name} too. Its default, <model>-<data>, reads Hydra's
    choices through ${hydra:...}, which needs HydraConfig; in a multirun Hydra sets it only as
    each job starts, after the sweeper has resolved hydra.sweep.dir (facebookresearch/hydra
    #2247). A copy: HydraConfig.set_config makes the hydra node it is given read-only."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(copy.deepcopy(config))


def run(
    cfg: DictConfig,
    run_dir: str,
    show_progress: bool = False,
    on_accepted: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Build everything from the composed config, fit, test; returns the run's metrics.
    on_accepted is called once every value is checked (and a resume matches its run), right
    before training: until then nothing of an existing run has changed."""
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


def accept_resume(
    cfg: DictConfig,
    resume: dict[str, Any],
    saved: dict[str, Any],
    run_dir: Path,
    main_process: bool,
    tree: Any,
) -> None:
    """A resume whose config matches its run's (else one sentence): from here on the run's
    files may change: its .hydra/ is rewritten, a loose checkpoint adopted, train.log opened."""
    from nntrain.commands.resume import check_same_run, write_hydra_files
    from nntrain.reporting import console

    check_same_run(resume, saved, cfg.resume)
    if not main_process:
        return
    write_hydra_files(run_dir)
    files.write_text(run_dir / ".hydra" / "config.yaml", OmegaConf.to_yaml(cfg))
    if runs.run_dir_of(Path(cfg.resume)) != run_dir:
        adopt_checkpoint(Path(cfg.resume), resume, run_dir)
    console.LOG_FILE["enabled"] = True
    console.to_log_file(console.rendered(tree))


def absolute_data_files(cfg: DictConfig) -> None:
    """The data files' paths made absolute (~ expanded) in the run's config, which its
    checkpoints keep: nntrain-eval and resume= then read the very files the run read, from
    whatever folder they are started in."""
    from nntrain.commands.resume import DATA_FILE_KEYS

    with open_dict(cfg):
        for key in DATA_FILE_KEYS:
            value = cfg.data.get(key)
            if isinstance(value, str) and value and "://" not in value:  # not a URL
                cfg.data[key] = str(Path(os.path.expanduser(value)).absolute())


def resumed_state(cfg: DictConfig) -> dict[str, Any] | None:
    """The checkpoint resume= names, or None; refused in one sentence (before anything of the
    run changes) when a table it trained on has changed (nntrain.data.table_source)."""
    if not cfg.get("resume"):
        return None
    from nntrain.checkpoint import load_resumable
    from nntrain.data.table_source import changed_data

    state = load_resumable(cfg.resume)
    change = changed_data(state.get("inputs") or {}, cfg.data)
    require(
        change is None,
        f"cannot resume {cfg.resume}: {change}; resume with the data the run trained on, or "
        "train a new run on this data (without resume=).",
    )
    return state


def command_line_overrides() -> list[str]:
    """The overrides that make this run's config (as in .hydra/overrides.yaml, without resume=
    and Hydra's own): kept in its checkpoints, so that a checkpoint copied out of its run
    directory can still be resumed with its own config."""
    from hydra.core.hydra_config import HydraConfig

    from nntrain.commands.resume import override_key

    return [
        o
        for o in HydraConfig.get().overrides.task
        if override_key(o) != "resume" and not override_key(o).startswith("hydra.")
    ]


def adopt_checkpoint(checkpoint: Path, state: dict[str, Any], run_dir: Path) -> None:
    """A run resumed from a checkpoint kept outside its run directory continues in a new one,
    which starts with that checkpoint as its last.pt, and with the best.pt beside it when that
    is of the same run (else the test falls back to last.pt, and says so)."""
    from nntrain.checkpoint import load_checkpoint
    from nntrain.reporting.console import display_path, log

    target = runs.checkpoint_path(run_dir, "last")
    target.parent.mkdir(parents=True, exist_ok=True)
    files.copy_file(checkpoint, target)
    best = checkpoint.with_name("best.pt")
    if best != checkpoint and best.is_file() and best.stat().st_size > 0:
        with contextlib.suppress(Exception):  # not a checkpoint of this run: not adopted
            if same_run_configs(load_checkpoint(best), state):
                files.copy_file(best, runs.checkpoint_path(run_dir, "best"))
    log.info(
        f"resuming {display_path(checkpoint)} in the new run directory {display_path(run_dir)}"
    )


def same_run_configs(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two checkpoints' configs describe the same run (trainer settings may differ)."""
    import yaml

    from nntrain.commands.resume import config_differences

    configs = [yaml.safe_load(c.get("config") or "") or {} for c in (one, other)]
    return not config_differences(*configs)


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

    from nntrain.commands.search_guard import refuse_a_search_without_multirun
    from nntrain.reporting.console import interactive, log
    from nntrain.training import distributed
    from nntrain.training.signals import TrainingInterrupted

    distributed.init_from_env()  # a SLURM job's tasks (srun) join here; torchrun's did in main
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # No live progress in multirun: its logs would fill with redraws.
    show_progress = interactive() and not multirun
    if multirun:
        with open_dict(cfg):
            cfg.trainer.device = device_for_job(cfg.trainer.device, hydra_cfg.job.num)
    start = time.perf_counter()
    status: dict[str, Any] = {"status": "ok", "error": None}
    accepted = []  # a resume refused before training must leave its run as it was
    try:
        refuse_a_search_without_multirun(cfg, hydra_cfg)  # hparams_search=... without -m
        result = run(cfg, str(run_dir), show_progress, on_accepted=lambda: accepted.append(True))
        status["objective"] = objective_of(cfg, result)
        return result[status["objective"]["metric"]]
    except TrainingInterrupted as stop:  # Ctrl-C stops the whole sweep, not one job
        status = {"status": "interrupted", "error": str(stop)}
        if multirun:  # the sweep's table says how to continue this job
            launcher = hydra_cfg.runtime.choices.get("hydra/launcher")
            how = "nntrain -m hydra/launcher=slurm" if launcher == "slurm" else "nntrain"
            status["error"] += f"; resume with: {how} resume={run_dir}"
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


def objective_of(cfg: DictConfig, result: dict[str, float]) -> dict[str, str]:
    """What the value a job returns is, for a search that optimizes it (direction=auto): the
    monitor, or val/loss for a regression, which has no accuracy (Trainer._stopper_for)."""
    monitor = cfg.trainer.early_stopping.monitor
    followed = monitor if monitor in result else "val/loss"
    mode = cfg.trainer.early_stopping.mode if followed == monitor else "min"
    return {"metric": followed, "mode": str(mode)}


def leave_status(
    cfg: DictConfig, run_dir: Path, status: dict[str, Any], multirun: bool, accepted: bool
) -> None:
    """status.json in the run directory; or nothing, for a refused resume (its status.json
    still tells how the run last ended) and for a run refused or stopped before it saved
    anything (its directory is removed)."""
    from nntrain.training import distributed

    in_place = bool(cfg.get("resume")) and runs.run_dir_of(Path(cfg.resume)) == run_dir
    if not distributed.is_main_process():
        return  # under torchrun or srun rank 0 writes the run's files, and knows the same
    if in_place and not accepted:
        return
    if multirun or status["status"] == "ok" or runs.saved_any(run_dir):
        files.write_json(run_dir / "status.json", status)
    else:
        runs.remove_unsaved(run_dir)


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
    from nntrain.commands.resume import rewrite_argv
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
