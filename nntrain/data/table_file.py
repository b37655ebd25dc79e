"""Reading a CSV file into columns of text cells, with one sentence for every way a table can be
unusable (missing file, not text, no header, no rows, ragged rows).

What is detected, from the file itself (README "Tables"):
- the encoding: UTF-8 (with or without Excel's byte-order mark) or UTF-16 (with its mark, or
  without: every other byte 0); anything else is said ("save it as UTF-8");
- the cell separator and the decimal mark, together: of `,` `;` tab `|`, the one that splits
  the header and every sampled row into the same number (> 1) of cells, the comma first when it
  does (a comma file never changes meaning); with another separator, numbers written 2,5 (or
  1.234,5) are read as 2.5 (1234.5) when such cells outnumber those written 2.5 (the same for
  a comma file's quoted cells "2,5"; there "1,234" and "1,234.5" are thousands, 1234 and 1234.5).

Cells stay text here: which columns are numbers is decided from the training rows
(nntrain.data.table_columns), and the same reader serves nntrain-predict's new rows, leniently:
there a row that cannot be read (too few or too many cells, or none at all) is kept, with its
reason, so that every input row gets one output row.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from nntrain.errors import UserError, require

# Cells that mean "no value" (compared case-insensitively, after stripping spaces): pandas'
# defaults, and the "?" of UCI's tables.
MISSING = {"", "na", "n/a", "nan", "null", "none", "#n/a", "?", "-", "n.a."}
CANDIDATES = ",;\t|"  # the comma first: it wins whenever it splits the file consistently
SAMPLE_BYTES = 256 * 1024
SAMPLE_ROWS = 200
# 2,5 and 1.234,5 (or 1 234,5, 1'234,5: thousands grouped by a point, space or apostrophe)
DECIMAL_COMMA = re.compile(r"[+-]?(\d{1,3}([. \u00a0\u202f']\d{3})+|\d*),\d+([eE][+-]?\d+)?")
DECIMAL_POINT = re.compile(r"[+-]?\d*\.\d+([eE][+-]?\d+)?")
GROUPED_POINT = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")  # 1,234 and 1,234.5
NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "'|'"}


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
    after the header) and line in the file, for messages. `problems` holds, in a lenient read
    (nntrain-predict), why a row could not be read (by row index)."""

    path: Path
    header: list[str]
    columns: dict[str, list[str]]
    lines: list[int]
    numbers: list[int]
    problems: dict[int, str] = field(default_factory=dict)
    delimiter: str = ","
    decimal_comma: bool = False
    size: int = 0  # the file's bytes and their SHA-256: what a checkpoint records of its data
    sha256: str = ""

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
            {new: self.problems[old] for new, old in enumerate(index) if old in self.problems},
            self.delimiter,
            self.decimal_comma,
            self.size,
            self.sha256,
        )

    def describe_format(self) -> str:
        """How the file was read, for the start-up line: `tabs, decimal commas`."""
        return NAMES[self.delimiter] + (", decimal commas" if self.decimal_comma else "")


def read_table(given: str, key: str, lenient: bool = False) -> Table:
    """The CSV file `given` (the value of config key `key`, for the messages). lenient: rows
    that cannot be read are kept, empty, with their reason in Table.problems (see the module
    docstring); otherwise a ragged row is refused in one sentence and blank lines are skipped."""
    path = Path(os.path.expanduser(given))
    example = f"{key}=~/customers.csv"
    require(
        not path.is_dir(),
        f"{key}={given} is a folder; give the path of a CSV file in it, e.g. {example}.",
    )
    require(
        path.is_file(), f"{key}={given}: no such file; give the path of a CSV file, e.g. {example}."
    )
    raw = path.read_bytes()
    text = decoded(path, raw, example)
    delimiter, decimal_comma = detect_format(text)
    try:
        table = parse(path, text, delimiter, lenient)
    except csv.Error as error:
        raise UserError(
            f"{path} is not a readable CSV file ({error}); check its quoting."
        ) from error
    table.columns = {
        name: [as_python_number(cell, decimal_comma) for cell in cells]
        for name, cells in table.columns.items()
    }
    table.delimiter, table.decimal_comma = delimiter, decimal_comma
    table.size, table.sha256 = len(raw), hashlib.sha256(raw).hexdigest()
    return table


def decoded(path: Path, raw: bytes, example: str) -> str:
    """The file's text: UTF-8 (Excel's byte-order mark dropped) or UTF-16; other bytes are one
    sentence saying what the file seems to be and how to save it."""
    workbook = raw.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0"))  # .xlsx (a zip), .xls
    if workbook or raw.startswith(b"\x80"):  # ... or a pickle, e.g. a checkpoint of torch < 1.6
        what = "an Excel workbook or another zip file" if workbook else "binary data"
        raise UserError(
            f"{path} is not a text CSV file (it holds {what}); save or export the table as CSV "
            f"(UTF-8) and give that file ({example})."
        )
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif len(raw) >= 4 and raw[1:40:2].count(0) >= len(raw[1:40:2]) * 0.9:
        encoding = "utf-16-le"  # UTF-16 without its mark: ASCII text with every other byte 0
    elif len(raw) >= 4 and raw[0:40:2].count(0) >= len(raw[0:40:2]) * 0.9:
        encoding = "utf-16-be"
    else:
        encoding = "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        head = raw[:4096]
        if sum(byte < 9 or 13 < byte < 32 for byte in head) > len(head) / 100:  # control codes
            raise UserError(
                f"{path} is not a text CSV file (it holds binary data); save or export the table "
                f"as CSV (UTF-8) and give that file ({example})."
            ) from error
        bad = raw[error.start : error.start + 1].hex()
        line = raw[: error.start].count(b"\n") + 1
        raise UserError(
            f"{path} is not UTF-8 text (byte 0x{bad} on line {line}, as in a Latin-1 or "
            "Windows-1252 file); save it as UTF-8 (in Excel: Save As 'CSV UTF-8'), e.g. "
            f"iconv -f cp1252 -t utf-8 {path.name} > utf8.csv."
        ) from error


def sample_records(text: str, delimiter: str) -> list[list[str]]:
    """The first records of the text as `delimiter` splits them, blank lines left out; a
    record cut off by the sample's end is dropped."""
    sample = text[:SAMPLE_BYTES]
    if len(text) > SAMPLE_BYTES:
        sample = sample[: sample.rfind("\n") + 1]
    records = []
    try:
        for record in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter):
            if any(cell.strip() for cell in record):
                records.append(record)
            if len(records) > SAMPLE_ROWS:
                break
    except csv.Error:
        return []
    return records


def detect_format(text: str) -> tuple[str, bool]:
    """(the cell separator, whether numbers have a decimal comma): see the module docstring."""
    splits = {mark: sample_records(text, mark) for mark in CANDIDATES}

    def consistent(mark: str) -> bool:
        records = splits[mark]
        return (
            bool(records)
            and len(records[0]) > 1
            and all(len(r) == len(records[0]) for r in records)
        )

    qualified = [mark for mark in CANDIDATES if consistent(mark)]
    said = re.match(r"sep=(.)\r?\n", text)  # Excel's first line naming the separator
    if said and said.group(1) in CANDIDATES:
        delimiter = said.group(1)
        splits[delimiter] = splits[delimiter][1:]
    elif qualified:
        delimiter = max(qualified, key=lambda m: (m == ",", len(splits[m][0])))
    else:  # ragged everywhere: the mark that makes most rows as wide as the header
        delimiter = max(CANDIDATES, key=lambda m: agreeing_rows(splits[m]))
    cells = [cell.strip() for record in splits[delimiter][1:] for cell in record]
    commas = [cell for cell in cells if DECIMAL_COMMA.fullmatch(cell)]
    if delimiter == ",":  # a comma in a cell was quoted: "1,234" there is a thousands group
        commas = [cell for cell in commas if not GROUPED_POINT.fullmatch(cell)]
    points = sum(bool(DECIMAL_POINT.fullmatch(cell)) for cell in cells)
    return delimiter, bool(commas) and len(commas) >= points


def agreeing_rows(records: list[list[str]]) -> int:
    if not records or len(records[0]) < 2:
        return -1
    return sum(len(record) == len(records[0]) for record in records)


def parse(path: Path, text: str, delimiter: str, lenient: bool) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    if delimiter.join(header) == f"sep={delimiter}":  # Excel's "sep=;" first line
        header = [name.strip() for name in next(reader, [])]
    require(
        any(header),
        f"{path} is empty; a table needs a header row naming the columns, then one row per sample.",
    )
    header, unnamed = named_columns(header)
    check_header(path, header)
    cells: list[list[str]] = []
    lines: list[int] = []
    problems: dict[int, str] = {}
    blank: list[int] = []  # blank lines so far, kept as rows once a row follows (lenient)
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):  # a blank line
            if lenient:  # a row only between rows, not at the end of the file
                blank.append(reader.line_num)
            continue
        if not lenient and not any(cell.strip() for cell in row):
            continue  # a row of separators only (,,,) is no row to train on
        for line in blank:
            problems[len(cells)] = "an empty line"
            cells.append([""] * len(header))
            lines.append(line)
        blank = []
        row = without_unnamed(path, row, len(header), unnamed, reader.line_num)
        if len(row) != len(header):
            require(
                lenient,
                f"{path} line {reader.line_num} has {len(row)} cells and the header "
                f"{len(header)}; every row needs one cell per column (an empty cell is a "
                "missing value).",
            )
            problems[len(cells)] = f"{len(row)} cells where the header has {len(header)}"
            row = [""] * len(header)
        elif lenient and not any(cell.strip() for cell in row):
            problems[len(cells)] = "every cell is empty"
        cells.append([cell.strip() for cell in row])
        lines.append(reader.line_num)
    require(bool(cells), f"{path} has a header but no rows; the table is empty.")
    columns = {name: [row[i] for row in cells] for i, name in enumerate(header)}
    return Table(path, header, columns, lines, list(range(1, len(lines) + 1)), problems)


def named_columns(header: list[str]) -> tuple[list[str], int]:
    """The header without the unnamed columns a trailing separator makes (`a,b,c,`), and how
    many there were; an unnamed first column is pandas' index (DataFrame.to_csv): `index`,
    an identifier that training leaves out (and says so)."""
    unnamed = len(header) - len("\0".join(header).rstrip("\0").split("\0"))
    named = header[: len(header) - unnamed]
    if len(named) > 1 and named[0] == "" and "index" not in named:
        named[0] = "index"
    return named, unnamed


def without_unnamed(path: Path, row: list[str], width: int, unnamed: int, line: int) -> list[str]:
    """A row without the cells of the header's trailing unnamed columns, which must be empty."""
    if not unnamed or len(row) <= width:
        return row
    if any(cell.strip() for cell in row[width : width + unnamed]):
        raise UserError(
            f"{path} line {line} has a value in column {width + 1}, whose header has no name; "
            "name every column."
        )
    return row[:width] + row[width + unnamed :]


def as_python_number(cell: str, decimal_comma: bool) -> str:
    """A number as Python reads it: with a decimal comma (2,5; 1.234,5; 1 234,5) in a
    decimal-comma file, else with thousands commas (1,234.5) dropped; other cells as they are."""
    if decimal_comma and DECIMAL_COMMA.fullmatch(cell):
        return re.sub(r"[. \u00a0\u202f']", "", cell).replace(",", ".")
    if not decimal_comma and GROUPED_POINT.fullmatch(cell):
        return cell.replace(",", "")
    return cell


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
