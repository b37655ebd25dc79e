"""A run directory's layout, and what a path the user gives refers to.

    <run dir>/checkpoints/best.pt   the best epoch (nntrain-eval and nntrain-predict use it)
    <run dir>/checkpoints/last.pt   the latest state (resume= continues from it)
    <run dir>/metrics.json, status.json, train.log, tb/, .hydra/

Commands accept a run directory or a checkpoint file wherever they want a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

CHECKPOINTS = "checkpoints"


def checkpoint_path(run_dir: str | Path, which: Literal["best", "last"]) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{which}.pt"


def resolve_checkpoint(given: str | Path, which: Literal["best", "last"]) -> Path:
    """The checkpoint a user's path names, absolute: a file as it is, a run directory's
    checkpoints/<which>.pt. `~` is the home directory; existence is the caller's to check."""
    path = Path(os.path.expanduser(str(given))).absolute()
    return checkpoint_path(path, which) if path.is_dir() else path


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/x.pt -> <run>); a checkpoint
    kept elsewhere belongs to the folder it is in."""
    folder = checkpoint.parent
    return folder.parent if folder.name == CHECKPOINTS else folder
