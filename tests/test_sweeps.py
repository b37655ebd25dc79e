"""Multirun: one directory per job, a summary of every job, failed jobs do not stop the sweep
(but make its exit status 1)."""

import csv

import pytest

from nntrain.errors import UserError
from tests.conftest import run_nntrain


def test_a_sweep_summarises_every_job_and_survives_a_diverging_one(tmp_path):
    done = run_nntrain(
        "-m",
        "trainer=debug",
        "data=moons,xor",
        "optimizer.lr=1e-3,1e12",
        "trainer.grad_clip=null",
        cwd=tmp_path,
    )
    # Every job ran; the two that diverged make the sweep's exit status 1, and it says so.
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: 2 of 4 jobs did not finish (jobs 1, 3); the table and summary.csv say why."
    )
    # One sweep dir for all jobs, named as the config composes without the swept values (each
    # job's own name would be mlp-moons or mlp-xor).
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    assert sweep_dir.name.endswith("-mlp-digits")
    jobs = sorted(p.name for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())
    assert jobs == ["0", "1", "2", "3"]
    # each job's TensorBoard events in a folder named by its label (a diverged job's too)
    labels = sorted(p.name for p in sweep_dir.iterdir() if (p / ".job").is_file())
    assert labels == [
        f"mlp-{data} lr={lr}" for data in ("moons", "xor") for lr in ("0.001", "1e+12")
    ]
    with (sweep_dir / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert list(rows[0]) == [
        "job",
        "overrides",
        "status",
        "best_val",
        "test/acc",
        "epochs",
        "wall_time_s",
        "error",
    ]
    by_overrides = {r["overrides"]: r for r in rows}
    good = by_overrides["trainer=debug data=moons optimizer.lr=0.001 trainer.grad_clip=null"]
    assert good["status"] == "ok" and good["epochs"] == "2" and 0 <= float(good["test/acc"]) <= 1
    assert float(good["best_val"]) > 0 and float(good["wall_time_s"]) > 0 and good["error"] == ""
    bad = by_overrides["trainer=debug data=xor optimizer.lr=1000000000000.0 trainer.grad_clip=null"]
    assert bad["status"] == "failed" and bad["error"].startswith(
        "NonFiniteLoss: the training loss became"
    )
    assert bad["test/acc"] == "" and bad["best_val"] == ""
    assert sum(r["status"] == "ok" for r in rows) == 2
    assert "sweep summary" in done.stdout and "summary.csv" in done.stdout
    assert "\r" not in done.stdout  # no progress bars in a sweep's output


def print_table(rows: list[dict], monitor: str, monkeypatch, tmp_path, mode: str = "max"):
    """The sweep table as an 80-column terminal shows it, line by line."""
    import io

    import rich
    from rich.console import Console

    from nntrain.reporting import sweep_summary

    console = Console(width=80, record=True, file=io.StringIO())
    monkeypatch.setattr(rich, "_console", console)
    monkeypatch.chdir(tmp_path.parent)  # paths shown relative to it, as a user's
    sweep_summary.print_rows(rows, tmp_path, monitor, mode)
    return console.export_text().splitlines()


def test_the_sweep_table_fits_80_columns_with_every_header_whole(tmp_path, monkeypatch):
    def row(job: int, lr: str, status: str, best: float | None, error: str = "") -> dict:
        overrides = f"trainer=debug data=moons model.hidden=[512,512] optimizer.lr={lr}"
        return {
            "job": str(job),
            "overrides": overrides,
            "status": status,
            "best_val": best,
            "test/acc": best,
            "epochs": 2 if best is not None else None,
            "wall_time_s": 12.3456,
            "error": error,
        }

    rows = [
        row(0, "0.001", "ok", 0.91),
        row(1, "1000000000000.0", "failed", None, "NonFiniteLoss: " + "the loss became nan " * 9),
        row(2, "0.003", "ok", 0.97),
        row(3, "0.01", "interrupted", None, "interrupted by SIGINT at step 3"),
        row(4, "0.0013292918943162175", "pruned", 0.95),
    ]
    lines = print_table(rows, "val/acc", monkeypatch, tmp_path)
    assert all(len(line) <= 80 for line in lines), lines
    header = next(line for line in lines if line.startswith("job"))
    # one column per swept key (its short name), the monitored figure's name over the best
    assert header.split() == ["job", "lr", "status", "val/acc", "test/acc", "epochs", "time"]
    statuses = {"ok", "failed", "interrupted", "pruned"}
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("val/acc:"))]
    body = [line.split() for line in table if statuses & set(line.split())]
    # the best job first and marked; its wall time to a tenth of a second; values rounded
    assert body[0][:3] == ["2", "*", "0.003"] and body[0][-1] == "12.3s"
    # the finished jobs, then the pruned trial (a result, not a failure), then the failed
    assert [b[0] for b in body] == ["2", "0", "4", "1", "3"]
    assert body[2][:3] == ["4", "0.00133", "pruned"] and body[3][:3] == ["1", "1e+12", "failed"]
    assert "In every job: trainer=debug data=moons model.hidden=[512,512]" in lines
    errors = [line for line in lines if line.startswith("job 1: ")]
    assert (
        errors[0].startswith("job 1: NonFiniteLoss: the loss became nan") and errors[0][-1] == "…"
    )
    # the last lines: the one command that shows every job in TensorBoard
    assert lines[-1] == f"tensorboard --logdir {tmp_path.name}"


def test_pruned_trials_are_yellow_and_failed_jobs_red(tmp_path, monkeypatch):
    from nntrain.reporting import sweep_summary

    rows = [
        {"job": str(job), "overrides": f"seed={job}", "status": status, "best_val": best,
         "test/acc": None, "epochs": 1, "wall_time_s": 1.0, "error": ""}
        for job, (status, best) in enumerate([("ok", 0.9), ("pruned", 0.5), ("failed", None)])
    ]  # fmt: skip
    ranked = sweep_summary.best_first(rows, "max")
    styles = [sweep_summary.row_style(row, rank) for rank, row in enumerate(ranked)]
    assert styles == ["bold green", "yellow", "red"]


def test_a_sweep_without_a_monitored_metric_marks_no_job_best(tmp_path, monkeypatch):
    """trainer.early_stopping.monitor=none: the first job was starred as the best and the note
    read 'the best none of each job (max)'."""
    rows = [
        {"job": str(job), "overrides": f"seed={job + 1}", "status": "ok", "best_val": None,
         "test/acc": acc, "epochs": 2, "wall_time_s": 1.0, "error": ""}
        for job, acc in enumerate((0.92, 0.93))
    ]  # fmt: skip
    lines = print_table(rows, "none", monkeypatch, tmp_path)
    body = [line.split() for line in lines if "ok" in line.split()]
    assert [b[:2] for b in body] == [["0", "1"], ["1", "2"]]  # no "*"
    assert "best_val: none (trainer.early_stopping.monitor=none: no figure picks a job)." in lines


def test_a_search_of_many_keys_shows_one_trial_a_line_at_80_columns(tmp_path, monkeypatch):
    """An Optuna search's overrides carry 16-digit floats; the table rounds them to 3 digits
    and names the keys short (lr, wd, bs), each trial on one line."""
    overrides = (
        "hparams_search=optuna trainer=debug optimizer.lr={} optimizer.weight_decay={} "
        "data.batch_size={} model.dropout={}"
    )
    values = [
        ("0.0013292918943162175", "0.006351221010640704", "32", "0.07799726016810132"),
        ("0.00014936568554617635", "0.002925146245410916", "128", "0.48513441460024986"),
        ("0.03142880890840111", "7.068974950624607e-06", "64", "0.2623782158161189"),
    ]
    rows = [
        {"job": str(job), "overrides": overrides.format(*v), "status": "ok", "best_val": 0.9,
         "test/acc": 0.91, "epochs": 20, "wall_time_s": 123.4, "error": ""}
        for job, v in enumerate(values)
    ]  # fmt: skip
    lines = print_table(rows, "val/acc", monkeypatch, tmp_path)
    assert all(len(line) <= 80 for line in lines), lines
    header = next(line for line in lines if line.startswith("job"))
    assert header.split()[:5] == ["job", "lr", "wd", "bs", "dropout"]
    body = [line.split() for line in lines if "ok" in line.split()]
    assert len(body) == 3 and body[1][1:5] == ["1.49e-4", "0.00293", "128", "0.485"]


def test_a_sweep_of_no_job_is_an_error(tmp_path):
    """A swept key without values made a sweep of no jobs: exit status 0 and an empty table.
    An empty range is refused before anything (no sweep directory); a glob that matches no
    option is found once the sweep has composed, and ends the command with status 1."""
    import pytest

    from nntrain.errors import UserError
    from nntrain.launch.run_dirs import refuse_an_empty_range

    refuse_an_empty_range(["-m", "data.batch_size=range(16,33,16)", "seed=1,2"])  # 16 and 32
    with pytest.raises(UserError) as error:
        refuse_an_empty_range(["-m", "seed=1,2", "data.batch_size=range(32,16)"])
    assert str(error.value) == (
        "data.batch_size=range(32,16) has no values (a range excludes its stop); give it at "
        "least one, e.g. range(1, 4) for 1, 2 and 3."
    )
    done = run_nntrain("-m", "trainer=debug", "model=glob(zz*)", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
        "Error: the sweep ran no job: a swept key has no values (a glob that matches no option, "
        "or an empty range); give every swept key at least one value."
    )


def test_a_sweep_directory_must_not_be_the_current_folder(tmp_path, monkeypatch):
    """hydra.sweep.dir=$PWD claimed the folder the user works in (job folders 0, 1, ... and
    summary.csv among their files); hydra.sweep.dir=. was refused as 'empty'."""
    import pytest

    from nntrain.errors import UserError
    from nntrain.launch.run_dirs import claim_a_given_sweep_dir

    monkeypatch.chdir(tmp_path)
    for given in (".", str(tmp_path)):
        with pytest.raises(UserError) as error:
            claim_a_given_sweep_dir(["-m", "seed=1,2", f"hydra.sweep.dir={given}"])
        assert str(error.value) == (
            f"hydra.sweep.dir={given} is the current folder; give the sweep a folder of its own, "
            "e.g. hydra.sweep.dir=sweeps/lr (or leave hydra.sweep.dir out: every sweep gets its "
            "own)."
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "-2", "abc"])
def test_a_max_batch_size_hydras_sweeper_asserts_on_is_one_sentence(value):
    from nntrain.launch.run_dirs import check_max_batch_size

    with pytest.raises(UserError) as error:
        check_max_batch_size(["-m", "seed=1,2", f"hydra.sweeper.max_batch_size={value}"])
    assert str(error.value) == (
        "hydra.sweeper.max_batch_size must be a positive integer or null (launch every job at "
        f"once), got {value}; e.g. hydra.sweeper.max_batch_size=4."
    )
    for fine in ("hydra.sweeper.max_batch_size=3", "hydra.sweeper.max_batch_size=null", "x=1"):
        check_max_batch_size(["-m", fine])
