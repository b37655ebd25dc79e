"""The run directory guard: a run owns its directory, and a sweep its own.

Before Hydra composes (on the command line): a given hydra.run.dir or hydra.sweep.dir must be
new or empty, and is claimed (nntrain.runs.claim) before Hydra writes into it; a sweep's
ranges must have values. At a job's end: status.json, or, for a run that saved nothing, its
directory removed (nothing half-written is left behind). Shared by every command that starts a
run (nntrain, nntrain-lr-find) and by nntrain's SLURM launcher.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nntrain import files, runs
from nntrain.errors import UserError, require
from nntrain.launch import resolvers  # noqa: F401  (registers the resolvers the run dir needs)
from nntrain.launch.resume_command_line import resumes_in_place


def refuse_a_taken_run_dir(argv: list[str]) -> list[str]:
    """A run directory given on the command line (hydra.run.dir=DIR) must be new or empty: a run
    owns its directory. It is claimed here, before Hydra writes into it; only resume= continues
    a run in its own directory (a checkpoint kept on its own continues in a new one)."""

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
    # TensorBoard's events, ...), which in a folder of the user's could be their own files of those names.
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
    if is_a_search(argv) and a_search_may_use(folder):
        # Its own folder again (the same command, continuing the study after it stopped), or
        # shared with other sweepers of the study: the jobs are the study's trials, one folder
        # each, so nothing is overwritten.
        folder.mkdir(parents=True, exist_ok=True)
        return argv
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



def is_a_search(argv: list[str]) -> bool:
    """An Optuna search, as the command line says (hparams_search=..., or its sweeper)."""
    return any(
        arg.split("=", 1)[0] == "hparams_search"
        or (arg.split("=", 1)[0] == "hydra/sweeper" and "optuna" in arg)
        for arg in argv
    )


def a_search_may_use(folder: Path) -> bool:
    """New or empty, or a search's own folder (its multirun.yaml names an Optuna sweeper)."""
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    if not any(folder.iterdir()):
        return True
    saved = folder / "multirun.yaml"
    if not saved.is_file():
        return False
    try:
        target = OmegaConf.select(OmegaConf.load(saved), "hydra.sweeper._target_")
    except Exception:  # not a YAML Hydra wrote
        return False
    return "optuna" in str(target or "").lower()
