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

import logging
import statistics
from typing import Any

import torch

from nntrain.data.table_file import Table, is_missing, parse_number
from nntrain.errors import UserError, require

log = logging.getLogger("nntrain")

MISSING_CATEGORY = "(missing)"
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


def number_share(table: Table, name: str) -> tuple[int, int]:
    """(cells holding a number, cells holding a value) of a column."""
    cells = [cell for cell in table.columns[name] if not is_missing(cell)]
    return sum(parse_number(cell) is not None for cell in cells), len(cells)


def is_numeric(table: Table, name: str) -> bool:
    numbers, values = number_share(table, name)
    return values > 0 and numbers >= NUMERIC_SHARE * values


# How to fix a text cell in a numeric column: in training the column can become categorical;
# a trained model's columns are what they are (nntrain-predict).
TRAINING_FIX = (
    "fix the cell, leave it empty (a missing value), or list the column in data.categorical to "
    "treat its values as categories"
)
TRAINED_FIX = (
    "fix the cell or leave it empty (a missing value): the trained model reads it as a number"
)


def numbers_of(
    table: Table,
    name: str,
    fill: float,
    fix: str = TRAINING_FIX,
    problems: dict[int, str] | None = None,
) -> list[float]:
    """The column's numbers, `fill` for missing cells; a text cell is named as the mistake, or,
    when `problems` is given (new rows to predict), recorded as its row's reason."""
    values = []
    for row, cell in enumerate(table.columns[name]):
        value = None if is_missing(cell) else parse_number(cell)
        if value is None and not is_missing(cell):
            if problems is None:
                raise UserError(
                    f"{table.path.name} {table.row(row)}: column '{name}' holds "
                    f"{cell!r}, which is not a number, and the column is numeric; {fix}."
                )
            problems.setdefault(row, f"column '{name}' holds {cell!r}, not a number")
        values.append(fill if value is None else value)
    return values


def say_mostly_numbers(train: Table, name: str) -> None:
    """A column of mostly numbers with some text becomes categories (one input per distinct
    value): said, since it is most often a few stray cells (n/d, 12 kg) in a numeric column."""
    numbers, values = number_share(train, name)
    if values == 0 or numbers < values / 2:
        return
    texts = sorted(
        {c for c in train.columns[name] if not is_missing(c) and parse_number(c) is None}
    )
    log.warning(
        f"data: column '{name}' is mostly numbers ({numbers} of {values} training cells) but "
        f"also holds text ({', '.join(repr(t) for t in texts[:3])}"
        f"{', ...' if len(texts) > 3 else ''}), so it is read as categories, one input per "
        "distinct value; to read it as numbers, fix those cells or leave them empty; to keep "
        f"it as categories and silence this, list it in data.categorical=[{name}]"
    )


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
            if name not in categorical:
                say_mostly_numbers(train, name)
            seen = {cell if not is_missing(cell) else MISSING_CATEGORY for cell in cells}
            columns.append({"name": name, "type": "categorical", "categories": sorted(seen)})
    return columns


def numeric_matrix(
    table: Table,
    columns: list[dict[str, Any]],
    fix: str = TRAINING_FIX,
    problems: dict[int, str] | None = None,
) -> torch.Tensor:
    """(rows, numeric columns) float64 with missing cells imputed by the training median."""
    numeric = [c for c in columns if c["type"] == "numeric"]
    if not numeric:
        return torch.zeros(len(table), 0, dtype=torch.float64)
    values = [numbers_of(table, c["name"], c["median"], fix, problems) for c in numeric]
    return torch.tensor(values, dtype=torch.float64).T.contiguous()


def mean_and_std(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column of a float64 matrix: the mean and the (unbiased) std, at any scale: each
    column is divided by its largest magnitude first, so values near 1e300 do not overflow
    their squares and values near 1e-300 do not underflow them."""
    scale = matrix.abs().amax(dim=0).clamp_min(torch.finfo(torch.float64).tiny)
    unit = matrix / scale
    std = unit.std(dim=0) * scale if len(matrix) > 1 else torch.zeros(matrix.shape[1])
    return unit.mean(dim=0) * scale, std.to(torch.float64)


def is_constant(mean: float, std: float) -> bool:
    """No spread beyond float64's rounding of the mean (scale-free: 1e-12 of its magnitude)."""
    return not std > 1e-12 * abs(mean)


def standardize(matrix: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(matrix - mean) / std in float64, as float32: a column's units never matter (farads or
    picofarads give the same inputs). A column without spread (std 0) gives 0."""
    spread = torch.where(std > 0, std, torch.ones_like(std))
    return torch.where(std > 0, (matrix - mean) / spread, 0.0).float()


def fit_scaling(train: Table, columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The numeric columns' training mean and std (unbiased, in float64), as nntrain's built-in
    tabular sets compute them (so a built-in set written to CSV trains to the same weights).
    Returns the columns to use: a numeric column with one value in every training row tells
    the model nothing and is left out (said once), unless its missing-indicator varies; then
    its value input is 0."""
    matrix = numeric_matrix(train, columns)
    if matrix.shape[1] == 0:
        return columns
    mean, std = mean_and_std(matrix)
    numeric = [c for c in columns if c["type"] == "numeric"]
    constant = []
    for column, m, s in zip(numeric, mean.tolist(), std.tolist(), strict=True):
        column["mean"], column["std"] = m, 0.0 if is_constant(m, s) else s
        if column["std"] == 0 and not column["indicator"]:
            constant.append(column)
    if constant:
        log.info(
            "data: left out the column(s) "
            + ", ".join(f"{c['name']} (always {c['mean']:.6g})" for c in constant)
            + ": the same value in every training row tells the model nothing"
        )
    kept = [c for c in columns if c not in constant]
    require(
        bool(kept),
        f"{train.path.name}: every feature column has the same value in every training row; "
        "there is nothing to learn from: give columns that vary (data.features).",
    )
    return kept


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
    table: Table,
    columns: list[dict[str, Any]],
    unseen: dict[str, set[str]] | None = None,
    problems: dict[int, str] | None = None,
) -> torch.Tensor:
    """The model input (rows, features) of a table's rows; categories never seen in training
    are collected into `unseen` (column -> values) when given (new rows for a trained model),
    and rows that cannot be scored into `problems` (row -> reason) when given (else a bad cell
    is a UserError)."""
    numeric = [c for c in columns if c["type"] == "numeric"]
    fix = TRAINING_FIX if unseen is None else TRAINED_FIX
    matrix = numeric_matrix(table, columns, fix, problems)
    if numeric:
        mean = torch.tensor([c["mean"] for c in numeric], dtype=torch.float64)
        std = torch.tensor([c["std"] for c in numeric], dtype=torch.float64)
        raw, matrix = matrix, standardize(matrix, mean, std)
        check_in_float32(table, numeric, raw, matrix, problems)
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


def check_in_float32(
    table: Table,
    numeric: list[dict[str, Any]],
    raw: torch.Tensor,
    standardized: torch.Tensor,
    problems: dict[int, str] | None,
) -> None:
    """A value so far from the training values that its standardised input overflows float32
    (|z| > 3.4e38) is named, with its column: the model computes in float32."""
    bad = (~standardized.isfinite()).nonzero().tolist()
    for row, index in bad:
        reason = (
            f"column '{numeric[index]['name']}' holds {raw[row, index].item():.6g}, too far "
            f"from the training values (mean {numeric[index]['mean']:.6g}) for the model's "
            "32-bit floats"
        )
        if problems is None:
            raise UserError(f"{table.path.name} {table.row(row)}: {reason}; check the value.")
        problems.setdefault(row, reason)
        standardized[row, index] = 0.0


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
