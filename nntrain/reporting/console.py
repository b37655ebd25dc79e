"""Everything a person sees in the terminal: the config tree, the progress bar, epoch lines and
the final summary. Nothing else in nntrain prints.

Lines go through the "nntrain" logger, so they also land in the run's log file; Hydra's logging
config (configs/hydra/job_logging/nntrain.yaml) sends them to rich's console, which keeps them
above the live progress bar instead of tearing it.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
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


# The groups shown, in order, and for the trainer (30 settings) the few a person checks first;
# every other trainer key shows when the user set it.
GROUPS = ("model", "data", "optimizer", "scheduler", "trainer")
KEY_SETTINGS = {"trainer": ("max_epochs", "device", "precision", "early_stopping.monitor")}


def print_config_tree(
    config: Mapping[str, Any], choices: Mapping[str, Any], overrides: list[str]
) -> Tree:
    """The run's config in a few lines: each group's chosen option and its values (the
    trainer's key ones), the seed, and the user's overrides, highlighted. The whole config is
    in the run's .hydra/config.yaml (and `nntrain --cfg job`)."""
    overridden = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    tree = Tree(
        Text.assemble(
            ("config", "bold"), (" (all of it: .hydra/config.yaml, nntrain --cfg job)", "dim")
        ),
        guide_style="dim",
    )
    tree.add(Text.assemble(("name", "bold cyan"), f": {config.get('name')}"))
    if choices.get("experiment"):
        tree.add(
            Text.assemble(("experiment", "bold cyan"), ": ", (str(choices["experiment"]), "green"))
        )
    for group in GROUPS:
        node = config.get(group)
        if node is None:
            continue
        values = group_values(group, node, overridden)
        if group == "trainer" and followed_monitor(config) is not None:
            values["early_stopping.monitor"] = str(followed_monitor(config))
        line = Text.assemble((group, "bold cyan"), ": ", (str(choices.get(group, "")), "green"))
        for key, value in values.items():
            style = "yellow" if f"{group}.{key}" in overridden else ""
            line.append("  ")
            line.append(f"{key}={value}", style=style)
        tree.add(line)
    tree.add(Text.assemble(("seed", "bold cyan"), f": {config.get('seed')}"))
    if overrides:
        tree.add(Text.assemble(("overrides", "bold cyan"), ": ", (" ".join(overrides), "yellow")))
    job = sweep_job()
    if job is None:
        get_console().print(tree)
    else:  # a sweep's job: one line (Hydra's launch line gave its overrides; train.log the tree)
        get_console().print(plain(job_line(job)), overflow="ellipsis", no_wrap=True)
    to_log_file(rendered(tree))
    return tree


def sweep_job() -> Path | None:
    """This process's job directory when it runs one job of a sweep (nntrain -m), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return None
        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # Hydra's config without a runtime (a test composing one)
        return None


def job_prefix() -> str:
    """`job 3 | ` where this process is one of several running a sweep's jobs side by side on
    one terminal (hydra/launcher=joblib's workers): their lines interleave, so each says whose
    it is. Empty in a sweep's own process (its jobs run one after another), a single run, or a
    SLURM job (each writes its own file)."""
    import multiprocessing

    if multiprocessing.current_process().name == "MainProcess":
        return ""
    job = sweep_job()
    return "" if job is None else f"job {job.name} | "


def job_line(job_dir: Path) -> str:
    """A sweep job's first line: its number and label (its TensorBoard run's name)."""
    from nntrain.reporting.run_names import job_label

    return f"job {job_dir.name}: {job_label(job_dir)}"


def followed_monitor(config: Mapping[str, Any]) -> str | None:
    """What a regression follows when the config's monitor is a classification figure (val/acc,
    which it has not): its default, val/loss; with data.task=auto (the data says which task it
    is, once read) both. None when the monitor is what the run follows."""
    from nntrain.tasks import CLASSIFICATION, REGRESSION

    data, trainer = config.get("data") or {}, config.get("trainer") or {}
    task = str(data.get("task") or CLASSIFICATION.name)
    monitor = str((trainer.get("early_stopping") or {}).get("monitor"))
    if task not in ("auto", REGRESSION.name) or REGRESSION.offers(monitor):
        return None
    if task == REGRESSION.name:
        return REGRESSION.default_monitor
    return f"{monitor} (a regression: {REGRESSION.default_monitor})"


def group_values(group: str, node: Mapping[str, Any], overridden: set[str]) -> dict[str, str]:
    """A group's values as key=value text: its leaves (nested ones as a.b), without the
    instantiation keys; for the trainer, its key settings and what the user set."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    def leaves(branch: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in branch.items():
            if str(key) in ("_target_", "_partial_"):
                continue
            if isinstance(value, DictConfig | dict):
                found.update(leaves(value, f"{prefix}{key}."))
            else:
                found[f"{prefix}{key}"] = value
        return found

    shown = {}
    keep = KEY_SETTINGS.get(group)
    values = leaves(node)
    for key, value in values.items():
        if f"{group}.{key}" not in overridden and (
            value is None or value == [] or key in off(values)
        ):
            continue  # unset options (a CSV's train_path=None) and what is off say nothing
        if keep is None or key in keep or f"{group}.{key}" in overridden:
            plain_value = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
            shown[key] = str(plain_value).replace(" ", "")
    return shown


# MixUp/CutMix (data.*): off while both alphas are 0, and then its other settings mean nothing.
MIX_KEYS = ("mixup_alpha", "cutmix_alpha", "mix_switch_prob", "mix_prob")


def off(values: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys of a group's values that are off or have no effect, left out of the tree."""
    mixing = values.get("mixup_alpha") or values.get("cutmix_alpha")
    return () if mixing or "mixup_alpha" not in values else MIX_KEYS


def interactive() -> bool:
    """True when stdout is a terminal a person watches (progress bars make sense)."""
    return sys.stdout.isatty() and get_console().is_terminal


class TrainProgress:
    """A live line while training: the epoch, a bar over its batches, the latest loss and
    metric and throughput (refreshed at log steps: reading them sooner would sync the device
    each step), and the whole run's ETA; "validating" while the epoch is scored. It fits 80
    columns. Silent when disabled (not a terminal, a sweep)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None
        self._stats = ""  # kept from one epoch to the next: the line is never blank
        self._run: dict[str, float] = {}
        self._unshown = 0  # batches advanced but not yet passed to rich (see advance)
        self._shown_at = 0.0

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=10),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TextColumn("{task.fields[eta]}"),
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
        if not self._run:  # the ETA counts the batches this process trains from here on
            left = (max_epochs - epoch) * total_batches - completed
            self._run = {"start": time.perf_counter(), "done": 0, "left": left}
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._unshown = 0  # the old epoch's bar is gone
        self._task = self._progress.add_task(
            f"epoch {epoch + 1}/{max_epochs}",
            total=total_batches,
            completed=completed,
            stats=self._stats,
            eta=self._eta(),
        )

    def advance(self, batches: int = 1) -> None:
        """Count trained batches; rich hears of them at most every UPDATE_SECONDS (it redraws
        at 4 Hz anyway): an update per step cost ~20 us of the step's host time, which on a
        launch-bound GPU step is training time."""
        if self._progress is None:
            return
        self._run["done"] += batches
        self._unshown += batches
        now = time.perf_counter()
        if now - self._shown_at >= self.UPDATE_SECONDS:
            self._shown_at = now
            self._show_advance()

    UPDATE_SECONDS = 0.1

    def _show_advance(self) -> None:
        if self._progress is not None and self._unshown:
            self._progress.update(self._task, advance=self._unshown, eta=self._eta())
            self._unshown = 0

    def validating(self) -> None:
        """The epoch's batches are trained; its validation runs now."""
        if self._progress is not None and self._task is not None:
            self._show_advance()
            description = self._progress.tasks[-1].description.split(" ")[1]
            self._progress.update(self._task, description=f"validating {description}")

    def show(
        self, loss: float, acc: float, lr: float, samples_per_sec: float, metric: str = "acc"
    ) -> None:
        """metric: what `acc` is (a regression shows its R², as r2). lr is in the epoch lines."""
        if self._progress is not None:
            rate = (
                f"{samples_per_sec / 1000:.1f}k/s"
                if samples_per_sec >= 1000
                else f"{samples_per_sec:.0f}/s"
            )
            self._stats = f"loss {loss:.3f} {metric} {acc:.3f} {rate}"
            self._show_advance()
            self._progress.update(self._task, stats=self._stats)

    def _eta(self) -> str:
        """The whole run's time left, from this process's pace so far."""
        done, left = self._run.get("done", 0), self._run.get("left", 0)
        if not done:
            return "eta -:--:--"
        seconds = (time.perf_counter() - self._run["start"]) / done * max(left - done, 0)
        minutes, second = divmod(round(seconds), 60)
        hours, minute = divmod(minutes, 60)
        return f"eta {hours}:{minute:02d}:{second:02d}"


class EpochTable:
    """The epoch lines as the rows of one table, as fastai prints them: the column names once,
    then a row of figures an epoch, within 80 columns (a terminal's width and a log's). The
    throughput column is left out where it would not fit (a regression's extra metrics, a
    four-digit epoch count); it stays on the progress line, in TensorBoard and in the summary.
    A `*` ends the row of an epoch that improved the monitored metric (a new best.pt)."""

    WIDTH = 80

    def __init__(self) -> None:
        self._columns: list[tuple[str, int]] | None = None

    def lines(
        self, epoch: int, max_epochs: int, metrics: Mapping[str, float], improved: bool
    ) -> list[str]:
        """This epoch's row, after the header when it is the first row of this process."""
        cells = epoch_cells(epoch, max_epochs, metrics)
        header: list[str] = []
        if self._columns is None:
            room = self.WIDTH - len("  *") - len(job_prefix())
            self._columns = fitting_columns(cells, room)
            header = ["  ".join(name.rjust(width) for name, width in self._columns)]
        row = "  ".join(cells.get(name, "").rjust(width) for name, width in self._columns)
        return [*header, row + ("  *" if improved else "")]


def figure(value: float) -> str:
    """A figure with 4 decimals, or 4 significant digits where those would hide it: an RMSE of
    a target measured in farads (3.1e-12) is not 0.0000, nor one in picofarads of 1e12 a
    20-digit number."""
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6) and math.isfinite(value):
        return f"{value:.4g}"
    return f"{value:.4f}"


def epoch_cells(epoch: int, max_epochs: int, metrics: Mapping[str, float]) -> dict[str, str]:
    """An epoch's figures by column name: train loss and accuracy, every validation metric
    (a regression: loss, rmse, mae, r2), the learning rate, samples/s, the epoch's time."""
    cells = {"epoch": f"{epoch + 1}/{max_epochs}"}
    for key, value in metrics.items():
        if key.startswith("val/") or key in ("train/loss", "train/acc"):
            cells[key] = figure(value)
    cells["lr"] = f"{metrics['lr']:.2e}"
    cells["samples/s"] = f"{metrics['train/samples_per_sec']:,.0f}"
    cells["time"] = f"{metrics['epoch_time']:.1f}s"
    return cells


def fitting_columns(cells: Mapping[str, str], width: int) -> list[tuple[str, int]]:
    """The columns and their widths (the wider of name and figure; the epoch column as wide as
    its last epoch), without samples/s when the row would be wider than `width`."""
    last_epoch = cells["epoch"].split("/")[1]
    widths = {name: max(len(name), len(cell)) for name, cell in cells.items()}
    widths["epoch"] = max(len("epoch"), 2 * len(last_epoch) + 1)
    widths["time"] = max(widths["time"], len("999.9s"))
    total = sum(widths.values()) + 2 * (len(widths) - 1)
    if total > width:
        del widths["samples/s"]
    return list(widths.items())


def display_path(path: str | Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_summary(
    metrics: Mapping[str, Any],
    run_dir: str | Path,
    name: str | None = None,
    wall_time_s: float | None = None,
) -> None:
    """The final table: the run's name and wall time, its figures, where its files are. A
    sweep's job prints one line (the table goes to its train.log; the sweep's summary follows)."""
    table = Table(title="nntrain: run summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if name is not None:
        table.add_row("name", plain(name))
    if wall_time_s is not None:
        minutes, seconds = divmod(round(wall_time_s), 60)
        table.add_row("wall time", f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s")
    for key, value in metrics.items():
        if key.endswith("samples_per_sec") or (isinstance(value, int) and value >= 10_000):
            shown = f"{value:,.0f}"
        else:
            shown = figure(value) if isinstance(value, float) else str(value)
        table.add_row(plain(key), plain(shown))
    from nntrain.reporting.run_names import sweep_of, tensorboard_dir

    if sweep_of(Path(run_dir)) is not None:
        to_log_file(rendered(table))
        line = job_summary(metrics, Path(run_dir), wall_time_s)
        get_console().print(plain(line), overflow="ellipsis", no_wrap=True)
        to_log_file(line)
        return
    get_console().print(table)
    to_log_file(rendered(table))
    # Paths and commands below the table, each on one line however long (a table cell would
    # cut or fold them, and a folded path cannot be copied).
    kept = (
        "best.pt (best epoch), last.pt"
        if (Path(run_dir) / "checkpoints" / "best.pt").is_file() or "tested_epoch" not in metrics
        else f"last.pt (tested; best.pt of epoch {metrics.get('best_epoch')} was not kept)"
    )
    run_dir = display_path(run_dir)
    for key, value in (
        ("run dir", run_dir),
        ("checkpoints", f"{run_dir}/checkpoints/{kept}"),
        ("tensorboard", f"tensorboard --logdir {display_path(tensorboard_dir(run_dir))}"),
        ("evaluate", f"nntrain-eval ckpt={run_dir}"),
    ):
        line = f"{key:<12} {value}"
        get_console().print(line, markup=False, highlight=False, soft_wrap=True)
        to_log_file(line)


def job_summary(metrics: Mapping[str, Any], job_dir: Path, wall_time_s: float | None) -> str:
    """A sweep job's last line: its figures (validation and test), epochs and time."""
    shown = [
        f"{key} {figure(value)}"
        for key, value in metrics.items()
        if key.split("/")[0] in ("val", "test") and key != "test/loss" and isinstance(value, float)
    ]
    epochs = metrics.get("epochs_run")
    pruned = metrics.get("pruned_epoch")
    tail = [f"{epochs} epochs" if epochs is not None else ""]
    if pruned is not None:
        tail.append(f"pruned after epoch {pruned}")
    if wall_time_s is not None:
        tail.append(f"{wall_time_s:.0f} s")
    return f"job {job_dir.name} done: " + "  ".join(shown) + ", " + ", ".join(t for t in tail if t)


class ConsoleHandler(logging.Handler):
    """Log records as plain lines through rich's console: printed above a live progress bar,
    folded at spaces on a terminal, never in a pipe or log file (one record per line there);
    a launcher's line for a job with its values rounded (shortened). Libraries' INFO and DEBUG
    records stay out of it and of train.log (see keep_library_chatter_out)."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.addFilter(keep_library_chatter_out)
        self._filtering_the_log_file = False

    def handle(self, record: logging.LogRecord) -> bool:
        if not self._filtering_the_log_file:
            # Hydra's logging config (configs/hydra/job_logging/nntrain.yaml) makes this handler
            # before train.log's; by the first record both hang on the root logger, in that
            # order, and train.log's gets the same filter before it sees that record.
            for handler in logging.getLogger().handlers:
                if keep_library_chatter_out not in handler.filters:
                    handler.addFilter(keep_library_chatter_out)
            self._filtering_the_log_file = True
        return bool(super().handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            console = get_console()
            text = shortened(record, self.format(record))
            prefix = job_prefix()
            if prefix:  # every line of the record (a traceback's too)
                text = "\n".join(prefix + line for line in text.splitlines())
            # A terminal folds a long line at a space, never inside a word or number; a pipe or
            # a log file keeps one record per line.
            console.print(text, markup=False, highlight=False, soft_wrap=not console.is_terminal)
        except Exception:
            self.handleError(record)


LAUNCH_LINE = re.compile(r"^(\s*#\d+ : )(.*)$")


def shortened(record: logging.LogRecord, text: str) -> str:
    """A launcher's line for a job (Hydra's `#3 : optimizer.lr=0.0013292918943162175 ...`) with
    its values rounded to 3 significant digits; any other line as it is."""
    match = LAUNCH_LINE.match(text) if record.name.startswith("hydra") else None
    if match is None:
        return text
    from nntrain.reporting.run_names import compact_value

    parts = [o.partition("=") for o in match.group(2).split(" ")]
    return match.group(1) + " ".join(
        k + eq + (compact_value(v) if eq else "") for k, eq, v in parts
    )


# Loggers whose INFO lines are part of nntrain's output: nntrain's own, Hydra's (a sweep's
# "Launching ... jobs") and nntrain's Hydra plugins (hydra_plugins.nntrain_*).
OWN_LOGGERS = ("nntrain", "hydra", "hydra_plugins")


def keep_library_chatter_out(record: logging.LogRecord) -> bool:
    """Whether a log record belongs in the terminal and train.log: warnings and errors always;
    INFO and DEBUG lines of nntrain, Hydra and the user's own code, but not those of installed
    libraries, which the root logger's INFO level lets through when they propagate (torch's
    "FakeTensor cache stats" at exit, once a torch logger's level is set; matplotlib's
    "generated new fontManager"). `hydra.verbose=true` (the root at DEBUG) shows them all."""
    if record.levelno >= logging.WARNING or logging.getLogger().level <= logging.DEBUG:
        return True
    if record.name.split(".")[0] in OWN_LOGGERS:
        return True
    return not in_installed_library(record.pathname)


def in_installed_library(pathname: str) -> bool:
    """Whether a source file belongs to Python's standard library or an installed package."""
    if not pathname or pathname.startswith("<"):  # "<frozen ...>": Python's own
        return bool(pathname)
    path = Path(pathname).resolve()
    return any(path.is_relative_to(folder) for folder in library_folders())


@functools.cache
def library_folders() -> tuple[Path, ...]:
    """Where the standard library and installed packages live (an editable install of nntrain
    or the user's code on PYTHONPATH lies outside them)."""
    import sysconfig

    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple({Path(paths[key]).resolve() for key in keys if paths.get(key)})
