"""Trials in flight: the study's budget, the link a job gets to its trial, heartbeats, retries.

- The budget: hydra.sweeper.n_trials is the study's total of finished trials (complete, pruned,
  and failed, except a failure that runs again as another trial: a stale or interrupted one).
  A sweeper asks for a trial only while the finished and running ones are fewer, so a search
  started again after it died, or several sweepers sharing one study, run exactly what is
  missing; two sweepers that ask at the same moment keep the trial with the lower number and
  give the other back (WAITING).
- Heartbeats: the sweeper records one for each trial it has in flight (a thread), and an
  nntrain job for its own trial (nntrain.launch.search_trial), so a trial stays alive while
  either lives: a SLURM job whose sweeper died runs on. Once neither beats for grace_period,
  any sweeper of the study fails the trial and Optuna's RetryFailedTrialCallback puts a copy
  with the same parameters in the queue; the sweeper that takes it resumes the trial's run from
  its last.pt, in the trial's own directory.

Imports only the standard library at module level (Hydra imports the plugin on every start).
No `from __future__ import annotations`: Hydra's plugin scan executes this module before it is
in sys.modules, and dataclasses cannot resolve string annotations then.
"""

import logging
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import Trial

log = logging.getLogger(__name__)

# The job's environment, where it finds its trial (nntrain.launch.search_trial).
ENV_OVERRIDE = "hydra.job.env_set"


@dataclass
class Launched:
    """A trial handed to the launcher: its job's number (its directory's name) and overrides."""

    trial: Any  # optuna.trial.Trial
    number: int
    overrides: list[str]
    resumed_from: int | None = None  # the trial whose run this one continues
    extra: list[str] = field(default_factory=list)  # for the launcher only (the trial link)


# The states of a finished trial that uses up the budget (a failed one, unless run again).
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def state_counts(study: "Study") -> dict[str, int]:
    """The study's trials by state; a failed trial that runs again as another is not counted."""
    trials = study.get_trials(deepcopy=False)
    again = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    counts: dict[str, int] = {}
    for trial in trials:
        if trial.state.name == "FAIL" and trial.number in again:
            continue
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def finished(study: "Study") -> int:
    counts = state_counts(study)
    return sum(counts.get(state, 0) for state in FINISHED)


def room_for_another(study: "Study", n_trials: int) -> bool:
    counts = state_counts(study)
    return sum(counts.get(state, 0) for state in (*FINISHED, "RUNNING")) < n_trials


def surplus(study: "Study", trial: "Trial", n_trials: int) -> bool:
    """Whether the trial just asked is one too many: n_trials are finished, or running with a
    lower number (another sweeper asked at the same moment and keeps its own)."""
    trials = study.get_trials(deepcopy=False)
    again = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    taken = 0
    for other in trials:
        if other.number == trial.number or (other.state.name == "FAIL" and other.number in again):
            continue
        if other.state.name in FINISHED or (
            other.state.name == "RUNNING" and other.number < trial.number
        ):
            taken += 1
    return taken >= n_trials


def retried_number(trial: "Trial") -> int | None:
    """The trial this one runs again (Optuna's RetryFailedTrialCallback), if any."""
    system_attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    number = system_attrs.get("failed_trial")
    return int(number) if number is not None else None


def has_last_checkpoint(job_dir: Path) -> bool:
    return (job_dir / "checkpoints" / "last.pt").is_file()


class Heartbeats:
    """A thread recording a heartbeat for every trial this sweeper has in flight."""

    def __init__(self, storage: Any, every_s: float) -> None:
        self.storage = storage
        self.every_s = every_s
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="trial heartbeats")

    def __enter__(self) -> "Heartbeats":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)

    def add(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.add(trial_id)
        self.beat({trial_id})  # at once: a trial is never RUNNING without a heartbeat

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def beat(self, trial_ids: set[int]) -> None:
        for trial_id in trial_ids:
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception as error:  # a database away for a moment: the next beat
                log.debug(f"heartbeat of trial id {trial_id} not recorded: {error}")

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            with self.lock:
                ids = set(self.trial_ids)
            self.beat(ids)


def fail_stale(study: "Study") -> list[int]:
    """Fail the study's trials whose heartbeat stopped (their job and sweeper died); Optuna's
    callback queues a copy of each to run again. Returns their numbers."""
    import optuna

    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"}
    try:
        with warnings.catch_warnings():  # marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    except Exception as error:  # another sweeper failed it at the same moment
        log.debug(f"fail_stale_trials: {error}")
    now_failed = {t.number for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"}
    return sorted(before & now_failed)


def retry_later(study: "Study", trial: "Trial") -> None:
    """Queue a copy of a failed trial (same parameters, its directory and intermediate values),
    as Optuna's RetryFailedTrialCallback does for a stale one."""
    from nntrain.launch.search_trial import retry_callback

    retry_callback()(study, trial.storage.get_trial(trial._trial_id))
