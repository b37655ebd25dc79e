"""A run directory's layout, and what a path the user gives refers to.

    <run dir>/checkpoints/best.pt   the best epoch (nntrain-eval and nntrain-predict use it)
    <run dir>/checkpoints/last.pt   the latest state (resume= continues from it)
    <run dir>/metrics.json, status.json, train.log, TensorBoard's events, .hydra/

Commands accept a run directory or a checkpoint file wherever they want a checkpoint.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Literal

from nntrain.errors import UserError

CHECKPOINTS = "checkpoints"


def checkpoint_path(run_dir: str | Path, which: Literal["best", "last"]) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{which}.pt"


def resolve_checkpoint(given: str | Path, which: Literal["best", "last"]) -> Path:
    """The checkpoint a user's path names, absolute: a file as it is, a run directory's
    checkpoints/<which>.pt. `~` is the home directory; existence is the caller's to check."""
    path = Path(os.path.expanduser(str(given))).absolute()
    if path.is_dir() and path.name == CHECKPOINTS and not (path / CHECKPOINTS).is_dir():
        return path / f"{which}.pt"  # a run's checkpoints/ folder itself
    return checkpoint_path(path, which) if path.is_dir() else path


def check_not_empty(checkpoint: Path) -> None:
    """A 0-byte file is a checkpoint whose writing was cut short (checked without torch, so
    resume= can refuse it before anything is written)."""
    if checkpoint.is_file() and checkpoint.stat().st_size == 0:
        raise UserError(
            f"checkpoint {checkpoint} is empty (0 bytes: its writing was cut short); use another "
            "checkpoint, e.g. last.pt or best.pt of the same run."
        )


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/x.pt -> <run>); a checkpoint
    kept elsewhere belongs to the folder it is in."""
    folder = checkpoint.parent
    return folder.parent if folder.name == CHECKPOINTS else folder


# Written into a run directory when a run claims it: the directory then holds a run, and no
# other run may start there (nntrain resume= continues it instead).
CLAIM = ".nntrain-run"


def saved_any(run_dir: Path) -> bool:
    """Whether the run saved a checkpoint (only then is there anything to resume or evaluate)."""
    return any((run_dir / CHECKPOINTS).glob("*.pt"))


# What a run writes before its first checkpoint (Hydra's files, the log, TensorBoard's events).
UNSAVED_RUN_FILES = (".hydra", "tb", "train.log", "status.json", "model_summary.txt", CHECKPOINTS)


DAY_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")


def stop_logging_into(run_dir: Path) -> None:
    """Close and drop the logging handlers that write files in run_dir (Hydra's train.log)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        filename = getattr(handler, "baseFilename", None)
        if filename and Path(filename).parent.resolve() == run_dir.resolve():
            root.removeHandler(handler)
            with contextlib.suppress(OSError):  # its last flush, on a full disk
                handler.close()


def remove_unsaved(run_dir: Path) -> None:
    """Remove what a run wrote before it saved anything, and the directory once it is empty
    (a folder the user gave, that held other files, keeps them)."""
    stop_logging_into(run_dir)  # or the error line that follows would write train.log anew
    for name in UNSAVED_RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for events in run_dir.glob("events.out.tfevents.*"):  # TensorBoard's, in the run dir
        events.unlink(missing_ok=True)
    (run_dir / CLAIM).unlink(missing_ok=True)
    if run_dir.resolve() in GIVEN_FOLDERS:
        return
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # only when empty
        # In the default layout, outputs/<day>/<run> (a sweep's outputs/multirun/<day>/<run>):
        # the day's folder when this was its only run, and outputs/ when it was the first.
        # Never a folder the user chose (hydra.run.dir=run in an empty directory must not
        # take that directory with it).
        day = run_dir.parent
        above = [day.parent, day.parent.parent][: 2 if day.parent.name == "multirun" else 1]
        if DAY_FOLDER.fullmatch(day.name) and above[-1].name == "outputs":
            for folder in (day, *above):
                folder.rmdir()


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Temporary files of checkpoint writes that a killed process (kill -9, power loss) left
    in checkpoints/ (see nntrain.files.write_atomically); only the run that owns the directory
    calls this, so no write of another process is in flight."""
    stale = sorted((run_dir / CHECKPOINTS).glob(".*.pt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def holds_a_run(folder: Path) -> bool:
    """True when folder holds a run or a sweep: claimed, or (those of earlier versions) with
    Hydra's .hydra/ or multirun.yaml, or checkpoints/ in it."""
    return any((folder / name).exists() for name in (CLAIM, ".hydra", CHECKPOINTS, "multirun.yaml"))


# The run directories this process claimed: a run that fails before its job starts (e.g. Hydra
# cannot write .hydra/ on a full disk) removes what it made there (nntrain.commands.common).
CLAIMED: list[Path] = []
# Run directories that existed before their run claimed them (hydra.run.dir=. or another
# folder of the user's): never removed.
GIVEN_FOLDERS: set[Path] = set()


def claim(folder: Path) -> bool:
    """Claim folder (created if needed) for a new run; False when another run holds it. The
    claim file is created with O_EXCL, so of two runs started together only one gets it; this
    process then holds it (see hold) while it trains."""
    if holds_a_run(folder):
        return False
    if folder.is_dir():  # an empty folder the user gave stays when a failed start cleans up
        GIVEN_FOLDERS.add(folder.resolve())
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    CLAIMED.append(folder)
    hold(folder)
    return True


# Open claim files of the runs this process trains, locked until it ends (see hold).
HELD: dict[Path, int] = {}


def hold(folder: Path) -> bool:
    """Lock the run's claim file for as long as this process lives; False when another process
    holds it (a resume of a run that is still training). flock is released by the kernel when
    the process ends in any way, kill -9 included, so no stale lock is ever left behind."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; runs are still claimed with O_EXCL
        return True
    descriptor = os.open(folder / CLAIM, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return False
    HELD[folder] = descriptor
    return True


def claim_new(base: str | Path) -> Path:
    """base, or base-2, base-3, ...: the first of them no run holds, claimed now. mkdir is
    atomic, so two runs started in the same second get a directory each."""
    base = Path(base)
    for number in itertools.count(1):
        folder = base if number == 1 else base.with_name(f"{base.name}-{number}")
        if claim(folder):
            return folder
    raise AssertionError("unreachable")
