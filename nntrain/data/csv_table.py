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
from collections.abc import Sequence
from typing import Any

import torch

from nntrain.data.in_memory import InMemoryData, Split, split_indices
from nntrain.data.table_columns import (
    MISSING_POLICIES,
    column_groups,
    describe_unseen,
    encode,
    feature_names,
    fit_columns,
    fit_scaling,
    is_numeric,
    listed,
    refuse_missing,
)
from nntrain.data.table_file import Table, is_missing, parse_number, read_table
from nntrain.errors import require

log = logging.getLogger("nntrain")

TASKS = ("auto", "classification", "regression")
MAX_AUTO_CLASSES = 20
ID_NAMES = re.compile(r"(.*[_ .-])?(id|uuid|guid)|index|row_?(number|num)?", re.IGNORECASE)


def names_list(key: str, value: object) -> list[str]:
    require(
        value is None or (isinstance(value, Sequence) and not isinstance(value, str)),
        f"{key} must be a list of column names, got {value!r}; for example {key}=[age,income].",
    )
    return [str(name) for name in value or []]  # type: ignore[attr-defined]


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


class CsvTable(InMemoryData):
    """A CSV table as a classification or regression data set (see the module docstring)."""

    name = "csv"

    def __init__(
        self,
        target: str,
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        features: Sequence[str] | None = None,
        drop: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        task: str = "auto",
        missing: str = "impute",
        batch_size: int = 32,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 42,
        class_weights: str | list[float] | None = None,  # data.class_weights
        sampler: str | None = None,  # data.sampler
    ) -> None:
        super().__init__(batch_size, val_fraction, test_fraction, seed, class_weights, sampler)
        require(task in TASKS, f"data.task must be one of {', '.join(TASKS)}, got {task!r}.")
        require(
            missing in MISSING_POLICIES,
            f"data.missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}.",
        )
        require(
            (path is None) != (train_path is None),
            "give the table as data.path=FILE (split into train/val/test) or as "
            "data.train_path=FILE (with optional data.val_path and data.test_path), not both "
            "and not neither.",
        )
        require(
            train_path is not None or (val_path is None and test_path is None),
            "data.val_path and data.test_path go with data.train_path; with data.path the "
            "splits are drawn from that one file (set data.path=null to give the files).",
        )
        tables = self._read_splits(path, train_path, val_path, test_path)
        train = tables["train"]
        self.target = str(target)
        self._check_columns(tables, [self.target], "data.target")
        chosen = self._choose_features(
            train, names_list("data.features", features), names_list("data.drop", drop)
        )
        self._check_columns(tables, chosen, "data.features")
        forced = names_list("data.categorical", categorical)
        unknown = [name for name in forced if name not in chosen]
        require(
            not unknown,
            f"data.categorical names {', '.join(unknown)}, which are not feature columns "
            f"({', '.join(chosen)}).",
        )
        if missing == "error":
            for table in tables.values():
                refuse_missing(table, chosen)
        self.columns = fit_columns(train, chosen, set(forced))
        fit_scaling(train, self.columns)
        targets = self._targets(tables, task)
        for split, table in tables.items():
            self.splits[split] = Split(encode(table, self.columns), targets[split])
        self.feature_names = feature_names(self.columns)
        self.input_shape = (len(self.feature_names),)
        self.missing = missing
        self._say_what_was_read(tables)

    # -- reading and splitting ----------------------------------------------------------------

    def _read_splits(
        self, path: str | None, train: str | None, val: str | None, test: str | None
    ) -> dict[str, Table]:
        """train/val/test tables: given files, or drawn from one (the built-in sets' rule)."""
        whole = read_table(str(path or train), "data.path" if path else "data.train_path")
        given = {
            split: read_table(str(file), f"data.{split}_path")
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
        for table in tables.values():
            empty = [i for i, cell in enumerate(table.columns[name]) if is_missing(cell)]
            require(
                not empty,
                f"{table.path.name}: the target column '{name}' is empty in "
                f"{listed([table.row(i) for i in empty])}; fill in the "
                "target of those rows or remove them.",
            )
        cells = [cell for table in tables.values() for cell in table.columns[name]]
        numbers = [parse_number(cell) for cell in cells]
        numeric = all(n is not None for n in numbers)
        distinct = sorted(set(cells), key=lambda c: (parse_number(c) or 0.0, c) if numeric else c)
        if task == "auto":
            task = (
                "regression" if numeric and len(distinct) > MAX_AUTO_CLASSES else "classification"
            )
            log.info(
                f"data: the target '{name}' has {len(distinct)} distinct "
                f"{'numeric ' if numeric else ''}values, so this is {task} (data.task=auto; set "
                "data.task=classification or regression to choose)"
            )
        self.task = task
        if task == "regression":
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
        name, values = self.target, {}
        for split, table in tables.items():
            column = []
            for row, cell in enumerate(table.columns[name]):
                number = parse_number(cell)
                require(
                    number is not None,
                    f"{table.path.name} {table.row(row)}: the target "
                    f"'{name}' holds {cell!r}, not a number; data.task=regression needs a "
                    "number in every row.",
                )
                column.append(number)
            values[split] = torch.tensor(column, dtype=torch.float64).float()
        train = values["train"]
        require(
            len(train) >= 2 and bool(train.std() > 0),
            f"the target column '{name}' has the same value in every training row; there is "
            "nothing to learn: choose another data.target.",
        )
        self.target_mean, self.target_std = float(train.mean()), float(train.std())
        self.class_names, self.num_classes = [name], 1  # one output: the predicted value
        return {s: (v - self.target_mean) / self.target_std for s, v in values.items()}

    def _say_what_was_read(self, tables: dict[str, Table]) -> None:
        kinds = [c["type"] for c in self.columns]
        sizes = ", ".join(f"{split} {len(table)}" for split, table in tables.items())
        log.info(
            f"data: {tables['train'].path.name}: {sizes} rows; {kinds.count('numeric')} numeric "
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
        }
        if self.task == "regression":
            spec["target_mean"], spec["target_std"] = self.target_mean, self.target_std
        return spec


def prepare_new_rows(
    given: str, spec: dict[str, Any]
) -> tuple[list[str], torch.Tensor, str | None]:
    """nntrain-predict's CSV for a model trained on data=csv: the row names (the first identifier
    column's values when the table has one, else row numbers from 1), the model input, and a
    sentence about categories training never saw (None when there were none). Columns may come
    in any order; other columns are ignored."""
    table = read_table(given, "inputs")
    names = [column["name"] for column in spec["columns"]]
    absent = [name for name in names if name not in table.header]
    require(
        not absent,
        f"{given} lacks the column(s) {', '.join(absent)}; the model expects the columns "
        f"{', '.join(names)} (in any order; other columns are ignored).",
    )
    if spec.get("missing") == "error":
        refuse_missing(table, names)
    unseen: dict[str, set[str]] = {}
    inputs = encode(table, spec["columns"], unseen)
    ids = [name for name in table.header if name not in names and looks_like_id(table, name)]
    rows = table.columns[ids[0]] if ids else [str(i) for i in range(1, len(table) + 1)]
    return rows, inputs, describe_unseen(unseen) if unseen else None
