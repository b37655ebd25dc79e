"""How a table's columns become model input, learned from the training rows and replayed on any
other rows (validation, test, and nntrain-predict's new CSV) from a plain-data description.

Numeric columns: a missing cell becomes the training median (and, when the training rows had
missing cells in that column, a 0/1 missing-indicator input follows it), then standardised
with the training mean and std. Text columns: one-hot over the categories seen in training; a
missing cell is a category of its own, "(missing)"; a category never seen in training gets no
one (all zeros), and the caller is told once. One-hot rather than a learned embedding: any model
that takes a flat vector (the MLP, a user's model) works unchanged, and tables of this size have
few categories per column, where an embedding would learn no better and needs a model that
knows the column layout.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from nntrain.data.table_file import Table, is_missing, parse_number
from nntrain.errors import UserError, require

MISSING_CATEGORY = "(missing)"
MISSING_POLICIES = ("impute", "error")
# A column whose non-missing cells are at least this share numbers is numeric, and its other
# cells are mistakes (named); below it, the column is text.
NUMERIC_SHARE = 0.9


def listed(lines: list[str], limit: int = 5) -> str:
    shown = ", ".join(lines[:limit])
    return shown + (f" (and {len(lines) - limit} more)" if len(lines) > limit else "")


def refuse_missing(table: Table, names: list[str]) -> None:
    """data.missing=error: any missing cell in a feature column is named."""
    for name in names:
        rows = [i for i, cell in enumerate(table.columns[name]) if is_missing(cell)]
        require(
            not rows,
            f"{table.path.name}: column '{name}' has missing values in "
            f"{listed([table.row(i) for i in rows])}; fill them in, or "
            "set data.missing=impute (numeric: the training median plus a missing-indicator "
            "input; text: a category of its own).",
        )


def is_numeric(table: Table, name: str) -> bool:
    cells = [cell for cell in table.columns[name] if not is_missing(cell)]
    numbers = sum(parse_number(cell) is not None for cell in cells)
    return bool(cells) and numbers >= NUMERIC_SHARE * len(cells)


# How to fix a text cell in a numeric column: in training the column can become categorical;
# a trained model's columns are what they are (nntrain-predict).
TRAINING_FIX = (
    "fix the cell, leave it empty (a missing value), or list the column in data.categorical to "
    "treat its values as categories"
)
TRAINED_FIX = (
    "fix the cell or leave it empty (a missing value): the trained model reads it as a number"
)


def numbers_of(table: Table, name: str, fill: float, fix: str = TRAINING_FIX) -> list[float]:
    """The column's numbers, `fill` for missing cells; a text cell is named as the mistake."""
    values = []
    for row, cell in enumerate(table.columns[name]):
        if is_missing(cell):
            values.append(fill)
            continue
        value = parse_number(cell)
        if value is None:
            raise UserError(
                f"{table.path.name} {table.row(row)}: column '{name}' holds "
                f"{cell!r}, which is not a number, and the column is numeric; {fix}."
            )
        values.append(value)
    return values


def fit_columns(train: Table, names: list[str], categorical: set[str]) -> list[dict[str, Any]]:
    """Each feature column's description, from the training rows; numeric columns get their
    mean and std afterwards (fit_scaling), over the imputed training matrix."""
    columns: list[dict[str, Any]] = []
    for name in names:
        cells = train.columns[name]
        present = [cell for cell in cells if not is_missing(cell)]
        if name not in categorical and is_numeric(train, name):
            values = numbers_of(train, name, 0.0)
            observed = [v for v, cell in zip(values, cells, strict=True) if not is_missing(cell)]
            columns.append(
                {
                    "name": name,
                    "type": "numeric",
                    "median": float(statistics.median(observed)),
                    "indicator": len(present) < len(cells),
                }
            )
        else:
            require(
                bool(present) or name in categorical,
                f"{train.path.name}: column '{name}' has no values in the training rows; leave "
                f"it out with data.drop=[{name}].",
            )
            seen = {cell if not is_missing(cell) else MISSING_CATEGORY for cell in cells}
            columns.append({"name": name, "type": "categorical", "categories": sorted(seen)})
    return columns


def numeric_matrix(
    table: Table, columns: list[dict[str, Any]], fix: str = TRAINING_FIX
) -> torch.Tensor:
    """(rows, numeric columns) float32 with missing cells imputed by the training median."""
    numeric = [c for c in columns if c["type"] == "numeric"]
    if not numeric:
        return torch.zeros(len(table), 0)
    values = [numbers_of(table, c["name"], c["median"], fix) for c in numeric]
    return torch.tensor(values, dtype=torch.float64).T.float().contiguous()


def fit_scaling(train: Table, columns: list[dict[str, Any]]) -> None:
    """The numeric columns' training mean and std (unbiased), as nntrain's built-in tabular sets
    compute them: one float32 reduction over the training matrix (so a built-in set written to
    CSV trains to the same weights)."""
    matrix = numeric_matrix(train, columns)
    if matrix.shape[1] == 0:
        return
    mean = matrix.mean(dim=0)
    std = matrix.std(dim=0).clamp_min(1e-8)
    numeric = [c for c in columns if c["type"] == "numeric"]
    for column, m, s in zip(numeric, mean.tolist(), std.tolist(), strict=True):
        column["mean"], column["std"] = m, s


def feature_names(columns: list[dict[str, Any]]) -> list[str]:
    """The model inputs' names, in order: a numeric column (and its indicator), then one per
    category of a text column (column=category)."""
    names = []
    for column in columns:
        if column["type"] == "numeric":
            names.append(column["name"])
            if column["indicator"]:
                names.append(f"{column['name']}_missing")
        else:
            names += [f"{column['name']}={category}" for category in column["categories"]]
    return names


def column_groups(columns: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Which model inputs come from which table column (feature importance per column)."""
    groups, start = {}, 0
    for column in columns:
        width = (
            1 + int(column["indicator"])
            if column["type"] == "numeric"
            else len(column["categories"])
        )
        groups[column["name"]] = list(range(start, start + width))
        start += width
    return groups


def encode(
    table: Table, columns: list[dict[str, Any]], unseen: dict[str, set[str]] | None = None
) -> torch.Tensor:
    """The model input (rows, features) of a table's rows; categories never seen in training
    are collected into `unseen` (column -> values) when given (new rows for a trained model)."""
    numeric = [c for c in columns if c["type"] == "numeric"]
    matrix = numeric_matrix(table, columns, TRAINING_FIX if unseen is None else TRAINED_FIX)
    if numeric:
        mean = torch.tensor([c["mean"] for c in numeric], dtype=torch.float32)
        std = torch.tensor([c["std"] for c in numeric], dtype=torch.float32)
        matrix = (matrix - mean) / std
    pieces, index = [], 0
    for column in columns:
        cells = table.columns[column["name"]]
        if column["type"] == "numeric":
            pieces.append(matrix[:, index : index + 1])
            index += 1
            if column["indicator"]:
                flags = [float(is_missing(cell)) for cell in cells]
                pieces.append(torch.tensor(flags).unsqueeze(1))
            continue
        position = {category: i for i, category in enumerate(column["categories"])}
        one_hot = torch.zeros(len(cells), len(position))
        for row, cell in enumerate(cells):
            category = MISSING_CATEGORY if is_missing(cell) else cell
            if category in position:
                one_hot[row, position[category]] = 1.0
            elif unseen is not None:
                unseen.setdefault(column["name"], set()).add(category)
        pieces.append(one_hot)
    return torch.cat(pieces, dim=1) if pieces else torch.zeros(len(table), 0)


def describe_unseen(unseen: dict[str, set[str]]) -> str:
    """One sentence about categories that training never saw."""
    parts = [
        f"'{name}': {', '.join(repr(v) for v in sorted(values)[:5])}"
        for name, values in sorted(unseen.items())
    ]
    return (
        f"categories not seen in training ({'; '.join(parts)}) get no category of their "
        "column (all its one-hot inputs 0)."
    )
