"""Reading a CSV file into columns of text cells, with one sentence for every way a table can be
unusable (missing file, not text, no header, no rows, ragged rows).

Cells stay text here: which columns are numbers is decided from the training rows
(nntrain.data.csv_table), and the same reader serves nntrain-predict's new rows.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from nntrain.errors import UserError, require

# Cells that mean "no value" (compared case-insensitively, after stripping spaces).
MISSING = {"", "na", "n/a", "nan", "null", "none"}


def is_missing(cell: str) -> bool:
    return cell.lower() in MISSING


def parse_number(cell: str) -> float | None:
    """The finite number a cell holds, or None (text, inf, nan)."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class Table:
    """A CSV file's header and cells by column (stripped), and each row's number (from 1,
    after the header) and line in the file, for messages."""

    path: Path
    header: list[str]
    columns: dict[str, list[str]]
    lines: list[int]
    numbers: list[int]

    def __len__(self) -> int:
        return len(self.lines)

    def row(self, index: int) -> str:
        """Row `index` of this table as the user finds it in the file."""
        return f"row {self.numbers[index]} (line {self.lines[index]})"

    def rows(self, index: list[int]) -> Table:
        """The table of the given rows only (in that order)."""
        return Table(
            self.path,
            self.header,
            {name: [cells[i] for i in index] for name, cells in self.columns.items()},
            [self.lines[i] for i in index],
            [self.numbers[i] for i in index],
        )


def read_table(given: str, key: str) -> Table:
    """The CSV file `given` (the value of config key `key`, for the messages)."""
    path = Path(os.path.expanduser(given))
    example = f"{key}=~/customers.csv"
    require(
        not path.is_dir(),
        f"{key}={given} is a folder; give the path of a CSV file in it, e.g. {example}.",
    )
    require(
        path.is_file(), f"{key}={given}: no such file; give the path of a CSV file, e.g. {example}."
    )
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:  # -sig: Excel's byte-order mark
            delimiter = delimiter_of(file)
            reader = csv.reader(file, delimiter=delimiter)
            header = [name.strip() for name in next(reader, [])]
            require(
                any(header),
                f"{path} is empty; a table needs a header row naming the columns, then one row "
                "per sample.",
            )
            check_header(path, header)
            cells: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank lines are no rows
                require(
                    len(row) == len(header),
                    f"{path} line {reader.line_num} has {len(row)} cells and the header "
                    f"{len(header)}; every row needs one cell per column (an empty cell is a "
                    "missing value).",
                )
                cells.append([cell.strip() for cell in row])
                if delimiter == ";":  # a decimal-comma locale: 2,5 is the number 2.5
                    cells[-1] = [decimal_point(cell) for cell in cells[-1]]
                lines.append(reader.line_num)
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not a text CSV file; give a CSV file ({example}).") from error
    except csv.Error as error:
        raise UserError(
            f"{path} is not a readable CSV file ({error}); check its quoting."
        ) from error
    require(bool(cells), f"{path} has a header but no rows; the table is empty.")
    columns = {name: [row[i] for row in cells] for i, name in enumerate(header)}
    return Table(path, header, columns, lines, list(range(1, len(lines) + 1)))


# Separators besides the comma, tried only when the header has no comma: spreadsheets in many
# locales save "CSV" with semicolons (the comma being their decimal mark), and tabs are common.
OTHER_DELIMITERS = ";\t|"


DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+([eE][+-]?\d+)?")


def decimal_point(cell: str) -> str:
    """A number written with a decimal comma (2,5) with a point instead (2.5); other cells as
    they are."""
    return cell.replace(",", ".") if DECIMAL_COMMA.fullmatch(cell) else cell


def delimiter_of(file: TextIO) -> str:
    """The file's cell separator: a comma whenever the first line has one (so that a comma
    file never changes meaning), else the one of ; tab | that splits its first lines alike.
    Leaves the file at its start."""
    sample = file.read(64 * 1024)
    file.seek(0)
    header = sample.splitlines()[0] if sample else ""
    if "," in header or not any(mark in header for mark in OTHER_DELIMITERS):
        return ","
    try:
        return csv.Sniffer().sniff(sample, delimiters=OTHER_DELIMITERS).delimiter
    except csv.Error:  # not consistent over the sample: the header's most frequent mark
        return max(OTHER_DELIMITERS, key=header.count)


def check_header(path: Path, header: list[str]) -> None:
    """A first row of numbers is data, not a header; names must be there and distinct."""
    require(
        not all(parse_number(name) is not None for name in header),
        f"{path} has no header row (its first line, {','.join(header[:4])}..., is numbers); add "
        "a first line naming the columns.",
    )
    if not all(header):
        raise UserError(
            f"{path}: column {header.index('') + 1} of the header has no name; name every column."
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    require(
        not repeated,
        f"{path}: the header names the column(s) {', '.join(repeated)} more than once; give "
        "each column its own name.",
    )
