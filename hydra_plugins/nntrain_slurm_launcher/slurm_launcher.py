"""hydra/launcher=slurm: Hydra's submitit launcher, keeping what a cluster user relies on.

- Time limits and preemption: SLURM sends SIGUSR2 signal_delay_s before a job's limit (and
  on preemption, where the cluster is set up so); nntrain saves last.pt at the next step, and
  the job is requeued through submitit's checkpointing protocol (`checkpoint`, below) to
  continue from that last.pt in its own directory, up to max_num_timeout times for time limits.
- A job that ends without a result (cancelled, stopped by SIGTERM, out of requeues, killed)
  is recorded, not raised: the sweep's other jobs finish, and summary.csv says what happened.
- resume=<job dir> or resume=<sweep dir> (nntrain.launch.resume_command_line.rewrite_argv): each job
  runs again with its own overrides, in its own directory, from its last.pt.
- sbatch's refusal (a partition, memory or GPUs the cluster does not have) is one sentence.
- While the jobs wait to start, a line every pending_report_s says their state and SLURM's
  reason, and how to cancel them; Ctrl-C cancels them (waiting.py). Each job's directory and
  overrides are written as it is submitted, so resume=<sweep dir> finds a job that never ran.

Needs the cluster extra: pip install 'nntrain[cluster]'.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.nntrain_slurm_launcher import waiting
from nntrain import files, runs

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        SlurmLauncher as SubmititSlurmLauncher,
    )
except ImportError:  # no cluster extra: hydra/launcher=slurm then says to install it
    from hydra.plugins.launcher import Launcher as SubmititSlurmLauncher

log = logging.getLogger(__name__)

# The exit status of a job that nntrain stopped on SIGUSR2, after saving last.pt.
SAVED_ON_WARNING = 128 + signal.SIGUSR2
# How nntrain ends a job it stopped: an error (1), Ctrl-C (130), SIGTERM (143), the warning.
NNTRAIN_EXITS = (1, 128 + signal.SIGINT, 128 + signal.SIGTERM, SAVED_ON_WARNING)


class SlurmLauncher(SubmititSlurmLauncher):
    job_dir: Path | None = None  # in a job's process: its directory, once it has started

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[Any, Any],
    ) -> JobReturn:
        """One job, on its node. Its end is always a result for the sweep, except when it is
        requeued: then the same job starts again later, from its last.pt."""
        task: Any = cast(Any, self).task_function

        def job(cfg: Any) -> Any:  # notes the job's directory, which Hydra knows only inside
            from hydra.core.hydra_config import HydraConfig

            self.job_dir = Path(HydraConfig.get().runtime.output_dir)
            return task(cfg)

        self.task_function, self.job_dir = job, None
        if submitit_rank() != 0:  # one writer of the job's .hydra/ (DDP over srun's tasks)
            sweep_overrides = [*sweep_overrides, "hydra.output_subdir=null"]
        try:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        except SystemExit as stopped:
            if stopped.code not in NNTRAIN_EXITS:  # submitit's own, e.g. after a requeue
                raise
            # nntrain stopped the job (its status.json says why)
            self.task_function = task  # (pickled by checkpoint(), as submitted)
            if stopped.code == SAVED_ON_WARNING:
                self._requeue()  # returns only when submitit does not requeue
            return unfinished(sweep_overrides)
        finally:
            self.task_function = task
            from nntrain.training import distributed

            distributed.shutdown()  # the process group of the job's tasks, if it has several

    def _requeue(self) -> None:
        """Hand the warning to submitit's handler (nntrain's own handler held it while the
        step finished and last.pt was written): it asks for `checkpoint` below, requeues the
        job and exits; or it raises when the job may not be requeued (too many timeouts)."""
        from submitit.core.utils import UncompletedJobError

        handler = signal.getsignal(signal.SIGUSR2)
        if not callable(handler):  # not under submitit (a test calling this directly)
            return
        job_dir = self.job_dir
        try:
            handler(signal.SIGUSR2, None)
        except UncompletedJobError as refused:  # e.g. "timed-out too many times"
            if job_dir is not None:
                note_in_status(job_dir, f"not requeued: {first_sentence(refused)}")
            return
        if submitit_rank() != 0:  # rank 0 requeues the job; SLURM ends this task with it
            sys.exit(0)

    def cancel_waiting(self) -> None:
        """Ctrl-C in a search whose trials wait for their jobs in threads: cancel those jobs."""
        waiting.CANCEL.set()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's checkpointing protocol: what to run when the job is requeued. The same
        job, told to continue from its last.pt (without it, it would start over)."""
        import submitit

        overrides, *rest = args
        job_dir = self.job_dir
        if job_dir is not None and runs.checkpoint_path(job_dir, "last").is_file():
            last = runs.checkpoint_path(job_dir, "last")
            from nntrain.launch.resume_command_line import quoted

            overrides = [
                *(o for o in overrides if not o.startswith("resume=")),
                f"resume={quoted(last)}",
            ]
        return submitit.helpers.DelayedSubmission(self, overrides, *rest, **kwargs)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Submit the jobs (those of resume= with their own overrides and directories), wait
        for them, and return a result for every one, whatever happened to it."""
        report_every = pending_report_s(self.params)
        jobs = [with_own_overrides(list(overrides)) for overrides in job_overrides]
        submitted = self._submit(jobs, initial_job_idx)
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        if numbered_job_dirs(self.config):
            for number, overrides in enumerate(jobs, start=initial_job_idx):
                record_job(sweep_dir, number, overrides)
        from nntrain.reporting.console import display_path

        # resume= runs a sweep's unfinished jobs again; a search's trials are its sweeper's.
        search = "optuna" in str(self.config.hydra.sweeper.get("_target_", "")).lower()
        resume_with = f"nntrain -m hydra/launcher=slurm resume={display_path(sweep_dir)}"
        waiting.wait_for(submitted, report_every, None if search else resume_with)
        return [
            result_or_unfinished(job, overrides)
            for job, overrides in zip(submitted, jobs, strict=True)
        ]

    def _submit(self, jobs: list[list[str]], initial_job_idx: int) -> list[Any]:
        """hydra-submitit-launcher's launch up to the submission (its jobs, not yet their
        results); sbatch's refusal ends the command as one sentence."""
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf
        from submitit.core.utils import FailedJobError

        assert self.config is not None
        params = dict(self.params)
        params.pop("pending_report_s", None)  # nntrain's, not submitit's
        folder, max_num_timeout = params.pop("submitit_folder"), params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=folder, slurm_max_num_timeout=max_num_timeout
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        arguments = []
        for number, overrides in enumerate(jobs, start=initial_job_idx):
            log.info(f"\t#{number} : {' '.join(filter_overrides(overrides))}")
            state = Singleton.get_state()
            arguments.append((overrides, "hydra.sweep.dir", number, f"job_id_for_{number}", state))
        try:  # submitit prints sbatch's refusal too: it is said once, below
            with contextlib.redirect_stderr(io.StringIO()):
                return list(executor.map_array(self, *zip(*arguments, strict=True)))
        except FailedJobError as refused:  # sbatch said no, before any job ran
            from nntrain.reporting.console import print_error

            print_error(describe_refusal(str(refused)))
            sys.exit(1)


def result_or_unfinished(job: Any, overrides: list[str]) -> JobReturn:
    """The job's result; for a job that ended without one (scancel, killed, out of requeues),
    a result that says so (its status.json, if it got to write one, tells the rest)."""
    from submitit.core.utils import UncompletedJobError

    try:
        return job.results()[0]
    except UncompletedJobError as error:
        from nntrain.reporting.console import log

        log.warning(f"job {job.job_id} ended without a result: {first_sentence(error)}")
        return unfinished(overrides)


def unfinished(overrides: Sequence[str]) -> JobReturn:
    """A result for a job that did not finish: NaN, as nntrain's failed jobs return (an Optuna
    search records a failed trial; the sweep summary reads the job's status.json)."""
    result = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    result.return_value = math.nan
    return result


def with_own_overrides(overrides: list[str]) -> list[str]:
    """A job of resume=<job dir>: that job's own overrides, its directory (hydra.sweep.subdir)
    and its last.pt (when it saved one; else it starts over there). Other jobs: as given."""
    from nntrain.launch.resume import override_key
    from nntrain.launch.resume_command_line import quoted, quoted_value, saved_overrides

    given = [o.split("=", 1)[1].strip("'\"") for o in overrides if override_key(o) == "resume"]
    if not given:
        return overrides
    job_dir = runs.run_dir_of(runs.resolve_checkpoint(given[-1], "last"))
    last = runs.checkpoint_path(job_dir, "last")
    own = saved_overrides(job_dir)
    typed = [o for o in overrides if override_key(o) != "resume"]
    keys = {override_key(o) for o in typed}
    return [
        *(o for o in own if override_key(o) not in keys),
        *typed,
        *([f"resume={quoted(last)}"] if last.is_file() else []),
        f"hydra.sweep.subdir={quoted_value(job_dir.name)}",
    ]


def pending_report_s(params: dict[str, Any]) -> float:
    """hydra.launcher.pending_report_s, checked before any job is submitted."""
    every = params.get("pending_report_s", 60.0)
    if not isinstance(every, int | float) or every <= 0:
        from nntrain.reporting.console import print_error

        print_error(
            f"hydra.launcher.pending_report_s={every}: it is how often (in seconds) a sweep says "
            "why its SLURM jobs wait to start, so it must be a number above 0 (default 60)."
        )
        sys.exit(1)
    return float(every)


def numbered_job_dirs(config: Any) -> bool:
    """Whether a job's directory is <sweep dir>/<job number>, as nntrain's config has it (a
    hydra.sweep.subdir of the user's own is left to Hydra)."""
    from omegaconf import OmegaConf

    sweep = OmegaConf.to_container(config.hydra.sweep, resolve=False)
    return isinstance(sweep, dict) and sweep.get("subdir") == "${hydra.job.num}"


def record_job(sweep_dir: Path, number: int, overrides: list[str]) -> None:
    """The job's directory and its .hydra/overrides.yaml, as Hydra writes them once the job
    runs: a job cancelled before it started is then still a job of the sweep, which
    resume=<sweep dir> runs (and the sweep's table lists as unfinished). A job of resume=
    (hydra.sweep.subdir=...) has its directory already."""
    import yaml

    if any(o.startswith("hydra.sweep.subdir=") for o in overrides):
        return
    record = sweep_dir / str(number) / ".hydra" / "overrides.yaml"
    if not record.exists():
        record.parent.mkdir(parents=True, exist_ok=True)
        files.write_text(record, yaml.safe_dump(list(overrides), default_flow_style=False))


def submitit_rank() -> int:
    import submitit

    return int(submitit.JobEnvironment().global_rank)


def note_in_status(job_dir: Path, note: str) -> None:
    """Add a note to the error of the job's status.json (written by nntrain as it stopped)."""
    import json

    path = job_dir / "status.json"
    if path.is_file():
        status = json.loads(path.read_text())
        status["error"] = f"{status.get('error') or ''}; {note}".lstrip("; ")
        files.write_json(path, status)


def first_sentence(error: BaseException) -> str:
    return str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else repr(error)


def describe_refusal(stderr: str) -> str:
    """sbatch's reason (its first specific 'error:' line, e.g. 'invalid partition specified:
    gpu', rather than the 'Batch job submission failed' that follows), and what to change."""
    reasons = [
        line.split("error:", 1)[1].strip() for line in stderr.splitlines() if "error:" in line
    ]
    failed = "Batch job submission failed: "
    specific = [reason for reason in reasons if not reason.startswith(failed)]
    if specific:
        reason = specific[0]
    else:
        reason = reasons[-1].removeprefix(failed) if reasons else stderr.strip().splitlines()[-1]
    return (
        f"SLURM refused the jobs: {reason.rstrip('.')}; ask for what the cluster has "
        "(hydra.launcher.partition=..., mem_gb=..., gpus_per_node=..., cpus_per_task=...; "
        "`sinfo -o '%P %c %m %G'` lists the partitions' CPUs, memory and GPUs)."
    )
