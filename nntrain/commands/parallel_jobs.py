"""Ctrl-C in a sweep whose jobs run in other processes (hydra/launcher=joblib).

The terminal sends SIGINT to every process of the command: each job finishes its step, saves
last.pt and writes its status.json, as a single run does. But joblib answers a KeyboardInterrupt
in the main process, or the first job that ends with one, by killing every worker at once, in
the middle of the others' saves (a cut-short checkpoint write, no status.json, no resume line).
So while such a sweep runs, the main process's first SIGINT waits for the running jobs to have
stopped (each job directory without a status.json has one), and only then interrupts the sweep;
a second Ctrl-C interrupts it at once.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# Launchers whose jobs run in processes of their own on this machine, which got the same SIGINT.
PARALLEL_LAUNCHERS = ("JoblibLauncher",)
# How long the first Ctrl-C waits at most (a job finishing a long validation pass first).
WAIT_AT_MOST_S = 600.0


def running_jobs(sweep_dir: Path) -> list[Path]:
    """The sweep's job directories whose job has not ended yet (no status.json)."""
    if not sweep_dir.is_dir():
        return []
    return [
        job
        for job in sorted(sweep_dir.iterdir())
        if (job / ".hydra").is_dir() and not (job / "status.json").is_file()
    ]


class WaitForRunningJobs:
    """The main process's SIGINT handler while parallel jobs run (see the module docstring)."""

    def __init__(self, sweep_dir: Path, wait_at_most_s: float = WAIT_AT_MOST_S) -> None:
        self.sweep_dir = sweep_dir
        self.wait_at_most_s = wait_at_most_s
        self.waiting = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.waiting:  # Ctrl-C again, while waiting: the sweep stops now
            raise KeyboardInterrupt
        self.waiting = True
        jobs = running_jobs(self.sweep_dir)
        if jobs:
            sys.stderr.write(
                f"\nSIGINT: waiting for the running jobs ({', '.join(j.name for j in jobs)}) to "
                "save their last.pt (press Ctrl-C again to quit at once).\n"
            )
            sys.stderr.flush()
        # Only these: a job that a freed worker starts meanwhile did not get the signal.
        deadline = time.monotonic() + self.wait_at_most_s
        while any(not (job / "status.json").is_file() for job in jobs):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise KeyboardInterrupt


class ParallelJobsSaveOnCtrlC(Callback):
    """Installs WaitForRunningJobs for a sweep run by a parallel launcher, in the main process."""

    def __init__(self) -> None:
        self.previous: Any = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if launcher.endswith(PARALLEL_LAUNCHERS):
            handler = WaitForRunningJobs(Path(config.hydra.sweep.dir))
            self.previous = signal.signal(signal.SIGINT, handler)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
