"""Checkpoints: written atomically, loaded as data only.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (the run's config is YAML
text), so it loads with torch.load(weights_only=True) and never executes code from the file.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from nntrain.errors import UserError

FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write state to path atomically: a crash mid-write never leaves a broken file behind.

    The bytes go to a temporary file in the same directory (so os.replace is a rename on one
    file system), are flushed and fsynced, then replace the old file in one step.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise UserError(
            f"could not write the checkpoint {path} ({error.strerror or error})."
        ) from error
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save({"format_version": FORMAT_VERSION, **state}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        # A full disk surfaces as OSError from Python's file calls, or as torch's RuntimeError
        # when its zip writer hits the failed write.
        if isinstance(error, OSError | RuntimeError):
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
            kept = f"the previous {path.name} is intact" if path.exists() else "nothing was written"
            raise UserError(
                f"could not write the checkpoint {path} ({reason}); {kept}. "
                "Free some disk space, then resume the run."
            ) from error
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint; any other or damaged file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} does not exist; pass the path of a .pt file in a run's checkpoints/ folder."
        )
    try:
        with warnings.catch_warnings():  # a damaged file gets our message, not torch's warnings
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if found is None:  # not a pickle of ours at all: garbage or a truncated legacy file
            raise UserError(
                f"checkpoint {path} is damaged or not a checkpoint (it does not unpickle); use "
                "another checkpoint, e.g. last.pt or best.pt of the same run."
            ) from error
        raise UserError(
            f"checkpoint {path} holds objects other than tensors and plain data, so it was not "
            f"loaded (loading it could run code from the file: it refers to {found.group(1)})."
        ) from error
    except Exception as error:  # random bytes fail in many ways (IndexError, KeyError, ...)
        raise UserError(
            f"checkpoint {path} is damaged or not a checkpoint ({str(error).splitlines()[0]}); "
            "use another checkpoint, e.g. last.pt or best.pt of the same run."
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"{path} is not an nntrain checkpoint (it has no 'model' entry).")
    return state
