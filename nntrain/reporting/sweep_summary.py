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
        "overrides": " ".join(overrides or []),
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


def print_rows(rows: list[dict[str, Any]], sweep_dir: Path, monitor: str) -> None:
    from rich.table import Table

    from nntrain.reporting.console import display_path, get_console, plain

    table = Table(title=plain(f"sweep summary: {display_path(sweep_dir)}/summary.csv"))
    columns = columns_for(rows)
    for column in columns:
        if column == "error":  # the full text is in summary.csv and the job's train.log
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=48)
        else:
            table.add_column(monitor if column == "best_val" else column, overflow="fold")
    for row in rows:
        cells = [
            f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))
            for v in (row.get(column) for column in columns)
        ]
        style = "red" if row["status"] != "ok" else None
        table.add_row(*(plain(cell) for cell in cells), style=style)
    get_console().print(table)


class SweepSummary(Callback):
    """Prints and writes the summary when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        monitor = config.trainer.early_stopping.monitor
        rows = summarize(sweep_dir, monitor)
        print_rows(rows, sweep_dir, monitor)
        failed = [row["job"] for row in rows if row["status"] != "ok"]
        # A search's failed trials (a diverging lr) are results the sampler learns from; in a
        # sweep a failed job is a failure, and scripts must see it in the exit status.
        if failed and "optuna" not in str(config.hydra.sweeper.get("_target_", "")).lower():
            from nntrain.reporting.console import print_error

            print_error(
                f"{len(failed)} of {len(rows)} jobs did not finish "
                f"(job{'s' if len(failed) > 1 else ''} {', '.join(failed)}); "
                "the table and summary.csv say why."
            )
            sys.exit(1)
