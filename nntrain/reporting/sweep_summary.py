"""The table at the end of a sweep (`nntrain -m ...`): one row per job, also as summary.csv.

A Hydra callback (registered in configs/hydra/default.yaml): after the last job it reads each
job directory's overrides, metrics.json and status.json, so it works the same whichever
launcher ran the jobs (in this process, joblib workers, a cluster).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

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
    overrides = files.load_yaml(overrides_file.read_text()) if overrides_file.is_file() else []
    metrics, status = read_json("metrics.json"), read_json("status.json")
    regression = "val/rmse" in metrics
    return {
        "job": job_dir.name,
        # resume= says how a job was continued, not what it trains
        "overrides": " ".join(o for o in overrides or [] if not o.startswith("resume=")),
        # A job without status.json died without a word (killed): it did not finish. A trial
        # its search pruned ended early on purpose: "pruned", not a failure.
        "status": status.get("status", "unfinished"),
        # A regression run has no accuracy: it followed val/loss (nntrain.training.trainer).
        "best_val": metrics.get(monitor, metrics.get("val/loss") if regression else None),
        "test/acc": metrics.get("test/acc"),
        **{column: metrics[column] for column in REGRESSION_COLUMNS if column in metrics},
        "epochs": metrics.get("epochs_run"),
        "wall_time_s": status.get("wall_time_s"),
        "error": status.get("error") or "",
        "followed_loss": regression,  # not a column: a regression (its HParams figures first)
    }


def summarize(sweep_dir: Path, monitor: str) -> list[dict[str, Any]]:
    """One row per job directory (numbered sub-directories with a .hydra folder), in job order;
    written to summary.csv, and the jobs' HParams columns to TensorBoard."""
    jobs = [d for d in sweep_dir.iterdir() if d.is_dir() and (d / ".hydra").is_dir()]
    jobs.sort(key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))
    rows = [job_row(job, monitor) for job in jobs]
    columns = columns_for(rows)
    table: list[list[Any]] = [columns, *([row.get(column) for column in columns] for row in rows)]
    files.write_csv(sweep_dir / "summary.csv", table)
    with contextlib.suppress(OSError):  # a full disk: the table matters more than TensorBoard's
        write_sweep_experiment(sweep_dir, rows)
    return rows


def write_sweep_experiment(sweep_dir: Path, rows: list[dict[str, Any]]) -> Path | None:
    """The HParams tab's columns for the whole sweep, into the first job's events folder: every
    key any job recorded, the swept (searched) keys and those whose values differ first and
    ticked, the figures of the sweep's task first. TensorBoard takes its columns from the first
    experiment it finds: the sweep's jobs write none of their own. None when no job wrote its
    HParams record (every job failed)."""
    from nntrain.reporting.run_names import sweep_events_dirs, swept_keys
    from nntrain.reporting.tensorboard import (
        SWEEP_EXPERIMENT_SUFFIX,
        experiment_info,
        metric_columns,
        read_session_starts,
        start_values,
        write_experiment,
    )
    from nntrain.tasks import CLASSIFICATION, REGRESSION

    folders = sweep_events_dirs(sweep_dir)
    recorded: list[tuple[Path, dict[str, Any]]] = []
    for row in rows:
        folder = folders.get(row["job"])
        starts = read_session_starts(folder) if folder is not None else []
        if folder is not None and starts:
            recorded.append((folder, start_values(starts[-1])))  # a resumed job's last
    if not recorded:
        return None
    regression = [row.get("followed_loss") for row in rows]
    tasks = [REGRESSION, CLASSIFICATION] if any(regression) else [CLASSIFICATION]
    if any(regression) and all(regression):
        tasks = [REGRESSION]
    experiment = experiment_info(
        [values for _, values in recorded], metric_columns(tasks), swept_keys(sweep_dir)
    )
    stale = sweep_dir.glob(f"*/*{SWEEP_EXPERIMENT_SUFFIX}")
    return write_experiment(recorded[0][0], experiment, stale=list(stale))


def print_rows(
    rows: list[dict[str, Any]], sweep_dir: Path, monitor: str, mode: str = "max"
) -> None:
    """The table: best job first (marked *), then the others by the monitored value, the
    pruned, the failed last; one column per key the jobs differ in, values rounded (or, when
    those do not fit, the differing overrides in one column), the overrides every job shares
    said once, below; each failed job's error on a line of its own (summary.csv has all of it);
    then the command that shows the jobs in TensorBoard. It fits 80 columns (a pipe's width)
    with every column at least as wide as its header."""
    from rich import box
    from rich.table import Table

    from nntrain.reporting.console import display_path, get_console, plain

    regression = columns_for(rows) != COLUMNS
    if regression and monitor.endswith("/acc"):  # regression runs followed val/loss
        monitor, mode = "val/loss", "min"
    tested = REGRESSION_COLUMNS if regression else ["test/acc"]
    shared = shared_overrides(rows)
    keys = swept_columns(rows, shared, monitor, tested)
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),  # two spaces between columns
    )
    table.add_column("job", no_wrap=True, min_width=3)
    if keys is None:  # the overrides, folded at spaces: no number is cut
        table.add_column("overrides", overflow="fold", ratio=1, min_width=9)
    for key, name in (keys or {}).items():
        numeric = all(is_number(value) for value in key_values(rows, key))
        table.add_column(
            name, no_wrap=True, min_width=len(name), justify="right" if numeric else "left"
        )
    best_header = "best_val" if monitor == "none" else monitor
    for column in ("status", best_header, *tested, "epochs", "time"):
        table.add_column(column, no_wrap=True, min_width=len(column))
    for rank, row in enumerate(best_first(rows, mode)):
        table.add_row(*row_cells(row, rank, shared, keys, tested), style=row_style(row, rank))
    console = get_console()
    # its own line, never folded to the table's width (a path to copy)
    title = f"sweep summary: {display_path(sweep_dir)}/summary.csv"
    console.print(title, markup=False, highlight=False, soft_wrap=True)
    console.print(table)
    for note in notes(rows, sweep_dir, monitor, mode, shared):
        if note.startswith("tensorboard --logdir"):  # a command to copy: never cut or folded
            console.print(note, markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(plain(note), overflow="ellipsis", no_wrap=note.startswith("job "))


GAP = 2  # characters between two columns
STATUS_STYLES = {"ok": None, "pruned": "yellow"}  # any other status (failed, ...): red


def row_style(row: dict[str, Any], rank: int) -> str | None:
    if is_best(row, rank):
        return "bold green"
    return STATUS_STYLES.get(row["status"], "red")


def is_best(row: dict[str, Any], rank: int) -> bool:
    """Only a finished job with a best value can be the best job (monitor=none: none has one)."""
    return rank == 0 and row["status"] == "ok" and isinstance(row["best_val"], int | float)


def row_cells(
    row: dict[str, Any],
    rank: int,
    shared: list[str],
    keys: dict[str, str] | None,
    tested: list[str],
) -> list[Any]:
    from nntrain.reporting.console import plain
    from nntrain.reporting.run_names import compact_value, override_parts

    given = dict(override_parts(o) for o in row["overrides"].split() if "=" in o)
    if keys is None:
        differing = [o for o in row["overrides"].split() if o not in shared]
        settings = [compact_overrides_text(differing)]
    else:
        settings = [compact_value(given[key]) if key in given else "" for key in keys]
    cells = [
        f"{row['job']}{' *' if is_best(row, rank) else ''}",
        *settings,
        row["status"],
        number(row["best_val"], 4),
        *(number(row.get(column), 4) for column in tested),
        "" if row["epochs"] is None else str(row["epochs"]),
        number(row["wall_time_s"], 1) + ("s" if row["wall_time_s"] is not None else ""),
    ]
    return [plain(cell) for cell in cells]


def key_values(rows: list[dict[str, Any]], key: str) -> list[str]:
    """The values the jobs' overrides give key."""
    from nntrain.reporting.run_names import override_parts

    parts = (override_parts(o) for row in rows for o in row["overrides"].split())
    return [value for k, value in parts if k == key]


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def compact_overrides_text(overrides: list[str]) -> str:
    """Overrides as a label shows them: keys kept whole, values rounded."""
    from nntrain.reporting.run_names import compact_value, override_parts

    shown = []
    for override in overrides:
        key, value = override_parts(override)
        shown.append(f"{override.partition('=')[0]}={compact_value(value)}" if key else override)
    return " ".join(shown)


def swept_columns(
    rows: list[dict[str, Any]], shared: list[str], monitor: str, tested: list[str]
) -> dict[str, str] | None:
    """The keys the jobs differ in, each with its column's header (its short name), when one
    column per key fits 80 columns beside the others; None when they do not."""
    from nntrain.reporting.run_names import (
        compact_value,
        differing_keys,
        override_parts,
        short_keys,
    )

    if len(rows) < 2:
        return None
    shared_keys = {override_parts(o)[0] for o in shared}
    keys = [k for k in differing_keys(rows) if k not in shared_keys]
    if not keys:
        return None
    headers = short_keys(keys)
    widths = [4]  # "12 *"
    for key in keys:
        values = [compact_value(value) for value in key_values(rows, key)]
        widths.append(max(len(headers[key]), *(len(v) for v in values)))
    statuses = max(len(str(row["status"])) for row in rows)
    widths += [max(6, statuses), max(6, len(monitor)), *(max(6, len(c)) for c in tested), 6, 6]
    fits = sum(widths) + GAP * (len(widths) - 1) <= 80
    return {key: headers[key] for key in keys} if fits else None


def notes(
    rows: list[dict[str, Any]], sweep_dir: Path, monitor: str, mode: str, shared: list[str]
) -> list[str]:
    """The lines below the table: what its best column is, the shared overrides, the pruned
    trials, each failed job's error, and the TensorBoard command for the whole sweep."""
    from nntrain.reporting.console import display_path

    lines = [f"{monitor}: the best of each job ({mode}); * marks the best job."]
    if monitor == "none":  # trainer.early_stopping.monitor=none: the final weights were tested
        lines = ["best_val: none (trainer.early_stopping.monitor=none: no figure picks a job)."]
    if shared:
        lines.append("In every job: " + compact_overrides_text(shared))
    pruned = [row["job"] for row in rows if row["status"] == "pruned"]
    if pruned:
        lines.append(
            f"pruned: {len(pruned)} trial{'s' if len(pruned) > 1 else ''} stopped early by the "
            "search's pruner (not failures)."
        )
    lines += [f"job {row['job']}: {row['error']}" for row in rows if row["error"]]
    lines.append("Compare the jobs in TensorBoard (each one named by its label):")
    lines.append(f"tensorboard --logdir {display_path(sweep_dir)}")
    return lines


def number(value: Any, decimals: int) -> str:
    return f"{value:.{decimals}f}" if isinstance(value, int | float) else ""


def shared_overrides(rows: list[dict[str, Any]]) -> list[str]:
    """The overrides every job has (said once); none when there is a single job."""
    if len(rows) < 2:
        return []
    first = rows[0]["overrides"].split()
    return [o for o in first if all(o in row["overrides"].split() for row in rows[1:])]


def best_first(rows: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Finished jobs by their monitored value, best first; then the pruned trials, by theirs;
    then the others in job order."""

    def by_value(status: str) -> list[dict[str, Any]]:
        found = [
            r for r in rows if r["status"] == status and isinstance(r["best_val"], int | float)
        ]
        return sorted(found, key=lambda r: r["best_val"], reverse=mode == "max")

    done = by_value("ok") + by_value("pruned")
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
        failed = [row["job"] for row in rows if row["status"] not in ("ok", "pruned")]
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
