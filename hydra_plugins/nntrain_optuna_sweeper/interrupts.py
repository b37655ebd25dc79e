"""Ctrl-C between trials: a trial that was asked for but never launched is not a failed trial.

Optuna has no state for a trial that was cancelled, and cannot delete one. FAIL would count it
among the search's failures (and a dashboard would show a failure that never happened); left
RUNNING, a stored study would keep it as running forever. WAITING is Optuna's own state for a
trial that has not run yet (an enqueued one): the trial goes back there, with the values drawn
for it, and the next study.ask of a continued study runs it first.

Imports only the standard library at module level (Hydra imports this module when it scans for
plugins, on every start of nntrain).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import Trial


@contextmanager
def sigint_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) while the block runs and deliver it, to the handler that was there,
    when the block ends: study.ask stores the new trial before it returns it, and an interrupt
    in between would leave a RUNNING trial that the sweeper never had in hand."""
    previous = signal.getsignal(signal.SIGINT)
    # Handlers can only be changed from the main thread, and one installed outside Python
    # (None) cannot be put back.
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)  # Python's handler raises KeyboardInterrupt here


def give_back(study: Study, trials: list[Trial]) -> list[int]:
    """Put trials that were asked for but never launched back in the study's queue (WAITING);
    returns their numbers. Only public storage calls: the trial's id from its study and number."""
    from optuna.trial import TrialState

    given: list[int] = []
    for trial in trials:
        storage = trial.storage
        study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        if storage.get_trial(trial_id).state == TrialState.RUNNING:
            storage.set_trial_state_values(trial_id, TrialState.WAITING)
            given.append(trial.number)
    return given
