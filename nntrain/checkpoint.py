"""Checkpoints: written atomically, loaded as data only.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (the run's config is YAML
text), so it loads with torch.load(weights_only=True) and never executes code from the file.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from nntrain import files
from nntrain.errors import UserError, first_line
from nntrain.runs import check_not_empty

FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write state to path atomically (nntrain.files): a crash mid-write never leaves a broken
    file behind, and a failed write is one sentence saying what was kept."""
    path = Path(path)
    had_previous = path.exists()
    try:
        files.write_atomically(
            path, lambda file: torch.save({"format_version": FORMAT_VERSION, **state}, file)
        )
    except (OSError, RuntimeError) as error:
        # A full disk surfaces as OSError from Python's file calls, or as torch's RuntimeError
        # when its zip writer hits the failed write (its message is about zip offsets).
        reason = getattr(error, "strerror", None) or "the write failed: is the disk full?"
        kept = f"the previous {path.name} is intact" if had_previous else "nothing was written"
        fix = (
            f"make {path.parent} writable"
            if isinstance(error, PermissionError)
            else "free some disk space"
        )
        then = "resume the run" if (path.parent / "last.pt").is_file() else "start the run again"
        raise UserError(
            f"could not write the checkpoint {path} ({reason}); {kept}. {fix.capitalize()}, "
            f"then {then}."
        ) from error


def check_written_by_torch_save(path: Path) -> None:
    """torch.save writes a zip archive (a pickle, before torch 1.6: its first byte is the
    protocol mark 0x80). Anything else (a text file, an image) is said to be no checkpoint
    before the unpickler reads its first letters as instructions (a text beginning with `c`
    would read as a reference to some code, and be reported as such)."""
    with path.open("rb") as file:
        head = file.read(4)
    if not (head == b"PK\x03\x04" or head[:1] == b"\x80"):
        raise UserError(
            f"checkpoint {path} is damaged or not a checkpoint (torch.save did not write it); "
            "use another checkpoint, e.g. last.pt or best.pt of the same run."
        )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint; any other or damaged file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} does not exist; pass the path of a .pt file in a run's checkpoints/ folder."
        )
    check_not_empty(path)
    check_written_by_torch_save(path)
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
        if "TorchScript" in str(error):  # torch's own advice (weights_only=False) is not ours
            raise UserError(
                f"{path} is a TorchScript model (as nntrain-export writes), not a checkpoint; "
                "pass a run directory or its checkpoints/best.pt."
            ) from error
        raise UserError(
            f"checkpoint {path} is damaged or not a checkpoint ({first_line(error)}); "
            "use another checkpoint, e.g. last.pt or best.pt of the same run."
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"{path} is not an nntrain checkpoint (it has no 'model' entry).")
    if isinstance(state.get("config"), str):
        state["config"] = with_current_targets(state["config"])
    return state


def load_resumable(path: str | Path) -> dict[str, Any]:
    """load_checkpoint for resume=: the file must also hold what continuing a run needs (the
    run's config, the optimizer's state and where it stopped), which only nntrain's trainer
    writes; a file of weights alone is refused in one sentence."""
    state = load_checkpoint(path)
    needed = {"config": "config", "optimizer": "optimizer state", "epoch": "epoch"}
    missing = [name for key, name in needed.items() if key not in state]
    if missing or not isinstance(state["config"], str):
        lacks = " and ".join([", ".join(missing[:-1]), missing[-1]] if missing[1:] else missing)
        raise UserError(
            f"{path} cannot be resumed: it lacks the run's {lacks or 'config'}, "
            "so nntrain's trainer did not write it; resume= takes last.pt or best.pt of an "
            "nntrain run (or its run directory)."
        )
    return state


# Classes and functions that moved when the package was grouped into subpackages: a
# checkpoint's config written before still names the old place.
MOVED_TARGETS = {
    "nntrain.trainer.Trainer": "nntrain.training.trainer.Trainer",
    "nntrain.data.memory.": "nntrain.data.in_memory.",
    "nntrain.data.vision.": "nntrain.data.torchvision_sets.",
    "nntrain.data.folder.": "nntrain.data.image_folder.",
    "nntrain.optim.warmup_cosine": "nntrain.optim.schedules.warmup_cosine",
    "nntrain.optim.step_decay": "nntrain.optim.schedules.step_decay",
    "nntrain.optim.constant": "nntrain.optim.schedules.constant",
    "nntrain.optim.triangle": "nntrain.optim.schedules.triangle",
}


def with_current_targets(config_yaml: str) -> str:
    """A saved config's YAML with every `_target_` that has moved pointing at its new place,
    so that checkpoints of earlier versions still evaluate, predict and resume."""
    for old, new in MOVED_TARGETS.items():
        config_yaml = re.sub(rf"(_target_: ){re.escape(old)}", rf"\g<1>{new}", config_yaml)
    return config_yaml
