"""What a trial scored: its objective values, read from the job that ran it.

With one objective and no `metrics`, the value is what the job returned (an nntrain job returns
its monitored metric, trainer.early_stopping.monitor). With `hydra.sweeper.metrics`, each named
metric is read from the job's metrics.json (nntrain writes every metric of the run there), so
several objectives need no change to the job. A job that returns a list or tuple gives one
value per objective, as with hydra-optuna-sweeper.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from omegaconf import OmegaConf

from nntrain.errors import first_line
from nntrain.tasks import CLASSIFICATION, TASKS, Task, natural_direction

# trainer.early_stopping.mode says max/min; Optuna says maximize/minimize. Both are accepted.
DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}
METRICS_FILE = "metrics.json"


def direction_from_mode(mode: Any) -> str:
    """Optuna's direction for a metric mode (max -> maximize, min -> minimize)."""
    name = getattr(mode, "name", mode)  # hydra-optuna-sweeper's Direction enum has a name
    direction = DIRECTIONS.get(str(name).strip().lower())
    if direction is None:
        raise HydraException(
            f"hydra.sweeper.direction={mode} is not a direction; use auto, maximize or "
            "minimize (max and min work too), or a list of them for several objectives."
        )
    return direction


def directions_from(setting: Any) -> list[str]:
    """One direction per objective: `maximize` or `[maximize, minimize]`."""
    if isinstance(setting, Sequence) and not isinstance(setting, str):
        if not setting:
            raise HydraException(
                "hydra.sweeper.direction=[] names no objective; use maximize, minimize or a "
                "list of them."
            )
        return [direction_from_mode(mode) for mode in setting]
    return [direction_from_mode(setting)]


def objective(
    job: JobReturn, n_objectives: int = 1, metrics: Sequence[str] | None = None
) -> tuple[list[float] | None, str | None]:
    """(values, None) for a job that scored finite numbers, else (None, why it failed)."""
    try:
        returned = job.return_value  # re-raises the job's exception when it failed
    except Exception as error:
        return None, first_line(f"{type(error).__name__}: {error}")
    if metrics:
        # A job that failed without raising (nntrain's return NaN) has no metrics to read.
        if isinstance(returned, float) and not math.isfinite(returned):
            return None, job_error(job) or f"the job returned {returned}"
        return metrics_of(job, metrics)
    if n_objectives > 1:
        if not is_sequence(returned) or len(returned) != n_objectives:
            return None, (
                f"the job returned {returned!r}, not {n_objectives} values (one per direction); "
                "name the metrics to read from metrics.json with hydra.sweeper.metrics"
            )
        return checked(list(returned), job)
    try:
        value = float(returned)
    except (TypeError, ValueError):
        return None, f"the job returned {returned!r}, not a number"
    return checked([value], job)


def metrics_of(job: JobReturn, names: Sequence[str]) -> tuple[list[float] | None, str | None]:
    """The named metrics from the job's metrics.json."""
    job_dir = job_directory(job)
    path = job_dir / METRICS_FILE if job_dir is not None else None
    if path is None or not path.is_file():
        return None, f"the job wrote no {METRICS_FILE} to read {', '.join(names)} from"
    try:
        written = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return None, f"{path} cannot be read: {first_line(str(error))}"
    missing = [name for name in names if name not in written]
    if missing:
        return None, (
            f"{METRICS_FILE} has no {missing[0]!r}; it has {', '.join(sorted(written))} "
            "(hydra.sweeper.metrics names them)"
        )
    return checked([written[name] for name in names], job)


def checked(values: list[Any], job: JobReturn) -> tuple[list[float] | None, str | None]:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None, f"the job's values {values!r} are not all numbers"
    if all(math.isfinite(v) for v in numbers):
        return numbers, None
    # nntrain's jobs record why in status.json (a diverged loss returns NaN, not an exception).
    shown = numbers[0] if len(numbers) == 1 else numbers
    return None, job_error(job) or f"the job returned {shown}"


def is_sequence(value: Any) -> bool:
    return OmegaConf.is_list(value) or isinstance(value, list | tuple)


def job_directory(job: JobReturn) -> Path | None:
    """The job's output directory, whichever launcher ran it (JobReturn carries its config)."""
    output_dir = (
        OmegaConf.select(job.hydra_cfg, "hydra.runtime.output_dir") if job.hydra_cfg else None
    )
    return Path(output_dir) if output_dir else None


def job_status(job: JobReturn) -> dict[str, Any]:
    """The job's status.json (nntrain writes it in every job's directory), or {}."""
    job_dir = job_directory(job)
    status_file = job_dir / "status.json" if job_dir is not None else None
    if status_file is None or not status_file.is_file():
        return {}
    try:
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def job_error(job: JobReturn) -> str | None:
    error = job_status(job).get("error")
    return first_line(str(error)) if error else None


def followed_objective(job: JobReturn) -> tuple[str, str] | None:
    """The metric an nntrain job returned and its direction, from status.json: the monitored
    metric and trainer.early_stopping.mode, or a regression's val/loss and minimize."""
    objective = job_status(job).get("objective")
    if not isinstance(objective, dict) or objective.get("mode") not in ("max", "min"):
        return None
    return str(objective.get("metric")), DIRECTIONS[objective["mode"]]


def is_auto(setting: Any) -> bool:
    return isinstance(setting, str) and setting.strip().lower() == "auto"


# The keys that decide what an nntrain job returns. Searched, or fixed by hydra.sweeper.params
# (which the sweeper's own config does not hold), they leave it to the first trial to say.
DECIDING_KEYS = (
    "data.task",
    "data._target_",
    "trainer.early_stopping.monitor",
    "trainer.early_stopping.mode",
    "experiment",
)


def guessed_direction(metric: str) -> str:
    """direction=auto for a metric named in hydra.sweeper.metrics: minimize a loss or an
    error (…/loss, …/rmse, …/mae, as the Trainer's own monitors), maximize the rest."""
    return natural_direction(metric) or "maximize"


def decides_objective(key: str) -> bool:
    """Whether an override of `key` (data, +data.task, trainer@x) can change what a job returns."""
    name = key.lstrip("+~").split("@", 1)[0]
    return any(
        name == k or k.startswith(f"{name}.") or name.startswith(f"{k}.") for k in DECIDING_KEYS
    )


def task_in(config: Any) -> Task | None:
    """The task where the config says so before any data is read: data.task, or one of
    nntrain's own data sets, which are classifications unless they have a task; None otherwise
    (data.task=auto is known only once the table is read)."""
    data = OmegaConf.select(config, "data")
    if not OmegaConf.is_dict(data):
        return None
    task = data.get("task")
    if task in TASKS:
        return TASKS[str(task)]
    if "task" not in data and str(data.get("_target_") or "").startswith("nntrain.data."):
        return CLASSIFICATION
    return None


def nntrain_returns(monitor: str | None, task: Task | None) -> str | None:
    """The metric an nntrain job returns (commands/train.py): the monitored one, but val/loss
    (the task's default) for a regression, which has no accuracy; None while that hangs on an
    unknown task."""
    if monitor is None or not monitor.endswith("/acc"):
        return monitor
    if task is None:
        return None
    return monitor if task.offers(monitor) else task.default_monitor


def setting_text(setting: Any) -> str:
    """hydra.sweeper.direction as the user gave it: max, or [maximize,minimize]."""
    if is_sequence(setting):
        return "[" + ",".join(str(getattr(m, "name", m)) for m in setting) + "]"
    return str(getattr(setting, "name", setting))


def wrong_way(
    setting: Any, directions: list[str], index: int, metric: str, source: str
) -> str | None:
    """The sentence that refuses a direction seeking the worst value of `metric` (a loss
    maximized, an accuracy minimized); None when it goes the right way or the name does not
    say. source: who gives the metric, e.g. "a regression's trials return"."""
    better = natural_direction(metric)
    if better is None or better == directions[index]:
        return None
    fixed = [better if i == index else d for i, d in enumerate(directions)]
    fix = better if len(fixed) == 1 else "[" + ",".join(fixed) + "]"
    worse = "lower is better" if better == "minimize" else "higher is better"
    return (
        f"hydra.sweeper.direction={setting_text(setting)} would {directions[index]} {metric}, "
        f"which {source} ({worse}); set hydra.sweeper.direction={fix}."
    )
