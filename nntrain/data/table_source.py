"""What a checkpoint records about the table it was trained on, and what changed since.

A run of data=csv keeps, for each file it read (data.path, or data.train_path/val_path/
test_path): the absolute path, its size and SHA-256, its columns, its number of rows and the
values of its text columns. Resume and nntrain-eval read the same file again (by its absolute
path, wherever they are started) and are refused in one sentence when it changed: a model's
inputs are columns and categories in a fixed order, and a renamed category or an added column
would otherwise be read silently as another one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nntrain.data.table_columns import is_numeric
from nntrain.data.table_file import Table, is_missing, read_table
from nntrain.errors import UserError

# The values of a text column are recorded up to this many (more is an identifier or free text,
# whose change the file's hash still tells).
MAX_RECORDED_VALUES = 100


def fingerprint(table: Table, key: str) -> dict[str, Any]:
    """The record of one file (see the module docstring); `key` is the setting that named it."""
    values = {}
    for name in table.header:
        distinct = {cell for cell in table.columns[name] if not is_missing(cell)}
        if not is_numeric(table, name) and len(distinct) <= MAX_RECORDED_VALUES:
            values[name] = sorted(distinct)
    return {
        "key": key,
        "path": str(table.path.absolute()),
        "size": table.size,
        "sha256": table.sha256,
        "rows": len(table),
        "columns": list(table.header),
        "values": values,
    }


def changes(recorded: dict[str, Any], path: Path) -> str | None:
    """What differs between a recorded file and the file at `path` now ('3 row(s) more (203,
    was 200); column 'grade': 'B' no longer there and 'D' new'), or None when it holds the
    same bytes."""
    if not path.is_file():
        return "it is gone" if path == Path(recorded["path"]) else f"{path} does not exist"
    same_size = path.stat().st_size == recorded["size"]
    if same_size and hashlib.sha256(path.read_bytes()).hexdigest() == recorded["sha256"]:
        return None
    try:
        now = read_table(str(path), recorded["key"])
    except UserError as error:  # unreadable now: what is wrong with it says enough
        return str(error).rstrip(".")
    said = []
    before, after = recorded["columns"], now.header
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    if added:
        said.append(f"column(s) added: {', '.join(added)}")
    if removed:
        said.append(f"column(s) removed: {', '.join(removed)}")
    if len(now) != recorded["rows"]:
        more = len(now) - recorded["rows"]
        said.append(
            f"{abs(more)} row(s) {'more' if more > 0 else 'fewer'} ({len(now)}, was "
            f"{recorded['rows']})"
        )
    for name, old in recorded["values"].items():
        if name in after:
            said += value_changes(name, old, now)
    if not said:
        said.append(
            "its cells differ (the same columns, row count and categories; "
            f"{recorded['size']} bytes, now {path.stat().st_size})"
        )
    return "; ".join(said)


def value_changes(name: str, old: list[str], now: Table) -> list[str]:
    new = {cell for cell in now.columns[name] if not is_missing(cell)}
    gone = [value for value in old if value not in new]
    added = sorted(new - set(old))
    parts = []
    if gone:
        parts.append(f"{', '.join(repr(v) for v in gone[:5])} no longer there")
    if added:
        parts.append(f"{', '.join(repr(v) for v in added[:5])} new")
    return [f"column '{name}': {' and '.join(parts)}"] if parts else []


def changed_data(spec: dict[str, Any], data_config: Mapping[str, Any]) -> str | None:
    """One sentence's worth on the files the data config names now against those a
    checkpoint's input spec records ('data.path=/abs/t.csv changed since the run trained on
    it (...)'), or None when every file holds the same bytes (or nothing was recorded: runs
    before this record, and data sets other than tables)."""
    said = []
    for recorded in spec.get("source") or []:
        value = data_config.get(recorded["key"].removeprefix("data."))
        if not value:
            said.append(f"{recorded['key']} is no longer given (the run read {recorded['path']})")
            continue
        path = Path(os.path.expanduser(str(value))).absolute()
        change = changes(recorded, path)
        if change is None:
            continue
        if path == Path(recorded["path"]):
            said.append(f"{recorded['key']}={path} changed since the run trained on it ({change})")
        else:
            said.append(
                f"{recorded['key']}={path} is not the file the run trained on, "
                f"{recorded['path']} ({change})"
            )
    return "; ".join(said) or None
