"""Tables you can trust (issue 27): no silently wrong model from a CSV file.

Each test writes its table in the on-disk form a user has (units of any scale, tab- or
'|'-separated cells with decimal commas, UTF-16, rows without a target, a file edited between
training and resume or evaluation, a predict file with an empty row) and reads it with the
real loader or runs the real command.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_breast_cancer

from nntrain.commands import train as cli
from nntrain.data.csv_table import CsvTable, prepare_new_rows
from nntrain.errors import UserError
from tests.conftest import compose_config, read_metrics, run_nntrain
from tests.test_evaluate import run_eval
from tests.test_predict import read_csv, run_predict

COLUMNS = ["radius", "texture", "capacitance"]


def cancer_table(path: Path, scale: float = 1.0, separator: str = ",", comma: bool = False) -> Path:
    """Three columns of scikit-learn's breast cancer table (the third multiplied by `scale`:
    the same quantity in other units) and the diagnosis, written as a spreadsheet would."""
    features, target = load_breast_cancer(return_X_y=True)
    lines = [separator.join([*COLUMNS, "diagnosis"])]
    for row, label in zip(features[:, [0, 1, 2]].tolist(), target.tolist(), strict=True):
        values = [repr(v) for v in (row[0], row[1], row[2] * scale)]
        if comma:
            values = [v.replace(".", ",") for v in values]
        lines.append(separator.join([*values, "benign" if label else "malignant"]))
    path.write_text("\n".join(lines) + "\n")
    return path


# -- 1. units never decide the inputs ------------------------------------------------------------


def test_a_column_in_any_units_gives_the_same_inputs_and_the_same_model(tmp_path):
    """Farads (values ~5e-10) trained to 0.59 where picofarads reached 0.975: the std was clamped
    at 1e-8. Now the inputs are identical from 1e-30 to 1e30, and so is the trained model."""
    reference = CsvTable(target="diagnosis", path=str(cancer_table(tmp_path / "1.csv")))
    for scale in (1e-30, 1e-12, 1e-6, 1e6, 1e12, 1e30):
        table = CsvTable(target="diagnosis", path=str(cancer_table(tmp_path / "s.csv", scale)))
        for split, data in table.splits.items():
            assert torch.equal(data.inputs, reference.splits[split].inputs), (scale, split)
    common = ["data=csv", "data.target=diagnosis", "trainer=debug", "trainer.max_epochs=3"]
    accuracies = []
    for scale in (1e-12, 1.0, 1e12):
        path = cancer_table(tmp_path / f"{scale}.csv", scale)
        cfg = compose_config(*common, f"data.path={path}")
        cli.run(cfg, str(tmp_path / f"run{scale}"))
        accuracies.append(read_metrics(tmp_path / f"run{scale}")["test/acc"])
    assert accuracies[0] == accuracies[1] == accuracies[2] and accuracies[0] > 0.85


def test_a_constant_column_is_said_once_and_left_out(tmp_path, caplog):
    lines = ["x,unit,label"] + [f"{i % 7},5e-10,{'a' if i % 7 > 3 else 'b'}" for i in range(60)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.INFO, logger="nntrain"):
        table = CsvTable(target="label", path=str(tmp_path / "t.csv"))
    assert table.feature_names == ["x"]
    said = [r.getMessage() for r in caplog.records if "left out the column" in r.getMessage()]
    assert said == [
        "data: left out the column(s) unit (always 5e-10): the same value in every training row "
        "tells the model nothing"
    ]


def test_values_beyond_float32_train_as_features_and_are_named_as_a_target(tmp_path):
    lines = ["x,y"] + [f"{(i % 9) * 1e39!r},{i % 9 + (i % 4) * 0.1}" for i in range(60)]
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
    table = CsvTable(target="y", path=str(tmp_path / "big.csv"), task="regression")
    inputs = table.splits["train"].inputs
    assert bool(inputs.isfinite().all()) and float(inputs.abs().max()) < 3
    lines = ["x,y"] + [f"{i % 9},{i % 9 if i != 5 else 1e39}" for i in range(60)]
    (tmp_path / "huge.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as caught:
        CsvTable(target="y", path=str(tmp_path / "huge.csv"), task="regression")
    assert str(caught.value) == (
        "huge.csv row 6 (line 7): the target 'y' holds '1e+39', beyond the ±3.4e38 of the "
        "32-bit floats predictions are made in; rescale the column (e.g. divide it by 1e30)."
    )


# -- 2. separators, decimal marks and encodings -------------------------------------------------


@pytest.mark.parametrize("separator", ["\t", "|", ";"])
def test_decimal_commas_with_any_separator_read_as_the_comma_file(separator, tmp_path, caplog):
    """`1,5<TAB>2,25` was read as text: every number one-hot, test accuracy 0.60."""
    reference = CsvTable(target="diagnosis", path=str(cancer_table(tmp_path / "ref.csv")))
    path = cancer_table(tmp_path / "local.csv", separator=separator, comma=True)
    with caplog.at_level(logging.INFO, logger="nntrain"):
        table = CsvTable(target="diagnosis", path=str(path))
    assert table.feature_names == COLUMNS
    for split, data in table.splits.items():
        assert torch.equal(data.inputs, reference.splits[split].inputs), split
        assert torch.equal(data.targets, reference.splits[split].targets), split
    name = {"\t": "tabs", "|": "'|'", ";": "semicolons"}[separator]
    assert any(f"local.csv ({name}, decimal commas)" in r.getMessage() for r in caplog.records)


def test_quoted_decimal_commas_and_thousands_groups_are_numbers(tmp_path):
    reference = CsvTable(target="diagnosis", path=str(cancer_table(tmp_path / "ref.csv")))
    text = (tmp_path / "ref.csv").read_text().splitlines()
    quoted = [text[0]] + [
        ",".join(f'"{cell.replace(".", ",")}"' for cell in line.split(",")) for line in text[1:]
    ]
    (tmp_path / "quoted.csv").write_text("\n".join(quoted) + "\n")
    table = CsvTable(target="diagnosis", path=str(tmp_path / "quoted.csv"))
    assert torch.equal(table.splits["train"].inputs, reference.splits["train"].inputs)
    lines = ["amount,label"] + [
        f'"{i % 9},{i % 7}{i % 3}5.25",{"ab"[i % 9 > 4]}' for i in range(60)
    ]
    (tmp_path / "thousands.csv").write_text("\n".join(lines) + "\n")
    grouped = CsvTable(target="label", path=str(tmp_path / "thousands.csv"))
    assert grouped.feature_names == ["amount"]  # numbers (1,005.25 is 1005.25), not categories
    column = grouped.columns[0]
    raw = grouped.splits["train"].inputs[:, 0].double() * column["std"] + column["mean"]
    expected = {float(f"{i % 9}{i % 7}{i % 3}5.25") for i in range(60)}
    assert all(min(abs(value - e) for e in expected) < 1e-3 for value in raw.tolist())


def refusal(path: Path, target: str = "label") -> str:
    """The sentence data=csv refuses the table at `path` with."""
    with pytest.raises(UserError) as caught:
        CsvTable(target=target, path=str(path))
    return str(caught.value)


def test_utf16_is_read_and_other_encodings_are_one_sentence(tmp_path):
    text = cancer_table(tmp_path / "ref.csv").read_text()
    reference = CsvTable(target="diagnosis", path=str(tmp_path / "ref.csv"))
    for encoding in ("utf-16", "utf-16-le", "utf-8-sig"):
        (tmp_path / "enc.csv").write_bytes(text.encode(encoding))
        table = CsvTable(target="diagnosis", path=str(tmp_path / "enc.csv"))
        assert torch.equal(table.splits["test"].inputs, reference.splits["test"].inputs), encoding
    (tmp_path / "latin.csv").write_bytes("city,label\nZürich,a\nBern,b\n".encode("cp1252"))
    assert refusal(tmp_path / "latin.csv") == (
        f"{tmp_path / 'latin.csv'} is not UTF-8 text (byte 0xfc on line 2, as in a Latin-1 or "
        "Windows-1252 file); save it as UTF-8 (in Excel: Save As 'CSV UTF-8'), e.g. iconv -f "
        "cp1252 -t utf-8 latin.csv > utf8.csv."
    )
    (tmp_path / "book.csv").write_bytes(b"PK\x03\x04" + bytes(range(256)))  # an .xlsx, renamed
    assert refusal(tmp_path / "book.csv") == (
        f"{tmp_path / 'book.csv'} is not a text CSV file (it holds an Excel workbook or another "
        "zip file); save or export the table as CSV (UTF-8) and give that file "
        "(data.path=~/customers.csv)."
    )


def test_a_mostly_numeric_column_with_stray_text_is_said(tmp_path, caplog):
    rows = [f"{i % 10}.5,{'a' if i % 2 else 'b'}" for i in range(40)]
    rows[3], rows[7], rows[9] = "n/d,a", "12 kg,b", "unknown,a"  # 37 of 40 numbers: < 90 %
    rows += ["x1,a", "x2,b", "x3,a"]  # 37 of 43
    (tmp_path / "t.csv").write_text("weight,label\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.INFO, logger="nntrain"):
        CsvTable(target="label", path=str(tmp_path / "t.csv"), val_fraction=0.1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("data: column 'weight' is mostly numbers (")
    assert "so it is read as categories" in warnings[0]
    assert "data.categorical=[weight]" in warnings[0]


# -- 6. rows without a target ------------------------------------------------------------------


def penguins(path: Path, empty: list[int]) -> Path:
    """A penguins-like table whose rows `empty` have no species (the real one has 2 such rows)."""
    lines = ["bill_length,island,species"]
    for i in range(120):
        species = "" if i in empty else ("Adelie" if i % 3 else "Gentoo")
        lines.append(f"{38 + (i % 3 == 0) * 9 + (i % 5) * 0.3:.1f},{'ab'[i % 2]},{species}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rows_without_a_target_are_left_out_and_said_or_refused(tmp_path, caplog):
    path = penguins(tmp_path / "penguins.csv", [3, 71])
    with caplog.at_level(logging.INFO, logger="nntrain"):
        table = CsvTable(target="species", path=str(path))
    assert sum(table.split_sizes().values()) == 118
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert said == [
        "data: left out 2 of 120 rows of penguins.csv, whose target 'species' is empty: row 4 "
        "(line 5), row 72 (line 73); data.missing_target=error refuses such a table"
    ]
    with pytest.raises(UserError) as caught:
        CsvTable(target="species", path=str(path), missing_target="error")
    assert str(caught.value) == (
        "penguins.csv: the target column 'species' is empty in 2 row(s): row 4 (line 5), row 72 "
        "(line 73); fill in their target, or set data.missing_target=drop to train on the "
        "labelled rows only."
    )
    many = penguins(tmp_path / "many.csv", list(range(0, 120, 10)))
    with pytest.raises(UserError) as caught:
        CsvTable(target="species", path=str(many), missing_target="error")
    assert str(caught.value).startswith(
        "many.csv: the target column 'species' is empty in 12 row(s): row 1 (line 2), row 11 "
    )
    assert "row 91 (line 92) (and 2 more); fill in" in str(caught.value)


# -- 3. the file changes between training and resume or evaluation -------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A 2-epoch run of data=csv on a table with a text column, started with a relative
    data.path: (the folder it ran in, the run directory, the table's original text)."""
    folder = tmp_path_factory.mktemp("graded")
    lines = ["score,grade,passed"]
    for i in range(200):
        grade = "ABC"[i % 3]
        lines.append(f"{(i * 37) % 100},{grade},{'yes' if (i * 37) % 100 > 40 else 'no'}")
    (folder / "grades.csv").write_text("\n".join(lines) + "\n")
    done = run_nntrain(
        "data=csv",
        "data.path=grades.csv",
        "data.target=passed",
        "trainer.max_epochs=2",
        "name=graded",
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = (folder / "outputs").glob("*/*graded")
    return folder, run_dir, (folder / "grades.csv").read_text()


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "edit, change",
    [
        (
            lambda text: text.replace(",B,", ",D,"),
            "column 'grade': 'B' no longer there and 'D' new",
        ),
        (
            lambda text: (
                text.replace("score,grade,", "score,grade,extra,")
                .replace(",yes", ",1,yes")
                .replace(",no", ",1,no")
            ),
            "column(s) added: extra",
        ),
        (lambda text: text + "55,A,yes\n", "1 row(s) more (201, was 200)"),
    ],
    ids=["renamed category", "added column", "added row"],
)
def test_a_changed_table_is_refused_by_resume_and_eval_and_changes_nothing(graded, edit, change):
    folder, run_dir, original = graded
    table = folder / "grades.csv"
    before = snapshot(run_dir)
    table.write_text(edit(original))
    try:
        resumed = run_nntrain(f"resume={run_dir}", "trainer.max_epochs=3", cwd=folder)
        evaluated = run_eval(f"ckpt={run_dir}", cwd=folder)
    finally:
        table.write_text(original)
    last = run_dir / "checkpoints" / "last.pt"
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr
    assert resumed.stderr.strip().splitlines() == [
        f"Error: cannot resume {last}: data.path={table} changed since the run trained on it "
        f"({change}); resume with the data the run trained on, or train a new run on this data "
        "(without resume=)."
    ]
    assert evaluated.returncode == 1 and "Traceback" not in evaluated.stderr
    assert evaluated.stderr.strip() == (
        f"Error: cannot evaluate {run_dir / 'checkpoints' / 'best.pt'} on the test split: "
        f"data.path={table} changed since the run trained on it ({change}); restore the file "
        "the run trained on, or score the rows of another file with nntrain-predict "
        f"ckpt={run_dir} inputs=FILE."
    )
    assert snapshot(run_dir) == before  # status.json says ok; no file of the run changed
    assert json.loads((run_dir / "status.json").read_text())["status"] == "ok"


def test_eval_and_resume_from_another_folder_read_the_file_the_run_read(graded, tmp_path):
    """data.path=grades.csv was kept relative: from another folder, eval and resume read
    whatever file had that name there (here: a decoy with other columns)."""
    _, run_dir, _ = graded
    (tmp_path / "grades.csv").write_text("other,passed\n1,yes\n2,no\n")
    evaluated = run_eval(f"ckpt={run_dir}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads((run_dir / "eval_test.json").read_text())
    assert result["test/acc"] == pytest.approx(read_metrics(run_dir)["test/acc"])
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    resumed = run_nntrain(f"resume={copy}", "trainer.max_epochs=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at epoch 3" in resumed.stdout
    assert read_metrics(copy)["epochs_run"] == 3


def test_a_run_in_a_folder_with_spaces_and_non_ascii_letters_resumes(graded, tmp_path):
    """resume=/tmp/dir with space/ü/run: nntrain quotes such a value for Hydra, and resume=
    read the quotes as part of the path ('... does not exist')."""
    _, run_dir, _ = graded
    copy = tmp_path / "dir with space" / "ü" / "run"
    shutil.copytree(run_dir, copy)
    resumed = run_nntrain(f"resume={copy}", "trainer.max_epochs=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at epoch 3" in resumed.stdout
    assert read_metrics(copy)["epochs_run"] == 3


# -- 4. nntrain-predict: one output row per input row ---------------------------------------------


def test_predict_keeps_every_row_in_order_and_says_why_a_row_is_not_scored(graded, tmp_path):
    _, run_dir, _ = graded
    (tmp_path / "new.csv").write_text(
        "score,grade\n90,A\n\n10,B\n,\n75,C,extra\nninety,A\n20,A\n\n"
    )
    done = run_predict(f"ckpt={run_dir}", "inputs=new.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = read_csv(tmp_path / "predictions.csv")
    assert [row["input"] for row in rows] == [str(i) for i in range(1, 8)]
    assert [row["reason"] for row in rows] == [
        "",
        "an empty line",
        "",
        "every cell is empty",
        "3 cells where the header has 2",
        "column 'score' holds 'ninety', not a number",
        "",
    ]
    assert [row["predicted"] for row in rows] == ["yes", "", "no", "", "", "", "no"]
    assert "7 rows: 3 predicted, 4 not scored" in " ".join(done.stdout.split())
    new = prepare_new_rows(
        str(tmp_path / "new.csv"),
        torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["inputs"],
    )
    assert len(new.names) == len(new.inputs) == 7


def test_predict_without_bad_rows_writes_no_reason_column(graded, tmp_path):
    _, run_dir, _ = graded
    (tmp_path / "new.csv").write_text("grade,score\nA,90\nB,10\n")
    done = run_predict(f"ckpt={run_dir}", "inputs=new.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "predictions.csv").open(newline="") as file:
        assert next(csv.reader(file)) == ["input", "predicted", "probability", "top_k"]
    assert "2 predicted; wrote predictions.csv" in done.stdout


def test_spreadsheet_and_pandas_habits_read_as_the_plain_table(tmp_path):
    """Excel's `sep=;` first line, a separator at the end of every line, and the unnamed index
    column of pandas' DataFrame.to_csv give the plain file's inputs."""
    plain = cancer_table(tmp_path / "plain.csv")
    reference = CsvTable(target="diagnosis", path=str(plain))
    lines = plain.read_text().splitlines()
    variants = {
        "excel.csv": "sep=;\n" + "\n".join(line.replace(",", ";") for line in lines),
        "trailing.csv": "\n".join(line + "," for line in lines),
        "pandas.csv": "\n".join([f",{lines[0]}"] + [f"{i},{x}" for i, x in enumerate(lines[1:])]),
    }
    for name, text in variants.items():
        (tmp_path / name).write_text(text + "\n")
        table = CsvTable(target="diagnosis", path=str(tmp_path / name))
        assert table.feature_names == COLUMNS, name
        assert torch.equal(table.splits["test"].inputs, reference.splits["test"].inputs), name
    (tmp_path / "value.csv").write_text("a,b,\n1,x,\n2,y,3\n")
    with pytest.raises(UserError) as caught:
        CsvTable(target="b", path=str(tmp_path / "value.csv"))
    assert str(caught.value) == (
        f"{tmp_path / 'value.csv'} line 3 has a value in column 3, whose header has no name; "
        "name every column."
    )


def test_a_built_in_sets_model_and_extreme_values_leave_only_their_rows_unscored(graded, tmp_path):
    """A built-in tabular set's model has no imputation: a missing cell costs its row, as does
    a value too far from the training values for float32 (a data=csv model too)."""
    spec = {"kind": "tabular", "feature_names": ["age", "income"], "mean": [40.0, 5e4]}
    spec["std"] = [10.0, 2e4]
    (tmp_path / "new.csv").write_text("income,age\n60000,30\n70000,n/a\n1e300,20\n")
    new = prepare_new_rows(str(tmp_path / "new.csv"), spec)
    assert new.problems == {
        1: "column 'age' is empty",
        2: "column 'income' holds 1e+300, too far from the training values (mean 50000) for "
        "the model's 32-bit floats",
    }
    assert new.inputs[0].tolist() == pytest.approx([-1.0, 0.5])
    _, run_dir, _ = graded
    inputs = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["inputs"]
    (tmp_path / "far.csv").write_text("score,grade\n1e300,A\n50,B\n")
    far = prepare_new_rows(str(tmp_path / "far.csv"), inputs)
    assert list(far.problems) == [0] and far.problems[0].startswith("column 'score' holds 1e+300")


def test_figures_of_a_target_in_tiny_or_huge_units_are_not_hidden():
    from nntrain.reporting.console import figure

    assert [figure(v) for v in (5.839e-11, 0.0, 0.4169, 59.2031, 5.92e13)] == [
        "5.839e-11",
        "0.0000",
        "0.4169",
        "59.2031",
        "5.92e+13",
    ]
