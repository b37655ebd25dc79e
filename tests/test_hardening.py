"""What a new user or a hostile tester meets (issue 12): every mistake ends in one sentence, a
run owns its directory, a refused run or resume changes nothing."""

import contextlib
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import run_nntrain

NNTRAIN = str(Path(sys.executable).with_name("nntrain"))
SMOKE = ("trainer=debug", "trainer.report_images=false")


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [NNTRAIN, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_error_line(done: subprocess.CompletedProcess | tuple[int, str]) -> str:
    """The single stderr line of a refused command (and no traceback)."""
    stderr = done.stderr if isinstance(done, subprocess.CompletedProcess) else done[1]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def run_dirs(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "outputs").glob("*/*") if p.parent.name != "multirun")


def test_two_runs_started_together_get_a_directory_each(tmp_path):
    first, second = start(*SMOKE, cwd=tmp_path), start(*SMOKE, cwd=tmp_path)
    for process in (first, second):
        process.communicate(timeout=240)
        assert process.returncode == 0
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2, dirs
    if dirs[0].name[:8] == dirs[1].name[:8]:  # started in the same second: the second is -2
        assert dirs[1].name == dirs[0].name + "-2"
    for run_dir in dirs:
        assert json.loads((run_dir / "status.json").read_text())["status"] == "ok"
        assert (run_dir / "metrics.json").is_file() and (run_dir / "checkpoints/best.pt").is_file()


def test_a_directory_that_holds_a_run_is_refused(tmp_path):
    processes = [start(*SMOKE, "hydra.run.dir=mine", cwd=tmp_path) for _ in range(2)]
    outcomes = [(p.wait(timeout=240), p.communicate()[1]) for p in processes]
    assert sorted(code for code, _ in outcomes) == [0, 1]
    refused = next(outcome for outcome in outcomes if outcome[0] == 1)
    assert one_error_line(refused) == (
        "Error: hydra.run.dir=mine already holds a run; give a new directory (or leave "
        "hydra.run.dir out: every run gets its own), or continue that run with nntrain "
        "resume=mine."
    )
    again = run_nntrain(*SMOKE, "hydra.run.dir=mine", cwd=tmp_path)
    assert again.returncode == 1 and "already holds a run" in one_error_line(again)
    assert json.loads((tmp_path / "mine" / "status.json").read_text())["status"] == "ok"


def fingerprint(run_dir: Path) -> dict[str, str]:
    """Every file of a run and its content's hash."""
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }


def test_a_refused_resume_changes_nothing_of_the_run(tmp_path):
    assert run_nntrain(*SMOKE, cwd=tmp_path).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    before = fingerprint(run_dir)
    for bad in ("data.batch_size=0", "model=cnn", "trainer.max_epochs=abc"):
        done = run_nntrain(f"resume={run_dir}", bad, cwd=tmp_path)
        assert done.returncode == 1 and one_error_line(done).startswith("Error: ")
        assert fingerprint(run_dir) == before, bad
    resumed = run_nntrain(f"resume={run_dir}", "trainer.max_epochs=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "trainer.max_epochs=3" in overrides and "batch_size=0" not in overrides
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 3


def weights(checkpoint: Path) -> dict:
    from nntrain.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)["model"]


def test_a_checkpoint_kept_on_its_own_resumes_with_its_own_config_in_a_new_run(tmp_path):
    run = ("trainer.deterministic=true", "model.hidden=[24]", "optimizer.lr=3e-3", "seed=5")
    assert run_nntrain(*SMOKE, *run, "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck/mine.pt").write_bytes((tmp_path / "run/checkpoints/last.pt").read_bytes())
    # Continued from the checkpoint alone (its config is not the defaults: nothing retyped)...
    loose = run_nntrain("resume=ck/mine.pt", "trainer.max_epochs=3", cwd=tmp_path)
    assert loose.returncode == 0, loose.stderr
    (new_run,) = run_dirs(tmp_path)
    assert new_run.name.endswith("-mlp-digits-resumed")
    assert f"resuming ck/mine.pt in the new run directory outputs/{new_run.parent.name}/" in (
        loose.stdout
    )
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["mine.pt"]  # no litter
    # ...it is the same run as continuing in its own directory: bit-identical weights.
    in_place = run_nntrain("resume=run", "trainer.max_epochs=3", cwd=tmp_path)
    assert in_place.returncode == 0, in_place.stderr
    for key, tensor in weights(tmp_path / "run/checkpoints/last.pt").items():
        assert tensor.equal(weights(new_run / "checkpoints/last.pt")[key]), key
    metrics = json.loads((new_run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3
    assert json.loads((new_run / "status.json").read_text())["status"] == "ok"
    if not (new_run / "checkpoints/best.pt").is_file():  # the best epoch came before the copy
        assert "testing last.pt instead" in loose.stdout
    # A best.pt beside the checkpoint, of the same run, comes along and is tested.
    (tmp_path / "ck/best.pt").write_bytes((tmp_path / "run/checkpoints/best.pt").read_bytes())
    again = run_nntrain("resume=ck/mine.pt", "trainer.max_epochs=2", cwd=tmp_path)
    assert again.returncode == 0 and "test with best.pt (epoch" in again.stdout, again.stderr
    # Refused (another model): the new directory it would have used is not left behind.
    refused = run_nntrain("resume=ck/mine.pt", "model=cnn", cwd=tmp_path)
    assert one_error_line(refused).startswith(f"Error: cannot resume {tmp_path}/ck/mine.pt: ")
    assert len(run_dirs(tmp_path)) == 2


def test_a_refused_run_leaves_no_directory(tmp_path):
    done = run_nntrain(*SMOKE, "data.batch_size=0", cwd=tmp_path)
    assert one_error_line(done) == (
        "Error: data.batch_size must be a positive integer, got 0; for example data.batch_size=64."
    )
    assert list(tmp_path.iterdir()) == []  # not even an empty outputs/
    # A run dir of the user's in an empty directory: the directory stays (it did not).
    (tmp_path / "empty").mkdir()
    done = run_nntrain(*SMOKE, "hydra.run.dir=given", "optimizer.lr=-1", cwd=tmp_path / "empty")
    assert done.returncode == 1 and list(tmp_path.iterdir()) == [tmp_path / "empty"]
    assert list((tmp_path / "empty").iterdir()) == []


def test_an_unwritable_run_directory_is_one_sentence(tmp_path):
    done = run_nntrain(*SMOKE, "hydra.run.dir=/proc/nntrain-test", cwd=tmp_path)
    assert one_error_line(done) == (
        "Error: cannot create the run directory /proc/nntrain-test (No such file or directory); "
        "set hydra.run.dir to a folder you can write to."
    )


@pytest.mark.parametrize("command", ["nntrain", "nntrain-eval", "nntrain-predict"])
def test_an_empty_checkpoint_is_one_sentence(command, tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    argument = "resume=empty.pt" if command == "nntrain" else "ckpt=empty.pt"
    extra = ["inputs=empty.pt"] if command == "nntrain-predict" else []
    done = subprocess.run(
        [str(Path(sys.executable).with_name(command)), argument, *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert one_error_line(done) == (
        f"Error: checkpoint {tmp_path}/empty.pt is empty (0 bytes: its writing was cut short); "
        "use another checkpoint, e.g. last.pt or best.pt of the same run."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.pt"]  # nothing written


@pytest.mark.parametrize("folder", ["images[raw]/[/]x", "jörg's photos/ünïcode"])
def test_paths_with_brackets_or_other_letters_are_read_and_printed_as_typed(folder, tmp_path):
    # Hydra's grammar reads neither unquoted: nntrain quotes them for the user, and rich must
    # not take [raw] or [/] for markup when it prints them.
    root = tmp_path / folder
    done = run_nntrain("data=imagefolder", f"data.root={root}", cwd=tmp_path)
    assert one_error_line(done) == (
        f"Error: data.root {root} does not exist; set data.root to a folder laid out as "
        "train/<class>/<image> (val/ and test/ optional, with the same class folders), e.g. "
        "data.root=$HOME/flowers."
    )


def test_ctrl_c_while_starting_is_one_line_and_leaves_nothing(tmp_path):
    process = start(*SMOKE, cwd=tmp_path)
    assert process.stdout is not None
    process.stdout.readline()  # the config tree's first line: composed, nothing trained yet
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert one_error_line((130, stderr)).startswith("Error: interrupted by SIGINT")
    assert list(tmp_path.iterdir()) == []  # no run dir, no train.log, no outputs/


# nntrain with SIGINT delivered to itself as its final test starts: a real signal, timed exactly.
CTRL_C_IN_THE_TEST = """
import os, signal, sys
from nntrain.training.trainer import Trainer
original = Trainer.test
def test(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    return original(self, *args, **kwargs)
Trainer.test = test
from nntrain.commands.train import main
sys.argv = ["nntrain", *sys.argv[1:]]
main()
"""


def test_ctrl_c_during_the_final_test_keeps_the_run_finishable(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_IN_THE_TEST, *SMOKE, "hydra.run.dir=run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 130, done.stderr
    assert one_error_line(done) == (
        "Error: interrupted by SIGINT; the checkpoints in run are saved: finish the run (its "
        "test) with nntrain resume=run"
    )
    status = json.loads((tmp_path / "run/status.json").read_text())
    assert status["status"] == "interrupted" and not (tmp_path / "run/metrics.json").exists()
    finished = run_nntrain("resume=run", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert json.loads((tmp_path / "run/metrics.json").read_text())["epochs_run"] == 2
    assert json.loads((tmp_path / "run/status.json").read_text())["status"] == "ok"


# A sweep whose second job gets Ctrl-C (SIGINT sent to itself as that job's first epoch starts).
CTRL_C_IN_THE_SECOND_JOB = """
import os, signal, sys
from nntrain.training.trainer import Trainer
original, fits = Trainer._start_epoch, []
def start_epoch(self, run):
    if run.state.epoch == 0:
        fits.append(1)
    if len(fits) == 2:
        os.kill(os.getpid(), signal.SIGINT)
    return original(self, run)
Trainer._start_epoch = start_epoch
from nntrain.commands.train import main
sys.argv = ["nntrain", *sys.argv[1:]]
main()
"""


def test_ctrl_c_in_a_sweep_still_writes_the_summary_of_the_jobs_that_ran(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_IN_THE_SECOND_JOB, "-m", *SMOKE, "seed=1,2,3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    assert (
        done.stderr.strip()
        .splitlines()[-2]
        .startswith(
            f"Error: interrupted by SIGINT at step 1 (saved to outputs/multirun/{sweep_dir.parent.name}/"
        )
    )
    with (sweep_dir / "summary.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "interrupted")]
    assert "sweep summary" in done.stdout


@contextlib.contextmanager
def mounted(*args: str, target: Path):
    """A mount for the test's life (root only: read-only and full disks cannot be faked)."""
    target.mkdir(exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", *args, str(target)]).returncode != 0:
        pytest.skip("needs root and mount(8) to make a read-only or a full disk")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)])


def test_a_full_disk_at_the_start_is_one_sentence_and_leaves_nothing(tmp_path):
    with mounted("-t", "tmpfs", "-o", "size=128k", "tmpfs", target=tmp_path / "disk") as disk:
        filling = ["dd", "if=/dev/zero", f"of={disk}/filler", "bs=1k", "count=200"]
        subprocess.run(filling, capture_output=True)  # fails at 128k: the disk is full
        done = run_nntrain(*SMOKE, f"hydra.run.dir={disk}/run", cwd=tmp_path)
        assert one_error_line(done) == (
            f"Error: cannot write in {disk}/run (no space left on the disk); free some space and "
            "run the command again."
        )
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_resume_on_a_read_only_disk_is_refused_before_anything(tmp_path):
    assert run_nntrain(*SMOKE, "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    with mounted("--bind", str(tmp_path / "run"), target=tmp_path / "ro") as read_only:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(read_only)]).returncode != 0:
            pytest.skip("cannot remount read-only here")
        done = run_nntrain("resume=ro", cwd=tmp_path)
        assert one_error_line(done) == (
            f"Error: cannot resume {read_only}: the run directory is not writable (a read-only "
            "disk, or another user's files); copy it to a folder you can write to and resume the "
            f"copy, e.g. cp -r {read_only} ~/ro && nntrain resume=~/ro"
        )


def test_a_sweep_owns_a_sweep_directory_given_to_it(tmp_path):
    first = run_nntrain("-m", *SMOKE, "seed=1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = fingerprint(tmp_path / "sweep")
    second = run_nntrain("-m", *SMOKE, "seed=2", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert one_error_line(second) == (
        "Error: hydra.sweep.dir=sweep already holds a sweep or a run; give a new directory (or "
        "leave hydra.sweep.dir out: every sweep gets its own)."
    )
    assert fingerprint(tmp_path / "sweep") == before


def test_a_run_that_is_still_training_cannot_be_resumed_at_the_same_time(tmp_path):
    long_run = ("trainer.max_epochs=1000", "trainer.limit_train_batches=1.0")
    no_stop = ("trainer.early_stopping.patience=null", "hydra.run.dir=run")
    training = start(*SMOKE, *long_run, *no_stop, cwd=tmp_path)
    try:
        assert training.stdout is not None
        while " 2/1000 " not in training.stdout.readline():  # last.pt exists from epoch 1 on
            assert training.poll() is None, training.communicate()
        done = run_nntrain("resume=run", cwd=tmp_path)
        assert one_error_line(done) == (
            f"Error: cannot resume {tmp_path}/run: another nntrain process is training that run "
            "right now; let it finish (or stop it with Ctrl-C), then resume."
        )
    finally:
        training.kill()  # kill -9: the kernel releases its lock, and the run resumes
        training.communicate()
    resumed = run_nntrain("resume=run", "trainer.max_epochs=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


def test_a_message_names_the_key_the_user_typed(tmp_path):
    done = subprocess.run(
        [str(Path(sys.executable).with_name("nntrain-eval")), "ckpt=x.pt", "device=tpu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert one_error_line(done) == (
        "Error: device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'."
    )
    from nntrain.devices import resolve_device
    from nntrain.errors import UserError

    with pytest.raises(UserError) as error:  # a device torch knows, without data: a traceback
        resolve_device("meta", key="device")
    assert str(error.value) == "device must be auto, cpu, cuda, cuda:N or mps, got 'meta'."
    eval_command = str(Path(sys.executable).with_name("nntrain-eval"))
    done = subprocess.run(
        [eval_command, "ckpt=x.pt", "trainer.device=cuda"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert one_error_line(done) == (
        "Error: trainer.device is a training key; nntrain-eval takes device=, e.g. device=cuda."
    )


def test_a_cuda_device_the_machine_lacks_is_named(monkeypatch):
    import torch

    from nntrain.devices import resolve_device
    from nntrain.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(UserError) as error:
        resolve_device("cuda:1")
    assert str(error.value) == (
        "trainer.device=cuda:1 but this machine has 1 CUDA device(s), cuda:0 to cuda:0; use "
        "trainer.device=cuda (the first) or one of those."
    )


def run_command(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name(command)), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("smoke")
    assert run_nntrain(*SMOKE, "hydra.run.dir=run", cwd=cwd).returncode == 0
    return cwd / "run"


def test_eval_names_its_own_keys_and_refuses_a_read_only_run(smoke_run, tmp_path):
    done = run_command("nntrain-eval", f"ckpt={smoke_run}", "batch_size=0", cwd=tmp_path)
    assert one_error_line(done) == (
        "Error: batch_size must be a positive integer or null (the run's data.batch_size), got 0; "
        "for example batch_size=64."
    )
    # A run's checkpoints/ folder names its best.pt too.
    done = run_command("nntrain-eval", f"ckpt={smoke_run}/checkpoints", cwd=tmp_path)
    assert done.returncode == 0 and "test/acc" in done.stdout, done.stderr
    if os.geteuid() != 0:
        smoke_run.chmod(0o555)
        try:
            done = run_command("nntrain-eval", f"ckpt={smoke_run}", cwd=tmp_path)
        finally:
            smoke_run.chmod(0o755)
        assert one_error_line(done).startswith(f"Error: cannot write the results into {smoke_run}")
        return
    # root writes into read-only folders: only a read-only mount shows the check
    with mounted("--bind", str(smoke_run), target=tmp_path / "ro") as read_only:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(read_only)]).returncode != 0:
            pytest.skip("cannot remount read-only here")
        done = run_command("nntrain-eval", f"ckpt={read_only}", cwd=tmp_path)
    assert one_error_line(done).startswith(f"Error: cannot write the results into {read_only}")


def test_predict_refuses_an_output_it_cannot_write_before_any_work(smoke_run, tmp_path):
    (tmp_path / "rows.csv").write_text("x,y\n1,2\n")
    done = run_command(
        "nntrain-predict",
        f"ckpt={smoke_run}",
        "inputs=rows.csv",
        "output=/proc/x.csv",
        cwd=tmp_path,
    )
    assert one_error_line(done) == (
        "Error: cannot write output /proc/x.csv: /proc is not a folder you can write to; give "
        "another path, e.g. output=predictions.csv."
    )


def test_train_log_holds_what_the_terminal_showed(smoke_run):
    log = (smoke_run / "train.log").read_text()
    for shown in ("config", "├── data: digits  batch_size=64", "] epoch  train/loss", "]   2/2 "):
        assert shown in log, shown
    assert "nntrain: run summary" in log and "│ test/acc" in log
    assert log.index("├── data") < log.index("]   1/2 ") < log.index("nntrain: run summary")


def test_missing_extras_name_the_pip_install():
    from hydra.errors import MissingConfigException

    from nntrain.commands.common import describe_config_error

    joblib = MissingConfigException(
        "Could not find 'hydra/launcher/joblib'",
        missing_cfg_file="hydra/launcher/joblib",
        options=["basic", "slurm"],
    )
    assert describe_config_error(joblib) == (
        "hydra/launcher=joblib (parallel local jobs) needs nntrain's `sweep` extra, which is not "
        "installed here; install it with: pip install 'nntrain[sweep]'."
    )
    slurm = MissingConfigException(
        "In 'hydra/launcher/slurm': Could not load 'hydra/launcher/submitit_slurm'.",
        missing_cfg_file="hydra/launcher/slurm",
    )
    assert describe_config_error(slurm).endswith("pip install 'nntrain[cluster]'.")


def test_a_checkpoint_write_cut_short_leaves_no_temporary_for_long(tmp_path):
    from functools import partial

    import torch

    from nntrain.optim.schedules import constant
    from nntrain.training.trainer import Trainer
    from tests.helpers import BlobData

    stale = tmp_path / "checkpoints" / ".last.pt.k3j2h1.tmp"  # as files.write_atomically names it
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"PK\x03\x04 half a zip")
    trainer = Trainer(device="cpu", max_epochs=1, progress=False, report_images=False)
    model = torch.nn.Linear(4, 3)
    trainer.fit(model, BlobData(), partial(torch.optim.SGD, lr=0.1), partial(constant), tmp_path)
    assert sorted(p.name for p in stale.parent.iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optimizer.betas=[0.9]"],
            "optimizer.betas must be two numbers in [0, 1), got [0.9]; for example "
            "optimizer.betas=[0.9,0.999].",
        ),
        (
            ["model.hidden=512"],
            "model.hidden must be a list of positive integers, got 512; for example "
            "model.hidden=[256,128] (one layer: model.hidden=[512]).",
        ),
        (
            ["optimizer.lr=abc"],
            "optimizer.lr must be a number > 0, got 'abc'; for example optimizer.lr=1e-3.",
        ),
        (
            ["optimizer.lr=0"],
            "optimizer.lr must be a number > 0, got 0; for example optimizer.lr=1e-3.",
        ),
        (
            ["data=moons", "trainer.test_time_augmentation=flip"],
            "trainer.test_time_augmentation=flip needs images, and this data has 1-D inputs "
            "(2,); set trainer.test_time_augmentation=none.",
        ),
        (
            ["model=resnet18", "model.small_input=maybe"],
            "model.small_input must be true, false or null (auto), got 'maybe'.",
        ),
        # Beyond the list (own hostile inputs):
        (
            ["optimizer=sgd", "optimizer.momentum=2"],
            "optimizer.momentum must be a number in [0, 1), got 2; for example "
            "optimizer.momentum=0.9.",
        ),
        (
            ["hydra.run.dir="],
            "hydra.run.dir is empty; give the run a folder of its own, e.g. "
            "hydra.run.dir=runs/first (or leave hydra.run.dir out: every run gets its own under "
            "outputs/).",
        ),
        (
            ["optimizer.lr=1e-3,3e-3"],
            "optimizer.lr=1e-3,3e-3 has several values: to sweep over them add -m (nntrain -m "
            "optimizer.lr=1e-3,3e-3); for a list write optimizer.lr=[1e-3,3e-3], for text with "
            "commas optimizer.lr='1e-3,3e-3'.",
        ),
        (
            ["-m", "seed=1,2", "hydra.sweep.dir=/proc/nntrain-sweep"],
            "cannot create the sweep directory /proc/nntrain-sweep (No such file or directory); "
            "set hydra.sweep.dir to a folder you can write to.",
        ),
    ],
)
def test_values_are_checked_before_any_training(overrides, message, tmp_path):
    done = run_nntrain(*SMOKE, *overrides, cwd=tmp_path)
    assert one_error_line(done) == f"Error: {message}"
    assert "train/loss" not in done.stdout and run_dirs(tmp_path) == []


def test_a_one_class_image_folder_is_refused(tmp_path):
    from tests.test_folder import make_split

    make_split(tmp_path / "photos" / "train", colours={"cat": (200, 50, 50)})
    done = run_nntrain(
        *SMOKE, "data=imagefolder", "data.root=photos", "data.num_workers=0", cwd=tmp_path
    )
    assert one_error_line(done) == (
        "Error: the data has 1 class (cat); a classifier needs at least two: add the images of "
        "another class (for an image folder, another sub-folder of train/)."
    )


def test_eval_has_its_own_help_and_help_survives_a_closed_pipe(tmp_path):
    done = run_command("nntrain-eval", "--help", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("nntrain-eval: score a checkpoint")
    assert "ckpt=PATH" in done.stdout and "model=" not in done.stdout
    piped = subprocess.run(
        f"{Path(sys.executable).with_name('nntrain')} --help | head -1",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.stdout.strip() and "Traceback" not in piped.stderr, piped.stderr


def interrupt_after_start(command: str, *args: str, delay: float, cwd: Path) -> tuple[int, str]:
    """Run a console script, send it SIGINT `delay` seconds after nntrain's first line ran (the
    import of nntrain.commands.entry, which Python reports with PYTHONPROFILEIMPORTTIME: before it,
    Python itself is starting, and no program handles Ctrl-C there); its exit status and stderr
    without the import-time lines."""
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name(command)), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.rstrip().endswith("| nntrain.commands.entry"):
            break
    else:
        raise AssertionError(f"nntrain.commands.entry was not imported: {''.join(lines)[-3000:]}")
    # The pipe is read on while the command runs: a full pipe would hold it in a write.
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or ()))
    reader.start()
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    reader.join(timeout=120)
    return process.returncode, "".join(x for x in lines if not x.startswith("import time:"))


# From nntrain's first line on (0 s) through the imports of torch and Hydra, loading the
# checkpoint, scoring and writing, to Python's exit: the run may also finish first, and it
# must never end in a traceback.
@pytest.mark.parametrize("delay", [0.0, 0.02, 0.2, 0.6, 1.2, 2.5])
@pytest.mark.parametrize("command", ["nntrain-eval", "nntrain-predict"])
def test_ctrl_c_in_eval_and_predict_is_one_line(command, delay, smoke_run, tmp_path):
    args = [f"ckpt={smoke_run}"] + ([f"inputs={smoke_run}"] if command == "nntrain-predict" else [])
    returncode, stderr = interrupt_after_start(command, *args, delay=delay, cwd=tmp_path)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    if returncode != 0:
        assert returncode == 130, stderr
        assert one_error_line((130, stderr)) == "Error: interrupted by SIGINT."


def test_removing_an_unsaved_run_takes_only_the_folders_nntrain_made(tmp_path):
    from nntrain import runs

    default = tmp_path / "outputs" / "2026-11-30" / "10-00-00-mlp-digits"
    chosen = tmp_path / "work" / "run"
    for run_dir in (default, chosen):
        (run_dir / "tb").mkdir(parents=True)
        (run_dir / "train.log").write_text("started\n")
        runs.remove_unsaved(run_dir)
    # outputs/<day>/<run> went whole; of work/run only run (work is the user's folder).
    assert list(tmp_path.iterdir()) == [tmp_path / "work"]
    assert list((tmp_path / "work").iterdir()) == []


def test_a_run_dir_of_the_users_with_files_is_refused_and_an_empty_one_kept(tmp_path):
    # A failed start removes what the run wrote (train.log, tb/, ...): in a folder of the
    # user's those names could be their own files, and the folder itself went too.
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "notes.txt").write_text("mine")
    (tmp_path / "train.log").write_text("my log")
    done = run_nntrain(*SMOKE, "hydra.run.dir=.", "data.batch_size=0", cwd=tmp_path)
    assert one_error_line(done) == (
        "Error: hydra.run.dir=. holds other files (tb, train.log); give a new or empty folder "
        "(or leave hydra.run.dir out: every run gets its own under outputs/)."
    )
    assert (tmp_path / "tb" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "train.log").read_text() == "my log"
    (tmp_path / "empty").mkdir()
    done = run_nntrain(*SMOKE, "hydra.run.dir=.", "data.batch_size=0", cwd=tmp_path / "empty")
    assert done.returncode == 1 and (tmp_path / "empty").is_dir()
    assert list((tmp_path / "empty").iterdir()) == []
