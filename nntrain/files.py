"""Files the tool writes, written atomically: a temporary file in the same folder, flushed and
fsynced, then renamed over the target in one step. A crash, a full disk or Ctrl-C mid-write
leaves the previous file (or none), never half of one."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


UMASK = _umask()


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call write(file) on a temporary file beside path, then rename it to path.

    Raises OSError (or what write raises) with the temporary file removed and path untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); the result gets the usual permissions.
        os.chmod(temporary, 0o666 & ~UMASK)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    def write(file: IO[bytes]) -> None:
        file.write(text.encode("utf-8"))

    return write_atomically(path, write)


def copy_file(source: str | Path, target: str | Path) -> Path:
    """A copy of source at target, written atomically (never a half-copied file)."""

    def write(file: IO[bytes]) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, file)

    return write_atomically(target, write)


def write_json(path: str | Path, data: Any) -> Path:
    """data as indented JSON with a final newline."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: str | Path, rows: Iterable[Sequence[Any]]) -> Path:
    """Rows (the header first) as CSV, UTF-8."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return write_text(path, buffer.getvalue())


def load_yaml(text: str) -> Any:
    """YAML as yaml.safe_load reads it, by libyaml's C parser where PyYAML has it (5-10x
    faster: every sweep job reads its sweep's multirun.yaml and its own hydra.yaml)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def writable_folder(folder: Path) -> bool:
    """Whether a file can be created in folder (or, when it does not exist yet, in the folder
    that would hold it): tried for real, as permission bits do not tell for root or /proc."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False
