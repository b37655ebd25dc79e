"""What a SLURM sweep says while its jobs wait, and what Ctrl-C does then (the launcher's
waiting.py), with squeue and scancel stood in for: no cluster needed. tests/test_slurm.py holds
a job pending on a real cluster and reads the line."""

from __future__ import annotations

import logging
import subprocess

import pytest

from hydra_plugins.nntrain_slurm_launcher import waiting
from hydra_plugins.nntrain_slurm_launcher.slurm_launcher import pending_report_s


class FakeSlurm:
    """squeue and scancel as subprocess.run sees them: squeue lists `queue` (or fails with
    `squeue_error`), scancel succeeds (or fails with `scancel_error`) and empties the queue."""

    def __init__(self, queue: list[str], squeue_error: str = "", scancel_error: str = ""):
        self.queue, self.squeue_error, self.scancel_error = queue, squeue_error, scancel_error
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        self.commands.append(command)
        if command[0] == "squeue":
            if self.squeue_error:
                return subprocess.CompletedProcess(command, 1, "", self.squeue_error + "\n")
            return subprocess.CompletedProcess(command, 0, "\n".join(self.queue) + "\n", "")
        if self.scancel_error:
            return subprocess.CompletedProcess(command, 1, "", self.scancel_error + "\n")
        self.queue = []
        return subprocess.CompletedProcess(command, 0, "", "")


class FakeJob:
    """A submitit job: not done until `done_after` calls of done(), or Ctrl-C at the first."""

    def __init__(self, job_id: str, done_after: int = 0, interrupt: bool = False):
        self.job_id, self.calls, self.done_after, self.interrupt = job_id, 0, done_after, interrupt

    def done(self) -> bool:
        if self.interrupt:
            raise KeyboardInterrupt
        self.calls += 1
        return self.calls > self.done_after


@pytest.fixture
def slurm(monkeypatch):
    def install(queue: list[str], **errors: str) -> FakeSlurm:
        fake = FakeSlurm(queue, **errors)
        monkeypatch.setattr(waiting.subprocess, "run", fake)
        monkeypatch.setattr(waiting, "CANCEL_WAIT_S", 5.0)
        return fake

    return install


def test_the_line_gives_each_state_slurms_reason_and_the_cancel_command(slurm):
    fake = slurm(["12_0|RUNNING|None", "12_1|PENDING|Resources", "12_2|PENDING|Resources"])
    line = waiting.waiting_line(["12_0", "12_1", "12_2"], waited_s=185)
    assert line == (
        "SLURM jobs after 3 min: 1 running, 2 pending: Resources (waiting for free CPUs, GPUs or "
        "memory); cancel them with: scancel 12"
    )
    assert fake.commands == [["squeue", "-h", "-r", "-j", "12", "-o", "%i|%T|%r"]]


def test_a_reason_slurm_spells_out_is_given_as_it_is_with_where_to_look(slurm):
    slurm(["7_0|PENDING|Nodes required for job are DOWN, DRAINED or reserved for jobs in higher "
           "priority partitions", "8_0|PENDING|MaxCpuPerAccount"])  # fmt: skip
    assert waiting.waiting_line(["7_0", "8_0"], waited_s=60) == (
        "SLURM jobs after 60 s: 1 pending: Nodes required for job are DOWN, DRAINED or reserved "
        "for jobs in higher priority partitions (sinfo -R says why), 1 pending: "
        "MaxCpuPerAccount; cancel them with: scancel 7 8"
    )


def test_no_line_once_every_job_has_started(slurm):
    slurm(["12_0|RUNNING|None", "12_1|COMPLETING|None"])
    assert waiting.waiting_line(["12_0", "12_1"], waited_s=60) is None


def test_a_controller_that_does_not_answer_is_said_with_the_cancel_command(slurm):
    slurm([], squeue_error="slurm_load_jobs error: Unable to contact slurm controller")
    assert waiting.waiting_line(["12_0"], waited_s=61) == (
        "SLURM jobs after 61 s: squeue did not answer (slurm_load_jobs error: Unable to contact "
        "slurm controller); cancel them with: scancel 12"
    )


def test_the_wait_says_the_line_every_interval_and_ends_when_the_jobs_are_done(slurm, caplog):
    slurm(["3_0|PENDING|Priority"])
    caplog.set_level(logging.INFO, logger=waiting.__name__)
    waiting.wait_for([FakeJob("3_0", done_after=3)], every_s=0.01, resume_with="unused")
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all(
        line.endswith(
            "1 pending: Priority (jobs of higher priority go first); cancel them with: scancel 3"
        )
        for line in lines
    )


def test_ctrl_c_cancels_the_jobs_and_says_how_to_continue(slurm, capsys):
    fake = slurm(["4_0|PENDING|BeginTime", "4_1|PENDING|BeginTime"])
    jobs = [FakeJob("4_0", interrupt=True), FakeJob("4_1")]
    with pytest.raises(SystemExit) as stopped:
        waiting.wait_for(jobs, every_s=60, resume_with="nntrain -m hydra/launcher=slurm resume=s")
    assert stopped.value.code == 130
    assert ["scancel", "4"] in fake.commands
    assert capsys.readouterr().err == (
        "Error: interrupted: cancelled the sweep's SLURM jobs (scancel 4); continue the sweep "
        "with: nntrain -m hydra/launcher=slurm resume=s\n"
    )


def test_ctrl_c_where_scancel_fails_says_how_to_cancel(slurm, capsys):
    slurm(["4_0|PENDING|BeginTime"], scancel_error="scancel: error: Kill job error on job id 4")
    with pytest.raises(SystemExit) as stopped:
        waiting.stop_on_ctrl_c(["4_0"], resume_with="nntrain -m hydra/launcher=slurm resume=s")
    assert stopped.value.code == 130
    assert capsys.readouterr().err == (
        "Error: interrupted; SLURM did not cancel the sweep's jobs (scancel: error: Kill job "
        "error on job id 4): cancel them with: scancel 4; then continue the sweep with: nntrain "
        "-m hydra/launcher=slurm resume=s\n"
    )


@pytest.mark.parametrize("every", [0, -5])
def test_an_interval_that_is_not_above_0_is_one_sentence(every, capsys):
    with pytest.raises(SystemExit) as stopped:
        pending_report_s({"pending_report_s": every})
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (
        f"Error: hydra.launcher.pending_report_s={every}: it is how often (in seconds) a sweep "
        "says why its SLURM jobs wait to start, so it must be a number above 0 (default 60).\n"
    )


def test_ctrl_c_in_a_search_leaves_the_continuing_to_its_sweeper(slurm, capsys):
    slurm(["5_0|RUNNING|None"])
    with pytest.raises(SystemExit):
        waiting.stop_on_ctrl_c(["5_0"], resume_with=None)
    assert capsys.readouterr().err == (
        "Error: interrupted: cancelled the sweep's SLURM jobs (scancel 5).\n"
    )
