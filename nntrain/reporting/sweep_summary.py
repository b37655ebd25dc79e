"""The table at the end of a sweep (`nntrain -m ...`): one row per job, also as summary.csv.

A Hydra callback (registered in configs/hydra/default.yaml): after the last job it reads each
job directory's overrides, metrics.json and status.json, so it works the same whichever
launcher ran the jobs (in this process, joblib workers, a cluster).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from nntrain import files

COLUMNS = ["job", "overrides", "status", "best_val", "test/acc", "epochs", "wall_time_s", "error"]
# A sweep of regression runs (data.task=regression) shows these instead of test/acc.
REGRESSION_COLUMNS = ["test/rmse", "test/r2"]


def columns_for(rows: list[dict[str, Any]]) -> list[str]:
    """COLUMNS; with regression runs among the jobs, their test figures too."""
    if not any(row.get("test/r2") is not None for row in rows):
        return COLUMNS
    at = COLUMNS.index("test/acc") + 1
    return [*COLUMNS[:at], *REGRESSION_COLUMNS, *COLUMNS[at:]]


def job_row(job_dir: Path, monitor: str) -> dict[str, Any]:
    def read_json(name: str) -> dict[str, Any]:
        path = job_dir / name
        return json.loads(path.read_text()) if path.is_file() else {}

    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    metrics, status = read_json("metrics.json"), read_json("status.json")
    return {
        "job": job_dir.name,
        # resume= says how a job was continued, not what it trains
        "overrides": " ".join(o for o in overrides or [] if not o.startswith("resume=")),
        # A job without status.json died without a word (killed): it did not finish.
        "status": status.get("status", "unfinished"),
        # A regression run has no accuracy: it followed val/loss (nntrain.training.trainer).
        "best_val": metrics.get(monitor, metrics.get("val/loss") if "test/r2" in metrics else None),
        "test/acc": metrics.get("test/acc"),
        **{column: metrics[column] for column in REGRESSION_COLUMNS if column in metrics},
        "epochs": metrics.get("epochs_run"),
        "wall_time_s": status.get("wall_time_s"),
        "error": status.get("error") or "",
    }


def summarize(sweep_dir: Path, monitor: str) -> list[dict[str, Any]]:
    """One row per job directory (numbered sub-directories with a .hydra folder), in job order."""
    jobs = [d for d in sweep_dir.iterdir() if d.is_dir() and (d / ".hydra").is_dir()]
    jobs.sort(key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))
    rows = [job_row(job, monitor) for job in jobs]
    columns = columns_for(rows)
    table: list[list[Any]] = [columns, *([row.get(column) for column in columns] for row in rows)]
    files.write_csv(sweep_dir / "summary.csv", table)
    return rows


def print_rows(
    rows: list[dict[str, Any]], sweep_dir: Path, monitor: str, mode: str = "max"
) -> None:
    """The table: best job first (marked *), then the others by the monitored value, the
    failed last; the overrides every job shares said once, below; each failed job's error on
    a line of its own (summary.csv has all of it). It fits 80 columns (a pipe's width) with
    every column at least as wide as its header: the overrides take the width left, folded."""
    from rich import box
    from rich.table import Table

    from nntrain.reporting.console import display_path, get_console, plain

    shared = shared_overrides(rows)
    table = Table(
        title=plain(f"sweep summary: {display_path(sweep_dir)}/summary.csv"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("job", no_wrap=True, min_width=3)
    table.add_column("overrides", overflow="fold", ratio=1, min_width=9)
    regression = columns_for(rows) != COLUMNS
    tested = REGRESSION_COLUMNS if regression else ["test/acc"]
    for column in ("status", "best_val", *tested, "epochs", "time"):
        table.add_column(column, no_wrap=True, min_width=len(column))
    if regression and monitor.endswith("/acc"):  # regression runs followed val/loss
        monitor, mode = "val/loss", "min"
    for rank, row in enumerate(best_first(rows, mode)):
        # Only a job that has a best value can be the best job (monitor=none: none has one).
        best = rank == 0 and row["status"] == "ok" and isinstance(row["best_val"], int | float)
        cells = [
            f"{row['job']}{' *' if best else ''}",
            " ".join(o for o in row["overrides"].split() if o not in shared),
            row["status"],
            number(row["best_val"], 4),
            *(number(row.get(column), 4) for column in tested),
            "" if row["epochs"] is None else str(row["epochs"]),
            number(row["wall_time_s"], 1) + ("s" if row["wall_time_s"] is not None else ""),
        ]
        style = "red" if row["status"] != "ok" else ("bold green" if best else None)
        table.add_row(*(plain(cell) for cell in cells), style=style)
    console = get_console()
    console.print(table)
    notes = [f"best_val: the best {monitor} of each job ({mode}); * marks the best job."]
    if monitor == "none":  # trainer.early_stopping.monitor=none: the final weights were tested
        notes = ["best_val: none (trainer.early_stopping.monitor=none: no figure picks a job)."]
    if shared:
        notes.append("In every job: " + " ".join(shared))
    notes += [f"job {row['job']}: {row['error']}" for row in rows if row["error"]]
    for note in notes:
        console.print(plain(note), overflow="ellipsis", no_wrap=note.startswith("job "))


def number(value: Any, decimals: int) -> str:
    return f"{value:.{decimals}f}" if isinstance(value, int | float) else ""


def shared_overrides(rows: list[dict[str, Any]]) -> list[str]:
    """The overrides every job has (said once); none when there is a single job."""
    if len(rows) < 2:
        return []
    first = rows[0]["overrides"].split()
    return [o for o in first if all(o in row["overrides"].split() for row in rows[1:])]


def best_first(rows: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Finished jobs by their monitored value, best first; then the others in job order."""
    done = [r for r in rows if r["status"] == "ok" and isinstance(r["best_val"], int | float)]
    done.sort(key=lambda r: r["best_val"], reverse=mode == "max")
    return done + [r for r in rows if r not in done]


# The sweep this process runs, from its start to its end: Ctrl-C ends a sweep without Hydra's
# on_multirun_end, and the jobs that ran still get their table (summarize_interrupted_sweep).
RUNNING: dict[str, Any] = {}


def summarize_interrupted_sweep() -> None:
    """The table and summary.csv of the jobs an interrupted sweep ran (nothing outside one)."""
    if not RUNNING:
        return
    sweep_dir, monitor, mode = RUNNING.pop("dir"), RUNNING.pop("monitor"), RUNNING.pop("mode")
    if sweep_dir.is_dir() and any((job / ".hydra").is_dir() for job in sweep_dir.iterdir()):
        print_rows(summarize(sweep_dir, monitor), sweep_dir, monitor, mode)


class SweepSummary(Callback):
    """Prints and writes the summary when a multirun ends (or is interrupted)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The sweeper resolves hydra.sweep.dir from this same config object: a cached value.
        stopping = config.trainer.early_stopping
        RUNNING.update(
            dir=Path(config.hydra.sweep.dir), monitor=stopping.monitor, mode=stopping.mode
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        RUNNING.clear()
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        monitor = config.trainer.early_stopping.monitor
        rows = summarize(sweep_dir, monitor)
        search = "optuna" in str(config.hydra.sweeper.get("_target_", "")).lower()
        if not rows and not search:  # e.g. model=glob(x*) that matches no option
            from nntrain.reporting.console import print_error

            print_error(
                "the sweep ran no job: a swept key has no values (a glob that matches no "
                "option, or an empty range); give every swept key at least one value."
            )
            sys.exit(1)
        print_rows(rows, sweep_dir, monitor, config.trainer.early_stopping.mode)
        failed = [row["job"] for row in rows if row["status"] != "ok"]
        # A search's failed trials (a diverging lr) are results the sampler learns from; in a
        # sweep a failed job is a failure, and scripts must see it in the exit status.
        if failed and not search:
            from nntrain.reporting.console import display_path, print_error

            hint = ""
            if str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher"):
                hint = (
                    "; continue them with: nntrain -m hydra/launcher=slurm "
                    f"resume={display_path(sweep_dir)}"
                )
            print_error(
                f"{len(failed)} of {len(rows)} jobs did not finish "
                f"(job{'s' if len(failed) > 1 else ''} {', '.join(failed)}); "
                f"the table and summary.csv say why{hint}."
            )
            sys.exit(1)
