"""Your own table: `nntrain data=csv data.path=customers.csv data.target=bought`.

One CSV file is split like the built-in sets (a fixed test split, the same for every seed, and a
validation split drawn with `seed`), or separate train/val/test files are given. Which columns
are numbers, their statistics and the categories of the text columns come from the training rows
only (see nntrain.data.table_columns); input_spec() carries all of it into the checkpoint, so
nntrain-predict prepares a new CSV exactly as evaluation did.

The task is classification (one class per distinct target value) or regression (the target
standardised with the training mean and std for training; figures are reported in its units);
task=auto picks regression for a numeric target with more than MAX_AUTO_CLASSES values, and says so.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import torch

from nntrain.data.in_memory import InMemoryData, Split, split_indices
from nntrain.data.settings import CsvSettings
from nntrain.data.table_columns import (
    column_groups,
    describe_unseen,
    encode,
    feature_names,
    fit_columns,
    fit_scaling,
    is_constant,
    is_numeric,
    listed,
    mean_and_std,
    refuse_missing,
)
from nntrain.data.table_file import Table, is_missing, parse_number, read_table
from nntrain.data.table_source import fingerprint
from nntrain.errors import require
from nntrain.tasks import CLASSIFICATION, REGRESSION, task_named

log = logging.getLogger("nntrain")

FLOAT32_MAX = float(torch.finfo(torch.float32).max)
MAX_AUTO_CLASSES = 20
ID_NAMES = re.compile(r"(.*[_ .-])?(id|uuid|guid)|index|row_?(number|num)?", re.IGNORECASE)


def names_list(value: list[str | int | float] | None) -> list[str]:
    """Column names as text (a header "2024" is read as a number from the command line)."""
    return [str(name) for name in value or []]


def looks_like_id(table: Table, name: str) -> bool:
    """An identifier, not a property: named like one (id, customer_id, uuid, index), or text
    whose every value is distinct (names, e-mails), or the row numbers 0..n-1 / 1..n."""
    if ID_NAMES.fullmatch(name):
        return True
    cells = table.columns[name]
    if len(cells) < 10 or len(set(cells)) < len(cells):
        return False
    if not is_numeric(table, name):
        return True  # distinct text in every row
    numbers = [parse_number(cell) for cell in cells]
    if any(n is None for n in numbers):
        return False  # a numeric column with a mistake: named when the column is read
    ordered = sorted(n for n in numbers if n is not None)
    return ordered[0] in (0, 1) and ordered == [ordered[0] + i for i in range(len(ordered))]


def labelled_rows(table: Table, target: str, policy: str) -> Table:
    """The rows whose target is not empty (data.missing_target=drop: the others are left out,
    said in one line naming the first few) or, with error, every row (an empty target is
    refused, naming every such row, or the count and the first ten)."""
    empty = [i for i, cell in enumerate(table.columns[target]) if is_missing(cell)]
    if not empty:
        return table
    rows = [table.row(i) for i in empty]
    require(
        policy == "drop",
        f"{table.path.name}: the target column '{target}' is empty in {len(empty)} row(s): "
        f"{listed(rows, 10)}; fill in their target, or set data.missing_target=drop to train on "
        "the labelled rows only.",
    )
    require(
        len(empty) < len(table),
        f"{table.path.name}: the target column '{target}' is empty in every row; choose the "
        "column to predict with data.target.",
    )
    log.info(
        f"data: left out {len(empty)} of {len(table)} rows of {table.path.name}, whose target "
        f"'{target}' is empty: {listed(rows)}; data.missing_target=error refuses such a table"
    )
    empty_set = set(empty)
    return table.rows([i for i in range(len(table)) if i not in empty_set])


class CsvTable(InMemoryData):
    """A CSV table as a classification or regression data set (see the module docstring)."""

    name = "csv"

    def __init__(self, settings: CsvSettings | None = None, **values: Any) -> None:
        """data=csv: settings checked (nntrain.data.settings.CsvSettings), or given as keyword
        arguments (CsvTable(target="bought", path="customers.csv"))."""
        s = self._start(CsvSettings, settings, values)
        self.target, self.missing_target = str(s.target), s.missing_target
        tables = self._read_splits(s.path, s.train_path, s.val_path, s.test_path)
        train = tables["train"]
        chosen = self._choose_features(train, names_list(s.features), names_list(s.drop))
        self._check_columns(tables, chosen, "data.features")
        forced = names_list(s.categorical)
        unknown = [name for name in forced if name not in chosen]
        require(
            not unknown,
            f"data.categorical names {', '.join(unknown)}, which are not feature columns "
            f"({', '.join(chosen)}).",
        )
        if s.missing == "error":
            for table in tables.values():
                refuse_missing(table, chosen)
        self.columns = fit_scaling(train, fit_columns(train, chosen, set(forced)))
        targets = self._targets(tables, s.task)
        for split, table in tables.items():
            self.splits[split] = Split(encode(table, self.columns), targets[split])
        self.feature_names = feature_names(self.columns)
        self.input_shape = (len(self.feature_names),)
        self.missing = s.missing
        self._say_what_was_read(tables)

    # -- reading and splitting ----------------------------------------------------------------

    def _read(self, given: str, key: str) -> Table:
        """One file, recorded (see nntrain.data.table_source), without the rows whose target
        is empty (data.missing_target)."""
        table = read_table(given, key)
        self._check_columns({"file": table}, [self.target], "data.target")
        self.source.append(fingerprint(table, key))
        return labelled_rows(table, self.target, self.missing_target)

    def _read_splits(
        self, path: str | None, train: str | None, val: str | None, test: str | None
    ) -> dict[str, Table]:
        """train/val/test tables: given files, or drawn from one (the built-in sets' rule)."""
        self.source: list[dict[str, Any]] = []
        whole = self._read(str(path or train), "data.path" if path else "data.train_path")
        given = {
            split: self._read(str(file), f"data.{split}_path")
            for split, file in (("val", val), ("test", test))
            if path is None and file is not None
        }
        require(
            "test" in given or self.test_fraction > 0,
            "data.test_fraction must be between 0 and 1 when there is no data.test_path; for "
            "example data.test_fraction=0.2.",
        )
        n, test_fraction = len(whole), 0.0 if "test" in given else self.test_fraction
        if "val" not in given:  # exactly the built-in sets' split (nntrain.data.in_memory)
            train_rows, val_rows, test_rows = split_indices(
                n, self.val_fraction, test_fraction, self.seed
            )
            drawn = {"train": train_rows, "val": val_rows, "test": test_rows}
        elif test_fraction:  # the fixed test split only
            n_test = max(1, round(n * test_fraction))
            fixed = torch.randperm(n, generator=torch.Generator().manual_seed(0))
            drawn = {"train": fixed[n_test:], "test": fixed[:n_test]}
        else:
            drawn = {"train": torch.arange(n)}
        tables = {split: whole.rows(rows.tolist()) for split, rows in drawn.items()}
        tables.update(given)
        return {split: tables[split] for split in ("train", "val", "test")}

    def _check_columns(self, tables: dict[str, Table], names: list[str], key: str) -> None:
        for table in dict.fromkeys(t.path for t in tables.values()):
            header = next(t.header for t in tables.values() if t.path == table)
            absent = [name for name in names if name not in header]
            require(
                not absent,
                f"{key}: the column(s) {', '.join(absent)} are not in {table}; its columns are "
                f"{', '.join(header)}.",
            )

    def _choose_features(self, train: Table, features: list[str], drop: list[str]) -> list[str]:
        """data.features, or every column but the target, data.drop and identifiers."""
        require(
            self.target not in features,
            f"data.features lists the target column '{self.target}'; a model cannot take its "
            "own answer as input: leave it out of data.features.",
        )
        unknown = [name for name in drop if name not in train.header]
        require(
            not unknown,
            f"data.drop names {', '.join(unknown)}, which are not columns of {train.path}; its "
            f"columns are {', '.join(train.header)}.",
        )
        if features:
            return [name for name in features if name not in drop]
        candidates = [name for name in train.header if name != self.target and name not in drop]
        ids = [name for name in candidates if looks_like_id(train, name)]
        if ids:
            log.info(
                f"data: left out the identifier column(s) {', '.join(ids)} (named like an id, "
                "or a different value in every row); list them in data.features to use them"
            )
        chosen = [name for name in candidates if name not in ids]
        require(
            bool(chosen),
            f"{train.path} has no feature columns besides the target '{self.target}'"
            f"{' and identifiers' if ids else ''}; list the input columns in data.features.",
        )
        return chosen

    # -- the target ------------------------------------------------------------------------------

    def _targets(self, tables: dict[str, Table], task: str) -> dict[str, torch.Tensor]:
        """Each split's targets; sets task, class_names and num_classes."""
        name = self.target
        cells = [cell for table in tables.values() for cell in table.columns[name]]
        numbers = [parse_number(cell) for cell in cells]
        numeric = all(n is not None for n in numbers)
        distinct = sorted(set(cells), key=lambda c: (parse_number(c) or 0.0, c) if numeric else c)
        if task == "auto":
            task = (
                REGRESSION if numeric and len(distinct) > MAX_AUTO_CLASSES else CLASSIFICATION
            ).name
            log.info(
                f"data: the target '{name}' has {len(distinct)} distinct "
                f"{'numeric ' if numeric else ''}values, so this is {task} (data.task=auto; set "
                "data.task=classification or regression to choose)"
            )
        self.task = task
        if not task_named(task).has_classes:
            return self._regression_targets(tables)
        require(
            len(distinct) >= 2,
            f"the target column '{name}' holds one value only ({distinct[0]!r}); a classifier "
            "needs at least two classes: choose another data.target.",
        )
        self.class_names = distinct
        self.num_classes = len(distinct)
        index = {cell: i for i, cell in enumerate(distinct)}
        return {
            split: torch.tensor([index[cell] for cell in table.columns[name]], dtype=torch.long)
            for split, table in tables.items()
        }

    def _regression_targets(self, tables: dict[str, Table]) -> dict[str, torch.Tensor]:
        """Standardised targets (in float64, so that the target's units never matter); the
        values themselves must fit float32: predictions are turned back into them there."""
        name, values = self.target, {}
        for split, table in tables.items():
            column = []
            for row, cell in enumerate(table.columns[name]):
                number = parse_number(cell)
                where = f"{table.path.name} {table.row(row)}: the target '{name}' holds {cell!r}"
                require(
                    number is not None,
                    f"{where}, not a number; data.task=regression needs a number in every row.",
                )
                require(
                    abs(number) <= FLOAT32_MAX,  # type: ignore[arg-type]
                    f"{where}, beyond the ±3.4e38 of the 32-bit floats predictions are made in; "
                    f"rescale the column (e.g. divide it by 1e30).",
                )
                column.append(number)
            values[split] = torch.tensor(column, dtype=torch.float64)
        mean, std = (float(v) for v in mean_and_std(values["train"].unsqueeze(1)))
        require(
            len(values["train"]) >= 2 and not is_constant(mean, std),
            f"the target column '{name}' has the same value in every training row; there is "
            "nothing to learn: choose another data.target.",
        )
        self.target_mean, self.target_std = mean, std
        self.class_names, self.num_classes = [name], 1  # one output: the predicted value
        return {s: ((v - mean) / std).float() for s, v in values.items()}

    def _say_what_was_read(self, tables: dict[str, Table]) -> None:
        kinds = [c["type"] for c in self.columns]
        sizes = ", ".join(f"{split} {len(table)}" for split, table in tables.items())
        log.info(
            f"data: {tables['train'].path.name} ({tables['train'].describe_format()}): {sizes} "
            f"rows; {kinds.count('numeric')} numeric "
            f"and {kinds.count('categorical')} categorical column(s) -> "
            f"{len(self.feature_names)} model inputs; target '{self.target}' ({self.task})"
        )

    def input_spec(self) -> dict[str, Any]:
        """Everything needed to turn a new CSV row into model input, and the target's scale."""
        spec: dict[str, Any] = {
            "kind": "table",
            "columns": self.columns,
            "feature_names": list(self.feature_names),
            "groups": column_groups(self.columns),
            "missing": self.missing,
            "target": self.target,
            "task": self.task,
            "source": self.source,  # the files read, to tell when they change (table_source)
        }
        if not task_named(self.task).has_classes:  # a regression: values in the target's units
            spec["target_mean"], spec["target_std"] = self.target_mean, self.target_std
        return spec


@dataclass
class NewRows:
    """nntrain-predict's table for a trained model: one name per input row (the first
    identifier column's values when the table has one, else row numbers from 1), the model
    input of every row, why a row cannot be scored (by index; its input is then meaningless),
    and a sentence about categories training never saw (None when there were none)."""

    names: list[str]
    inputs: torch.Tensor
    problems: dict[int, str]
    note: str | None


def spec_columns(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A trained model's table columns: data=csv's own, or a built-in tabular set's (numbers
    standardised with its training mean and std, no imputation)."""
    if spec["kind"] == "table":
        return list(spec["columns"])
    return [
        {"name": name, "type": "numeric", "median": 0.0, "indicator": False, "mean": m, "std": s}
        for name, m, s in zip(spec["feature_names"], spec["mean"], spec["std"], strict=True)
    ]


def prepare_new_rows(given: str, spec: dict[str, Any]) -> NewRows:
    """The rows of a CSV file to predict (see NewRows): columns may come in any order; other
    columns are ignored. A row with a missing value the model cannot take (a built-in set's,
    or data.missing=error), a text in a numeric column or a wrong number of cells is kept,
    unscored, with its reason."""
    table = read_table(given, "inputs", lenient=True)
    columns = spec_columns(spec)
    names = [column["name"] for column in columns]
    absent = [name for name in names if name not in table.header]
    require(
        not absent,
        f"{table.path.name} lacks the column(s) {', '.join(absent)}; the model expects the "
        f"columns {', '.join(names)} (in any order; other columns are ignored).",
    )
    problems = dict(table.problems)
    if spec["kind"] != "table" or spec.get("missing") == "error":
        for name in names:
            for row, cell in enumerate(table.columns[name]):
                if is_missing(cell):
                    problems.setdefault(row, f"column '{name}' is empty")
    unseen: dict[str, set[str]] = {}
    inputs = encode(table, columns, unseen, problems)
    ids = [name for name in table.header if name not in names and looks_like_id(table, name)]
    rows = table.columns[ids[0]] if ids else [str(i) for i in range(1, len(table) + 1)]
    return NewRows(rows, inputs, problems, describe_unseen(unseen) if unseen else None)
