"""A job that runs a trial of an Optuna search: its link to the study, from inside the job.

The sweeper (hydra_plugins/nntrain_optuna_sweeper) hands each trial's job the study's storage,
its name, the trial and the pruner in one environment variable (through hydra.job.env_set, so it
reaches the job whatever the launcher: in this process, a joblib worker, a SLURM job). The job
then, on rank 0:
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
from typing import Any

from nntrain.errors import UserError, first_line

log = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "NNTRAIN_SEARCH_TRIAL"


def open_storage(url: str, heartbeat_s: float | None = None, grace_s: float | None = None) -> Any:
    """Optuna's storage for `url` (sqlite:///..., postgresql+psycopg://...), with heartbeats of
    running trials when heartbeat_s is given; stale trials are failed and retried (same
    parameters, a new trial) through Optuna's RetryFailedTrialCallback."""
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    if heartbeat_s is None:
        return RDBStorage(url)
    with warnings.catch_warnings():  # heartbeats are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url,
            heartbeat_interval=int(heartbeat_s),
            grace_period=int(grace_s) if grace_s else None,
            failed_trial_callback=RetryFailedTrialCallback(
                max_retry=None, inherit_intermediate_values=True
            ),
        )


@dataclass
class SearchTrial:
    """What the sweeper tells a trial's job (the JSON of ENVIRONMENT_VARIABLE)."""

    storage: str
    study: str
    trial_id: int
    number: int
    pruner: dict[str, Any] | None = None  # hydra.sweeper.pruner, as _target_ and fields
    metric: str | None = None  # the figure reported per epoch; None: the monitored one
    heartbeat_s: float | None = None
    grace_s: float | None = None
    test_pruned: bool = False

    def encoded(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


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
            f"{self.link.number}: {name}={value:.4g} at this epoch"
        )

    def beat(self) -> None:
        self.storage.record_heartbeat(self.link.trial_id)


def link_from_environment() -> SearchTrial | None:
    encoded = os.environ.get(ENVIRONMENT_VARIABLE)
    if not encoded:
        return None
    return SearchTrial(**json.loads(encoded))


@contextmanager
def joined_trial(main_process: bool = True) -> Iterator[TrialReporter | None]:
    """The trial this job runs (None outside a search, and on ranks other than 0), its
    heartbeat recorded every heartbeat_s until the block ends."""
    link = link_from_environment()
    if link is None or not main_process:
        yield None
        return
    try:
        reporter = TrialReporter(link)
    except Exception as error:
        raise UserError(
            f"this job is trial {link.number} of study {link.study!r}, whose storage "
            f"{link.storage} it cannot open ({first_line(f'{type(error).__name__}: {error}')}); "
            "give hydra.sweeper.storage a database every job can reach (a path on a shared "
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
