"""What the trainer asks at each epoch's end when a search runs it: whether to stop there.

A search's pruner (Optuna's, in nntrain.launch.search_trial) compares the run's figure with the
other trials' at the same epoch; a run it stops ends like an early stop (best.pt and last.pt
kept, metrics.json written), without the test unless the search asks for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class EpochJudge(Protocol):
    # Whether a run stopped by the judge is still tested (the test costs a pass over the data).
    test_when_stopped: bool

    def judge(self, epoch: int, metrics: Mapping[str, float], monitor: str) -> str | None:
        """After epoch `epoch` (1-based) with these figures (`monitor` is the one early
        stopping follows): why the run should stop now, or None to go on."""
        ...
