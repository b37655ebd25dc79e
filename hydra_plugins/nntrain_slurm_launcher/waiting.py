"""While a sweep waits for its SLURM jobs (nntrain's SLURM launcher).

- A job that cannot start is said, every hydra.launcher.pending_report_s seconds: one line with
  the jobs' states, SLURM's reason for those pending (squeue's %r: `Resources`, `BeginTime`,
  `ReqNodeNotAvail`, ...) and the command that cancels them. Without it a sweep on a busy or
  broken cluster printed its job lines and then nothing, for as long as its jobs waited.
- Ctrl-C cancels the jobs that did not end (a running one gets SIGTERM: nntrain saves its
  last.pt and records it as interrupted) and says how to continue the sweep with resume=.

Hydra imports this module on every start of nntrain (it scans hydra_plugins): the standard
library only, here.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

# What SLURM's usual reasons for a pending job mean, for someone who has not met them (a
# reason is matched by its start: ReqNodeNotAvail comes as `ReqNodeNotAvail, UnavailableNodes:n1`).
MEANINGS = {
    "Resources": "waiting for free CPUs, GPUs or memory",
    "Priority": "jobs of higher priority go first",
    "BeginTime": "not before its start time: --begin, or a requeued job's delay",
    "Dependency": "waiting for the jobs it depends on",
    "PartitionDown": "the partition is down: sinfo shows it",
    "PartitionInactive": "the partition is inactive: sinfo shows it",
    "ReqNodeNotAvail": "the nodes it needs are down, drained or reserved: sinfo -R says why",
    "Nodes required for job are DOWN": "sinfo -R says why",
    "JobHeldUser": "held: scontrol release <job id> lets it start",
    "JobHeldAdmin": "held by an administrator",
    "None": "the scheduler has not looked at it yet",
}
# States of a job that has started: a sweep of running jobs is not said again and again.
STARTED = {"RUNNING", "COMPLETING", "COMPLETED", "CONFIGURING", "STAGE_OUT", "SIGNALING"}
# How long Ctrl-C waits for the cancelled jobs to leave the queue (a running one saves first).
CANCEL_WAIT_S = 30.0


class Queued(NamedTuple):
    """One job as squeue shows it."""

    job_id: str
    state: str
    reason: str


# Set by a search's sweeper on Ctrl-C: its trials wait for their jobs in threads of their own,
# which no KeyboardInterrupt reaches.
CANCEL = threading.Event()


def wait_for(jobs: Sequence[Any], every_s: float, resume_with: str | None) -> None:
    """Until every job (submitit's) is done, with a line every every_s seconds while one of
    them waits to start. Ctrl-C (or CANCEL) cancels those not done and ends the command (exit
    130), saying how to continue: resume_with (None: a search, which its sweeper continues)."""
    began = time.monotonic()
    next_report = began + every_s
    try:
        while not all(job.done() for job in jobs):
            if CANCEL.is_set():
                raise KeyboardInterrupt
            if time.monotonic() >= next_report:
                line = waiting_line(unfinished_ids(jobs), time.monotonic() - began)
                if line:
                    log.info(line)
                next_report = time.monotonic() + every_s
            time.sleep(min(1.0, every_s))
    except KeyboardInterrupt:
        stop_on_ctrl_c(unfinished_ids(jobs, check=False), resume_with)


def unfinished_ids(jobs: Sequence[Any], check: bool = True) -> list[str]:
    """The SLURM ids (123_0) of the jobs not done (check=False: without asking SLURM again)."""
    return [str(job.job_id) for job in jobs if not (check and job.done())]


def waiting_line(job_ids: Sequence[str], waited_s: float) -> str | None:
    """The line for jobs of which some wait to start; None when all have started."""
    if not job_ids:
        return None
    queued, trouble = read_queue(job_ids)
    cancel = f"cancel them with: {cancel_command(job_ids)}"
    if trouble:
        return f"SLURM jobs after {duration(waited_s)}: squeue did not answer ({trouble}); {cancel}"
    if all(job.state in STARTED for job in queued):
        return None
    return f"SLURM jobs after {duration(waited_s)}: {states(queued)}; {cancel}"


def states(queued: Sequence[Queued]) -> str:
    """`1 running, 2 pending: Resources (waiting for ...)`: how many in each state, and for
    those that have not started, each of SLURM's reasons."""
    counts = Counter((job.state, "" if job.state in STARTED else job.reason) for job in queued)
    return ", ".join(
        f"{count} {state.lower()}" + (f": {explained(reason)}" if reason else "")
        for (state, reason), count in sorted(
            counts.items(), key=lambda item: item[0][0] != "RUNNING"
        )
    )


def explained(reason: str) -> str:
    """SLURM's reason as it says it, with what it means when it is one of the usual codes
    (ReqNodeNotAvail comes as `ReqNodeNotAvail, UnavailableNodes:node1`)."""
    meaning = next((said for code, said in MEANINGS.items() if reason.startswith(code)), None)
    return f"{reason} ({meaning})" if meaning else reason


def read_queue(job_ids: Sequence[str]) -> tuple[list[Queued], str]:
    """The jobs as squeue lists them (one line per array task: -r), or why it could not."""
    wanted = set(job_ids)
    try:
        done = subprocess.run(
            ["squeue", "-h", "-r", "-j", ",".join(array_ids(job_ids)), "-o", "%i|%T|%r"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], str(error)
    if done.returncode != 0 and "Invalid job id" in done.stderr:  # every job has left the queue
        return [], ""
    if done.returncode != 0:  # e.g. the controller is down
        return [], (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    rows = [
        Queued(*line.split("|", 2)) for line in done.stdout.splitlines() if line.count("|") >= 2
    ]
    return [row for row in rows if row.job_id in wanted], ""


def array_ids(job_ids: Sequence[str]) -> list[str]:
    """The job arrays the jobs belong to (123 for 123_0 and 123_1), in order: one scancel
    of an array cancels its tasks that did not end."""
    return list(dict.fromkeys(job_id.split("_")[0] for job_id in job_ids))


def cancel_command(job_ids: Sequence[str]) -> str:
    return "scancel " + " ".join(array_ids(job_ids))


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def stop_on_ctrl_c(job_ids: Sequence[str], resume_with: str | None) -> None:
    """Cancel the jobs that did not end, wait a little for them to go (a running job saves its
    last.pt on the SIGTERM), and end the command with one sentence: what became of the jobs,
    and the command that continues the sweep (none for a search: its sweeper says what became
    of its trials)."""
    from nntrain.reporting.console import print_error

    then = f"continue the sweep with: {resume_with}" if resume_with else ""
    if not job_ids:
        print_error(sentence("interrupted; every SLURM job of the sweep had ended", then))
        sys.exit(130)
    command = cancel_command(job_ids)
    # A second Ctrl-C must not cut the cancelling short (and end in a traceback); only the
    # main thread may change handlers (a search's trials wait in threads of their own).
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        refused = run_quietly(command.split())
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    if refused:
        told = (
            f"interrupted; SLURM did not cancel the sweep's jobs ({refused}): cancel them "
            f"with: {command}"
        )
        print_error(sentence(told, f"then {then}" if then else ""))
        sys.exit(130)
    gone = wait_until(lambda: read_queue(job_ids) == ([], ""), CANCEL_WAIT_S)
    if not gone:
        then = sentence(
            "they are still stopping (a running job saves its last.pt first)",
            f"once squeue no longer lists them, {then}" if then else "",
        )
    print_error(sentence(f"interrupted: cancelled the sweep's SLURM jobs ({command})", then))
    sys.exit(130)


def sentence(*parts: str) -> str:
    """The parts joined with '; ', ending with a full stop unless a command ends it (a stop
    after a command would be copied with it)."""
    text = "; ".join(part for part in parts if part)
    return text if ": nntrain " in text.rsplit(";", 1)[-1] else f"{text.rstrip('.')}."


def run_quietly(command: list[str]) -> str:
    """Run command; '' when it worked, else the last line it printed (or why it did not run)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if done.returncode == 0:
        return ""
    return (done.stderr.strip().splitlines() or [f"{command[0]} exited with {done.returncode}"])[-1]


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll condition until it holds (True) or timeout_s passes, or Ctrl-C again (False)."""
    deadline = time.monotonic() + timeout_s
    try:
        while not condition():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
    except KeyboardInterrupt:
        return False
    return True
