"""data=csv: a user's own table (CSV files the tests write), classification, nntrain-predict on
new rows, nntrain-eval's importance per column, and every way a table can be unusable."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nntrain.commands import train as cli
from nntrain.data.csv_table import CsvTable, prepare_new_rows
from nntrain.data.in_memory import split_indices
from nntrain.data.settings import CsvSettings
from nntrain.data.tabular import Subscription
from nntrain.errors import UserError
from nntrain.inference.trained_run import build_model, load_run
from nntrain.schema import checked
from tests.conftest import compose_config, read_metrics, run_nntrain
from tests.test_predict import read_csv, run_predict

HEADER = ["customer_id", "age", "income", "city", "visits", "bought"]
N = 600
# One row of the fixed test split (the same for every seed) gets a city no training row has.
RARE_ROW = int(split_indices(N, 0.1, 0.2, 42)[2][0])


def customer(i: int, rng: random.Random) -> dict[str, str]:
    """The planted rule: bought iff income + 40 if the city is rome > 80 (age, visits: noise).
    About 10% of ages and 5% of cities are missing."""
    income, city = rng.uniform(20, 120), rng.choice(["oslo", "rome", "paris"])
    bought = income + (40 if city == "rome" else 0) > 80
    return {
        "customer_id": f"c{i:04d}",
        "age": "" if rng.random() < 0.1 else f"{rng.uniform(18, 70):.1f}",
        "income": f"{income:.2f}",
        "city": "NA" if rng.random() < 0.05 else city,
        "visits": str(rng.randint(0, 9)),
        "bought": "yes" if bought else "no",
    }


def write_rows(path: Path, rows: list[dict[str, str]], fields: list[str] = HEADER) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def customers() -> list[dict[str, str]]:
    rng = random.Random(5)
    rows = [customer(i, rng) for i in range(N)]
    rows[RARE_ROW]["city"] = "lima"
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of data=csv on the customers table: (run dir, table path, its rows, the data)."""
    folder = tmp_path_factory.mktemp("customers")
    rows = customers()
    table = write_rows(folder / "customers.csv", rows)
    cfg = compose_config(
        "data=csv",
        f"data.path={table}",
        "data.target=bought",
        "trainer=debug",
        "trainer.max_epochs=25",
        "trainer.limit_train_batches=1.0",
        "trainer.early_stopping.patience=null",
        "model.hidden=[32]",
    )
    cli.run(cfg, str(folder / "run"))
    return folder / "run", table, rows, CsvTable(target="bought", path=str(table))


def test_mixed_columns_with_missing_values_learn_the_planted_rule(trained):
    run_dir, _, _, data = trained
    # The id column is left out; age gets a missing indicator; city is one-hot with (missing);
    # the test row's "lima" was never seen in training: no category of city.
    assert data.feature_names == [
        "age",
        "age_missing",
        "income",
        "city=(missing)",
        "city=oslo",
        "city=paris",
        "city=rome",
        "visits",
    ]
    assert data.class_names == ["no", "yes"]
    train = data.splits["train"].inputs
    assert torch.allclose(train[:, [0, 2, 7]].mean(0), torch.zeros(3), atol=1e-5)
    test = data.splits["test"].inputs
    assert test[0, 3:7].tolist() == [0, 0, 0, 0]  # RARE_ROW is the first test row
    assert read_metrics(run_dir)["test/acc"] >= 0.93


def test_predict_on_reordered_columns_with_an_unseen_category_equals_evaluation(trained, tmp_path):
    run_dir, _, rows, data = trained
    test_rows = [rows[i] for i in split_indices(N, 0.1, 0.2, 42)[2].tolist()]
    reordered = ["city", "bought", "visits", "income", "note", "age", "customer_id"]
    write_rows(tmp_path / "new.csv", test_rows, reordered)
    done = run_predict(f"ckpt={run_dir}", "inputs=new.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("not seen in training") == 1 and "'lima'" in done.stdout
    predictions = read_csv(tmp_path / "predictions.csv")
    # Rows are named by the identifier column.
    assert [p["input"] for p in predictions] == [row["customer_id"] for row in test_rows]
    model = build_model(load_run(run_dir))
    with torch.no_grad():
        probs = torch.cat([model(x).softmax(1) for x in data.splits["test"].inputs.split(32)])
    expected = [data.class_names[i] for i in probs.argmax(1).tolist()]
    assert [p["predicted"] for p in predictions] == expected
    assert [p["probability"] for p in predictions] == [f"{v:.4f}" for v in probs.max(1).values]
    right = sum(
        p["predicted"] == row["bought"] for p, row in zip(predictions, test_rows, strict=True)
    )
    assert right / len(test_rows) == pytest.approx(read_metrics(run_dir)["test/acc"])


def test_a_text_cell_in_a_numeric_column_of_new_rows_leaves_that_row_unscored(trained, tmp_path):
    # One bad cell costs its row only: the others are predicted, in order, and the row says why.
    run_dir, _, rows, _ = trained
    write_rows(tmp_path / "new.csv", [rows[0], {**rows[1], "income": "n/a yet"}, rows[2]])
    new = prepare_new_rows(str(tmp_path / "new.csv"), load_run(run_dir).inputs)
    assert new.names == ["c0000", "c0001", "c0002"]
    assert new.problems == {1: "column 'income' holds 'n/a yet', not a number"}
    done = run_predict(f"ckpt={run_dir}", "inputs=new.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    predictions = read_csv(tmp_path / "predictions.csv")
    assert [p["input"] for p in predictions] == ["c0000", "c0001", "c0002"]
    assert [p["reason"] for p in predictions] == [
        "",
        "column 'income' holds 'n/a yet', not a number",
        "",
    ]
    assert predictions[1]["predicted"] == "" and predictions[0]["predicted"] in ("yes", "no")
    assert "3 rows: 2 predicted, 1 not scored" in done.stdout


def test_eval_ranks_the_table_columns_not_the_one_hot_inputs(trained):
    run_dir = trained[0]
    done = run_nntrain_eval(run_dir)
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "eval_test.json").read_text())
    permutation = results["test/importance"]["permutation"]
    assert sorted(permutation) == ["age", "city", "income", "visits"]
    ranked = sorted(permutation, key=permutation.get, reverse=True)
    assert ranked[:2] == ["income", "city"], permutation  # the rule's two columns
    assert results["test/acc"] == read_metrics(run_dir)["test/acc"]


def run_nntrain_eval(run_dir: Path) -> subprocess.CompletedProcess:
    """The installed nntrain-eval on a run, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("nntrain-eval")), f"ckpt={run_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_the_subscription_task_through_csv_trains_to_the_same_weights(tmp_path):
    """data=subscription and data=csv on the CSV it writes: the same splits, inputs, and so
    (same seed) the same weights and test accuracy."""
    table = Subscription().write_csv(tmp_path / "subscription.csv")
    common = ("trainer=debug", "trainer.max_epochs=3", "trainer.limit_train_batches=1.0")
    cli.run(compose_config("data=subscription", *common), str(tmp_path / "builtin"))
    csv_cfg = compose_config("data=csv", f"data.path={table}", "data.target=bought", *common)
    cli.run(csv_cfg, str(tmp_path / "csv"))
    builtin, from_csv = (read_metrics(tmp_path / name) for name in ("builtin", "csv"))
    assert from_csv["test/acc"] == builtin["test/acc"] and from_csv["test/acc"] > 0.8
    weights = [
        torch.load(tmp_path / name / "checkpoints/best.pt", weights_only=False)["model"]
        for name in ("builtin", "csv")
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_separate_files_and_chosen_columns(tmp_path):
    rows = customers()
    write_rows(tmp_path / "train.csv", rows[:400])
    write_rows(tmp_path / "val.csv", rows[400:500])
    write_rows(tmp_path / "test.csv", rows[500:], list(reversed(HEADER)))  # any column order
    data = CsvTable(
        target="bought",
        train_path=str(tmp_path / "train.csv"),
        val_path=str(tmp_path / "val.csv"),
        test_path=str(tmp_path / "test.csv"),
        features=["income", "city", "customer_id"],
        drop=["city"],
        categorical=["customer_id"],
    )
    assert data.split_sizes() == {"train": 400, "val": 100, "test": 100}
    assert data.feature_names[0] == "income" and len(data.feature_names) == 1 + 400
    assert data.task == "classification"
    with pytest.raises(UserError, match=r"^data.val_path and data.test_path go with data.train"):
        checked(CsvSettings, {"target": "bought", "path": "train.csv", "val_path": "val.csv"})


def error_of(tmp_path: Path, text: str | None, **options) -> str:
    path = tmp_path / "table.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError) as error:
        CsvTable(**{"target": "bought", "path": str(path), **options})
    return str(error.value)


def table_text(rows: int = 30, bad: str | None = None) -> str:
    lines = ["age,city,bought"] + [
        f"{20 + i},{'oslo' if i % 2 else 'rome'},{'yes' if i % 3 else 'no'}" for i in range(rows)
    ]
    if bad:
        lines[5] = bad
    return "\n".join(lines) + "\n"


def test_bad_tables_are_one_sentence(tmp_path):
    path = tmp_path / "table.csv"
    assert error_of(tmp_path, None) == (
        f"data.path={path}: no such file; give the path of a CSV file, e.g. "
        "data.path=~/customers.csv."
    )
    assert error_of(tmp_path, None, path=str(tmp_path)) == (
        f"data.path={tmp_path} is a folder; give the path of a CSV file in it, e.g. "
        "data.path=~/customers.csv."
    )
    assert error_of(tmp_path, "") == (
        f"{path} is empty; a table needs a header row naming the columns, then one row per sample."
    )
    assert error_of(tmp_path, "age,city,bought\n\n") == (
        f"{path} has a header but no rows; the table is empty."
    )
    assert error_of(tmp_path, "1,2,3\n4,5,6\n") == (
        f"{path} has no header row (its first line, 1,2,3..., is numbers); add a first line "
        "naming the columns."
    )
    assert error_of(tmp_path, table_text(), target="price") == (
        f"data.target: the column(s) price are not in {path}; its columns are age, city, bought."
    )
    assert error_of(tmp_path, table_text().replace(",no\n", ",yes\n")) == (
        "the target column 'bought' holds one value only ('yes'); a classifier needs at least "
        "two classes: choose another data.target."
    )
    assert error_of(tmp_path, table_text(bad="forty,oslo,yes")) == (
        "table.csv row 5 (line 6): column 'age' holds 'forty', which is not a number, and the "
        "column is numeric; fix the cell, leave it empty (a missing value), or list the column "
        "in data.categorical to treat its values as categories."
    )
    assert error_of(tmp_path, table_text(bad="25,oslo")) == (
        f"{path} line 6 has 2 cells and the header 3; every row needs one cell per column (an "
        "empty cell is a missing value)."
    )
    assert error_of(tmp_path, table_text(bad=",oslo,yes"), missing="error") == (
        "table.csv: column 'age' has missing values in row 5 (line 6); fill them in, or set "
        "data.missing=impute (numeric: the training median plus a missing-indicator input; "
        "text: a category of its own)."
    )
    assert error_of(tmp_path, table_text(bad="25,oslo,"), missing_target="error") == (
        "table.csv: the target column 'bought' is empty in 1 row(s): row 5 (line 6); fill in "
        "their target, or set data.missing_target=drop to train on the labelled rows only."
    )


def test_a_bad_table_on_the_command_line_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "t.csv").write_text(table_text(bad="forty,oslo,yes"))
    done = run_nntrain("data=csv", "data.path=t.csv", "data.target=bought", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: t.csv row 5 (line 6): column 'age' holds 'forty', which is not a number, and "
        "the column is numeric; fix the cell, leave it empty (a missing value), or list the "
        "column in data.categorical to treat its values as categories."
    ]
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.pt"))


def test_semicolon_and_tab_tables_read_as_the_comma_table(tmp_path):
    """A spreadsheet in a decimal-comma locale saves "CSV" as `;`-separated cells with 2,5 for
    2.5; a tab-separated export has tabs. Both give the comma file's inputs and targets."""
    rows = customers()[:200]
    comma = CsvTable(target="bought", path=str(write_rows(tmp_path / "comma.csv", rows)))
    semicolon_text = (tmp_path / "comma.csv").read_text().replace(",", ";")
    semicolon_text = semicolon_text.replace(".", ",")  # decimal commas: 54,23 for 54.23
    (tmp_path / "semicolon.csv").write_text(semicolon_text)
    (tmp_path / "tabs.tsv").write_text((tmp_path / "comma.csv").read_text().replace(",", "\t"))
    for name in ("semicolon.csv", "tabs.tsv"):
        table = CsvTable(target="bought", path=str(tmp_path / name))
        assert table.feature_names == comma.feature_names, name
        for split, data in table.splits.items():
            expected = comma.splits[split]
            assert torch.equal(data.inputs, expected.inputs), (name, split)
            assert torch.equal(data.targets, expected.targets), (name, split)
    # A comma file keeps its meaning even when its cells hold semicolons.
    (tmp_path / "odd.csv").write_text("note,bought\n" + "a;b,yes\nc;d,no\n" * 20)
    assert CsvTable(target="bought", path=str(tmp_path / "odd.csv")).feature_names[0] == (
        "note=a;b"
    )
