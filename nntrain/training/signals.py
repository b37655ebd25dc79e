"""Ctrl-C, SIGTERM (preemption) and SIGUSR2 (SLURM's warning before a time limit, as submitit
asks for it) end a run cleanly: the loop finishes its optimizer step, writes last.pt and stops;
a second Ctrl-C quits at once. A repeated SIGTERM does not: SLURM and torchrun's agent may both
send one to the same process, and the save must not be cut short."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
REPEAT_AFTER_S = 0.1  # a second Ctrl-C sooner than this is the first one delivered twice


class TrainingInterrupted(Exception):
    """Raised by the loop after saving, when a stop signal arrived."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}")
        self.signum = signum
        self.step = step

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class StopRequests:
    """While active, the stop signals only set `signum`; the loop checks it after each step."""

    def __init__(self, finishing: str = "this step, then saving last.pt") -> None:
        self.finishing = finishing  # what the run completes before it stops, as told to the user
        self.signum: int | None = None
        self._since = 0.0
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    def __enter__(self) -> StopRequests:
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():  # signals reach only it
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            # A DataLoader worker, forked with this handler: Ctrl-C reaches every process of
            # the terminal's process group, and only the training process stops the run (its
            # loader ends the workers) and says so; a worker's notice would repeat it.
            return
        if self.signum is not None:
            # Already stopping at the next step. Only Ctrl-C pressed again means "now": not a
            # copy of the first one that torchrun's agent forwards (to workers that got it from
            # the terminal already) within milliseconds.
            if signum != signal.SIGINT or time.monotonic() - self._since < REPEAT_AFTER_S:
                return
            sys.stderr.write("\nStopped at once; last.pt holds the last saved step.\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum, self._since = signum, time.monotonic()
        sys.stderr.write(
            f"\n{signal.Signals(signum).name}: finishing {self.finishing} "
            "(press Ctrl-C again to quit at once).\n"
        )
        sys.stderr.flush()
