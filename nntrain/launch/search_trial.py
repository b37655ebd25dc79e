"""A job that runs a trial of an Optuna search: its link to the study, from inside the job.

The sweeper (hydra_plugins/nntrain_optuna_sweeper) writes the study's storage, its name and
the pruner in <sweep dir>/search.json, and gives each trial's job its trial's id in an
environment variable (through +hydra.job.env_set, so it reaches the job whatever the launcher:
in this process, a joblib worker, a SLURM job). The job then, on rank 0:
- reports the figure the search follows at every epoch's end (Optuna's intermediate values:
  what a pruner and optuna-dashboard's intermediate-value plot read), and stops when the pruner
  says so (EpochJudge);
- records a heartbeat every heartbeat_s while it runs, so that a trial whose job or node died is
  found stale by any sweeper of the study and run again, while one that runs on, after its
  sweeper died, is left alone.
Only imported (with optuna) when that variable is set.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nntrain import files
from nntrain.errors import UserError, first_line

log = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "NNTRAIN_SEARCH_TRIAL"


def open_storage(url: str, heartbeat_s: float | None = None, grace_s: float | None = None) -> Any:
    """Optuna's storage for `url` (sqlite:///..., postgresql+psycopg://...), with heartbeats of
    running trials when heartbeat_s is given: a stale trial is failed, and a copy with the same
    parameters queued to run again (Optuna's retry callback)."""
    import optuna
    from optuna.storages import RDBStorage

    if heartbeat_s is None:
        return RDBStorage(url)
    with warnings.catch_warnings():  # heartbeats are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return RDBStorage(
            url,
            heartbeat_interval=int(heartbeat_s),
            grace_period=int(grace_s) if grace_s else None,
            **{retry_keyword(): retry_callback()},
        )


def retry_callback() -> Any:
    """Optuna's callback that queues a copy of a stale trial (renamed in Optuna 4.9)."""
    import optuna.storages as storages

    callback = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    callback = callback or storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return callback(max_retry=None, inherit_intermediate_values=True)


def retry_keyword() -> str:
    import optuna.storages as storages

    if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
        return "heartbeat_stale_trial_callback"
    return "failed_trial_callback"


# The search's settings for its jobs, in the sweep dir.
SEARCH_FILE = "search.json"


@dataclass
class SearchTrial:
    """What a trial's job needs: the search's settings (SEARCH_FILE) and its trial's id."""

    storage: str
    study: str
    trial_id: int
    pruner: dict[str, Any] | None = None  # hydra.sweeper.pruner, as _target_ and fields
    metric: str | None = None  # the figure reported per epoch; None: the monitored one
    heartbeat_s: float | None = None
    grace_s: float | None = None
    test_pruned: bool = False


def write_search_file(sweep_dir: Path, settings: dict[str, Any]) -> None:
    """The search's settings (SearchTrial's fields but trial_id) for its jobs."""
    files.write_json(sweep_dir / SEARCH_FILE, settings)


class TrialReporter:
    """The EpochJudge of a trial's job: reports each epoch's figure, asks the pruner."""

    def __init__(self, link: SearchTrial) -> None:
        import optuna
        from hydra.utils import instantiate

        self.link = link
        self.test_when_stopped = link.test_pruned
        pruner = instantiate(link.pruner) if link.pruner else optuna.pruners.NopPruner()
        self.storage = open_storage(link.storage, link.heartbeat_s, link.grace_s)
        study = optuna.load_study(
            study_name=link.study,
            storage=self.storage,
            pruner=pruner,
            sampler=optuna.samplers.RandomSampler(),  # (not used: the sweeper samples)
        )
        self.reports = not study._is_multi_objective()  # Optuna prunes one objective only
        self.trial = optuna.trial.Trial(study, link.trial_id)
        self.number = self.trial.number
        self.failed_once = False

    def judge(self, epoch: int, metrics: Mapping[str, float], monitor: str) -> str | None:
        name = self.link.metric or monitor
        value = metrics.get(name, math.nan)
        if not self.reports or not math.isfinite(value):
            return None
        try:
            with warnings.catch_warnings():  # a resumed trial reports its last epoch again
                warnings.simplefilter("ignore", UserWarning)
                self.trial.report(value, step=epoch)
            if not self.trial.should_prune():
                return None
        except Exception as error:  # the storage did not answer: the run goes on unpruned
            if not self.failed_once:
                log.warning(f"could not report to the search's study: {first_line(str(error))}")
            self.failed_once = True
            return None
        pruner = type(self.trial.study.pruner).__name__
        return (
            f"the search's pruner ({pruner}, hydra.sweeper.pruner) stopped trial "
            f"{self.number}: {name}={value:.4g} at this epoch"
        )

    def beat(self) -> None:
        self.storage.record_heartbeat(self.link.trial_id)


def link_from_environment(sweep_dir: Path) -> SearchTrial | None:
    trial_id = os.environ.get(ENVIRONMENT_VARIABLE)
    if not trial_id:
        return None
    settings = json.loads((sweep_dir / SEARCH_FILE).read_text())
    return SearchTrial(trial_id=int(trial_id), **settings)


@contextmanager
def joined_trial(
    sweep_dir: Path | None, main_process: bool = True
) -> Iterator[TrialReporter | None]:
    """The trial this job runs (None outside a search, and on ranks other than 0), its
    heartbeat recorded every heartbeat_s until the block ends."""
    if sweep_dir is None or not main_process or not os.environ.get(ENVIRONMENT_VARIABLE):
        yield None
        return
    link = None
    try:
        link = link_from_environment(sweep_dir)
        assert link is not None
        reporter = TrialReporter(link)
    except Exception as error:
        where = f"study {link.study!r}, whose storage {link.storage}" if link else sweep_dir
        raise UserError(
            f"this job is a trial of {where}, which it cannot open "
            f"({first_line(f'{type(error).__name__}: {error}')}); give hydra.sweeper.storage a database every job can reach (a path on a shared "
            "disk, or a PostgreSQL server: scripts/postgres_local.sh)."
        ) from None
    stop = threading.Event()
    beating = None
    if link.heartbeat_s:
        beating = threading.Thread(
            target=keep_beating, args=(reporter, stop, link.heartbeat_s), daemon=True
        )
        beating.start()
    try:
        yield reporter
    finally:
        stop.set()
        if beating is not None:
            beating.join(timeout=10)


def keep_beating(reporter: TrialReporter, stop: threading.Event, every_s: float) -> None:
    while True:
        try:
            reporter.beat()
        except Exception as error:  # a database that went away for a while: try again
            log.debug(f"heartbeat not recorded: {error}")
        if stop.wait(every_s):
            return
