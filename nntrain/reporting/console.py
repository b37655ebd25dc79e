"""Everything a person sees in the terminal: the config tree, the progress bar, epoch lines and
the final summary. Nothing else in nntrain prints.

Lines go through the "nntrain" logger, so they also land in the run's log file; Hydra's logging
config (configs/hydra/job_logging/nntrain.yaml) sends them to rich's console, which keeps them
above the live progress bar instead of tearing it.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

log = logging.getLogger("nntrain")


def get_console() -> Console:
    # rich's global console: the one RichHandler and Progress use by default.
    from rich import get_console as rich_console

    return rich_console()


def plain(text: object) -> Text:
    """Text shown as it is: user text (paths, class names, overrides) is never rich markup, so
    `images[raw]` keeps its brackets and `[/]` in a path cannot crash the printing."""
    return Text(str(text))


# Whether to_log_file writes: a resume keeps its run's train.log untouched until it is accepted.
LOG_FILE = {"enabled": True}


def to_log_file(text: str, level: int = logging.INFO) -> None:
    """text into the run's log file (train.log) only: for what the terminal shows directly (the
    config tree, the summary, errors), so that train.log holds every line the run printed."""
    if not LOG_FILE["enabled"]:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(log.makeRecord(log.name, level, "", 0, text, (), None))


def rendered(renderable: Any) -> str:
    """What rich prints for renderable, as plain text (no colours), for the log file."""
    console = Console(width=120, color_system=None, soft_wrap=True, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text().rstrip()


def print_error(message: str) -> None:
    """One line on stderr, for errors the user can fix (and into train.log, in a run)."""
    line = Text.assemble(("Error:", "bold red"), " ", message)
    Console(stderr=True, highlight=False, soft_wrap=True).print(line)
    to_log_file(f"Error: {message}", logging.ERROR)


def print_config_tree(config: Mapping[str, Any]) -> Tree:
    """The composed config as a tree: one branch per group, leaves key: value."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    tree = Tree("[bold]config[/]", guide_style="dim")

    def add(branch: Tree, node: Any) -> None:
        for key, value in node.items():
            if isinstance(value, DictConfig | dict):
                add(branch.add(Text(str(key), style="bold cyan")), value)
            else:
                shown = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
                value_style = "green" if isinstance(shown, str) else ""
                text = repr(shown) if isinstance(shown, str) else str(shown)
                branch.add(Text.assemble(f"{key}: ", (text, value_style)))

    add(tree, config)
    get_console().print(tree)
    to_log_file(rendered(tree))
    return tree


def interactive() -> bool:
    """True when stdout is a terminal a person watches (progress bars make sense)."""
    return sys.stdout.isatty() and get_console().is_terminal


class TrainProgress:
    """A live bar per epoch (step, loss, acc, lr, samples/s, ETA); silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=12),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=get_console(),
                transient=True,
                # Each refresh renders in Python under the GIL (about 18 ms of CPU per second at
                # rich's default 10 Hz on a terminal), time taken from the training step.
                refresh_per_second=4,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None

    def start_epoch(
        self, epoch: int, max_epochs: int, total_batches: int, completed: int = 0
    ) -> None:
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(
            f"epoch {epoch + 1}/{max_epochs}", total=total_batches, completed=completed, stats=""
        )

    def advance(self, batches: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, batches)

    def show(
        self, loss: float, acc: float, lr: float, samples_per_sec: float, metric: str = "acc"
    ) -> None:
        """metric: what `acc` is (a regression shows its R², as r2)."""
        if self._progress is not None:
            stats = (
                f"loss {loss:.4f} {metric} {acc:.4f} lr {lr:.1e} {samples_per_sec:,.0f} samples/s"
            )
            self._progress.update(self._task, stats=stats)


def format_epoch_line(
    epoch: int, max_epochs: int, metrics: Mapping[str, float], improved: bool
) -> str:
    width = len(str(max_epochs))
    parts = [f"epoch {epoch + 1:>{width}}/{max_epochs}"]
    # train/loss, train/acc, val/loss, val/acc (a regression: rmse, mae, r2 for acc)
    shown = [k for k in metrics if k.startswith(("train/", "val/")) and "per_sec" not in k]
    for key in shown:
        parts.append(f"{key} {metrics[key]:.4f}")
    parts.append(f"lr {metrics['lr']:.2e}")
    parts.append(f"{metrics['train/samples_per_sec']:,.0f} samples/s")
    parts.append(f"{metrics['epoch_time']:.1f}s")
    if improved:
        parts.append("*")
    return "  ".join(parts)


def display_path(path: str | Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_summary(metrics: Mapping[str, Any], run_dir: str | Path) -> None:
    """The final table: the run's figures and where its files are."""
    table = Table(title="nntrain: run summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in metrics.items():
        if key.endswith("samples_per_sec"):
            shown = f"{value:,.0f}"
        else:
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        table.add_row(plain(key), plain(shown))
    run_dir = display_path(run_dir)
    table.add_row("run dir", plain(run_dir))
    table.add_row("checkpoints", plain(f"{run_dir}/checkpoints/best.pt (best epoch), last.pt"))
    table.add_row("tensorboard", plain(f"tensorboard --logdir {run_dir}"))
    table.add_row("evaluate", plain(f"nntrain-eval ckpt={run_dir}"))
    get_console().print(table)
    to_log_file(rendered(table))


class ConsoleHandler(logging.Handler):
    """Log records as plain lines through rich's console: printed above a live progress bar,
    never wrapped (log files and pipes keep one record per line)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            get_console().print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)
