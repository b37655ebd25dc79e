"""Crash-safe checkpoints and exact resume, as a user runs them: real subprocesses, real signals."""

import errno
import random
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml

import nntrain.checkpoint
from nntrain.checkpoint import load_checkpoint, save_checkpoint
from nntrain.errors import UserError
from nntrain.optim.schedules import constant, warmup_cosine
from nntrain.training.signals import TrainingInterrupted
from nntrain.training.trainer import NonFiniteLoss, Trainer
from tests.conftest import compose_config, read_metrics, run_nntrain
from tests.helpers import BlobData
from tests.resume_helpers import fit

# CNN on digits: slow enough (about 0.6 s per epoch of 19 steps) to kill it mid-epoch.
DETERMINISTIC_RUN = [
    "model=cnn",
    "trainer.max_epochs=3",
    "trainer.checkpoint.every_n_steps=4",
    "trainer.deterministic=true",
    "trainer.early_stopping.patience=null",
]


def start_nntrain(*args: str, cwd: Path) -> subprocess.Popen:
    command = [str(Path(sys.executable).with_name("nntrain")), *args]
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_checkpoint(path: Path, ready, process: subprocess.Popen, timeout: float = 120) -> dict:
    """Poll path until its checkpoint satisfies ready(checkpoint)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before the checkpoint was seen"
        if path.is_file():
            checkpoint = torch.load(path, weights_only=True)
            if ready(checkpoint):
                return checkpoint
        time.sleep(0.005)
    raise AssertionError(f"no such checkpoint in {timeout} s")


def model_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_sigkill_mid_epoch_then_resume_gives_bit_identical_weights(tmp_path):
    straight = run_nntrain(*DETERMINISTIC_RUN, "hydra.run.dir=straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    process = start_nntrain(*DETERMINISTIC_RUN, "hydra.run.dir=killed", cwd=tmp_path)
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    seen = wait_for_checkpoint(last, lambda c: c["epoch"] >= 1 and c["batches_done"] > 0, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    saved = load_checkpoint(last)
    assert saved["batches_done"] > 0 and saved["step"] >= seen["step"]  # the kill was mid-epoch

    resumed = run_nntrain("resume=killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at epoch {saved['epoch'] + 1}, batch {saved['batches_done']}" in resumed.stdout
    a, b = model_weights(tmp_path / "straight"), model_weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = read_metrics(tmp_path / "killed")
    assert metrics["epochs_run"] == 3 and metrics == {
        **read_metrics(tmp_path / "straight"),
        "train/samples_per_sec": metrics["train/samples_per_sec"],
    }


def test_sigterm_saves_prints_the_resume_command_and_exits_143(tmp_path):
    process = start_nntrain("model=cnn", "trainer.max_epochs=30", "hydra.run.dir=run", cwd=tmp_path)
    wait_for_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", lambda c: True, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (
        f"Error: interrupted by SIGTERM at step {saved['step']} (saved to run/checkpoints/last.pt); resume with:\n  nntrain resume=run"
        in err
    )
    assert "Traceback" not in err
    resumed = run_nntrain("resume=run", "trainer.max_epochs=3", cwd=tmp_path)  # may change
    assert resumed.returncode == 0, resumed.stderr
    assert read_metrics(tmp_path / "run")["epochs_run"] == 3


def test_resume_latest_and_a_moved_run_directory(tmp_path):
    assert run_nntrain("trainer=debug", "hydra.run.dir=outputs/old", cwd=tmp_path).returncode == 0
    assert (
        run_nntrain(
            "trainer=debug", "data=moons", "hydra.run.dir=outputs/new", cwd=tmp_path
        ).returncode
        == 0
    )
    latest = run_nntrain("resume=latest", "trainer.max_epochs=3", cwd=tmp_path)
    assert latest.returncode == 0, latest.stderr
    assert read_metrics(tmp_path / "outputs" / "new")["epochs_run"] == 3
    assert "├── data: moons  n_samples=1000" in latest.stdout  # the run's own config, replayed
    assert read_metrics(tmp_path / "outputs" / "old")["epochs_run"] == 2

    elsewhere = tmp_path / "disk2" / "copied"
    shutil.copytree(tmp_path / "outputs" / "old", elsewhere)
    shutil.rmtree(tmp_path / "outputs" / "old")
    moved = run_nntrain("resume=copied", "trainer.max_epochs=3", cwd=tmp_path / "disk2")
    assert moved.returncode == 0, moved.stderr
    assert read_metrics(elsewhere)["epochs_run"] == 3
    assert any(elsewhere.glob("events.out.tfevents.*"))  # its TensorBoard events, in its dir
    assert not (tmp_path / "disk2" / "outputs").exists()


def test_a_run_copied_without_its_hidden_hydra_folder_resumes_with_its_own_overrides(tmp_path):
    """`cp -r run/* elsewhere/` leaves .hydra/ behind: the resume replayed no overrides, so the
    run's config was compared with the defaults and refused. Its checkpoint keeps them."""
    from nntrain.launch.resume_command_line import rewrite_argv

    run_dir = tmp_path / "elsewhere"
    save_checkpoint(
        {"config": "name: x\n", "optimizer": {}, "epoch": 2, "model": {},
         "overrides": ["data=moons", "model.hidden=[8]", "optimizer.fused=false"]},
        run_dir / "checkpoints" / "last.pt",
    )  # fmt: skip
    argv = rewrite_argv([f"resume={run_dir}", "trainer.max_epochs=3"])
    assert argv[:4] == [
        "data=moons", "model.hidden=[8]", "trainer.fused_optimizer=false", "trainer.max_epochs=3"
    ]  # fmt: skip


def test_a_resume_in_place_refuses_a_run_directory_elsewhere(tmp_path, monkeypatch):
    """hydra.run.dir=elsewhere was silently ignored: the run went on in its own directory."""
    from nntrain.launch.resume_command_line import rewrite_argv

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"not read before the check")
    with pytest.raises(UserError) as error:
        rewrite_argv(["resume=run", "hydra.run.dir=elsewhere"])
    assert str(error.value) == (
        f"resume=run continues the run in its own directory, {tmp_path / 'run'}; "
        "hydra.run.dir=elsewhere cannot move it there: drop hydra.run.dir, or copy the run "
        f"first (cp -r {tmp_path / 'run'} elsewhere) and resume the copy (nntrain "
        "resume=elsewhere)."
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "run"]


def test_resume_refuses_a_different_model_and_lists_the_keys(tmp_path):
    assert run_nntrain("trainer=debug", "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    done = run_nntrain("resume=run", "model.hidden=[32]", "optimizer.lr=0.01", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: cannot resume {tmp_path}/run/checkpoints/last.pt: the config differs from the run's in "
        "model.hidden (run: [512, 256, 128], now: [32]); optimizer.lr (run: 0.001, now: 0.01); "
        "resume with the run's values (drop those overrides), or start a new run without resume=. "
        "Trainer settings such as trainer.max_epochs may change."
    )


def test_a_run_started_before_optimizer_keys_moved_resumes_with_them(tmp_path):
    """optimizer.fused and optimizer.backbone_lr_scale moved to trainer.fused_optimizer and
    model.backbone_lr_scale: a run saved with the old keys (in its config and its replayed
    overrides) resumes with the new ones instead of being refused as a different run."""
    assert run_nntrain("trainer=debug", "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    old = yaml.safe_load(state["config"])
    old["optimizer"].update(backbone_lr_scale=0.1, fused=False)  # as the old tree saved it
    del old["trainer"]["fused_optimizer"]
    state["config"] = yaml.safe_dump(old)
    torch.save(state, last)
    overrides = tmp_path / "run" / ".hydra" / "overrides.yaml"
    overrides.write_text(yaml.safe_dump(["trainer=debug", "optimizer.fused=false"]))

    done = run_nntrain("resume=run", "trainer.max_epochs=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_metrics(tmp_path / "run")["epochs_run"] == 3
    resumed = yaml.safe_load(load_checkpoint(last)["config"])
    assert resumed["trainer"]["fused_optimizer"] is False and "fused" not in resumed["optimizer"]


@pytest.mark.parametrize(
    "target,message",
    [
        (
            "nowhere",
            "resume=nowhere: {tmp}/nowhere does not exist; pass a run directory or a checkpoint file.",
        ),
        (
            "empty",
            "resume=empty: {tmp}/empty has no checkpoints/last.pt; pass a run directory that trained at least one checkpoint, or a .pt file.",
        ),
        ("garbage.pt", "checkpoint {tmp}/garbage.pt is damaged or not a checkpoint"),
        (  # its first letter `c` made the unpickler read "onfig" as a reference to code
            "notes.pt",
            "checkpoint {tmp}/notes.pt is damaged or not a checkpoint (torch.save did not "
            "write it); use another checkpoint, e.g. last.pt or best.pt of the same run.",
        ),
        ("truncated.pt", "checkpoint {tmp}/truncated.pt is damaged or not a checkpoint"),
        (
            "evil.pt",
            "checkpoint {tmp}/evil.pt holds objects other than tensors and plain data, so it was not loaded (loading it could run code from the file: it refers to io.open).",
        ),
        (
            "weights.pt",
            "{tmp}/weights.pt cannot be resumed: it lacks the run's config, optimizer state and "
            "epoch, so nntrain's trainer did not write it; resume= takes last.pt or best.pt of an "
            "nntrain run (or its run directory).",
        ),
        (
            "latest",
            "resume=latest found no run with checkpoints/last.pt under {tmp}/outputs; pass the run directory instead, e.g. resume=outputs/2026-11-25/10-00-00-mlp-digits.",
        ),
    ],
)
def test_damaged_or_missing_checkpoints_are_one_clear_message(
    target, message, tmp_path, tiny_checkpoint
):
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.pt").write_bytes(
        bytes(random.Random(0).randrange(256) for _ in range(2000))
    )
    (tmp_path / "notes.pt").write_text("config: see the wiki\n")
    data = tiny_checkpoint.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    write_evil_checkpoint(tmp_path / "evil.pt", tmp_path / "marker")
    # The weights of a checkpoint saved on their own (as a user might export them).
    model = torch.load(tiny_checkpoint, weights_only=True)["model"]
    torch.save({"model": model}, tmp_path / "weights.pt")
    done = run_nntrain(f"resume={target}", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: " + message.format(tmp=tmp_path))
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "marker").exists()


class Payload:
    """Unpickling this calls open(marker, 'w'): it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_evil_checkpoint(path: Path, marker: Path) -> None:
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Payload(marker)}, path)


def test_a_pickled_callable_is_refused_and_never_runs(tmp_path):
    write_evil_checkpoint(tmp_path / "evil.pt", tmp_path / "marker")
    with pytest.raises(UserError, match="holds objects other than tensors and plain data"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "marker").exists()


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    path = tmp_path / "tiny.pt"
    save_checkpoint({"model": {"w": torch.randn(500)}, "epoch": 1}, path)
    return path


def test_a_failed_write_leaves_the_previous_checkpoint_loadable(
    tmp_path, monkeypatch, tiny_checkpoint
):
    before = load_checkpoint(tiny_checkpoint)

    def disk_full(obj, file):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nntrain.checkpoint.torch, "save", disk_full)
    with pytest.raises(UserError) as error:
        save_checkpoint({"model": {"w": torch.zeros(500)}, "epoch": 2}, tiny_checkpoint)
    assert str(error.value) == (
        f"could not write the checkpoint {tiny_checkpoint} (No space left on device); the previous "
        "tiny.pt is intact. Free some disk space, then start the run again."  # no last.pt here
    )
    monkeypatch.undo()
    after = load_checkpoint(tiny_checkpoint)
    assert after["epoch"] == 1 and torch.equal(after["model"]["w"], before["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"]  # no temporary file left behind


def stalling_fit(tmp_path: Path, max_epochs: int, resume: dict | None = None) -> dict:
    """lr = 0: val/loss never improves, so early stopping (patience 2) stops after epoch 3."""
    trainer = Trainer(
        device="cpu", max_epochs=max_epochs, progress=False,
        early_stopping={"monitor": "val/loss", "mode": "min", "patience": 2},
    )  # fmt: skip
    torch.manual_seed(0)
    return trainer.fit(
        torch.nn.Linear(4, 3), BlobData(), partial(torch.optim.SGD, lr=0.0), partial(constant),
        run_dir=tmp_path, resume=resume,
    )  # fmt: skip


def test_resume_keeps_the_early_stopping_state(tmp_path):
    assert stalling_fit(tmp_path / "straight", max_epochs=20)["epochs_run"] == 3
    assert stalling_fit(tmp_path / "cut", max_epochs=2)["epochs_run"] == 2  # one epoch before
    last = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert last["early_stopping"]["wait"] == 1
    assert stalling_fit(tmp_path / "cut", max_epochs=20, resume=last)["epochs_run"] == 3


def scalar_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run as TensorBoard shows it (purged steps left out); the
    timings as their steps only (they measure the machine)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    curves = {}
    for tag in events.Tags()["scalars"]:
        timing = tag.startswith("~speed/")
        curves[tag] = [(e.step, 0.0 if timing else e.value) for e in events.Scalars(tag)]
    return curves


@pytest.mark.parametrize("cut", ["end of epoch 2", "mid-epoch"])
def test_a_resumed_run_keeps_every_point_of_its_tensorboard_curves(cut, tmp_path):
    """A resumed run continues its curves from the checkpoint's step: the points logged at that
    very step (the last epoch's val/loss, the step's train/loss) were trained before the
    checkpoint and stay; those after it are replaced. Every curve equals the straight run's."""
    run = {
        "make_model": lambda: torch.nn.Linear(4, 3),
        "make_data": BlobData,  # 15 steps per epoch
        "optimizer": partial(torch.optim.SGD, lr=0.05),
        "scheduler": partial(constant),
        "log_every_n_steps": 1,
        "early_stopping": {"patience": None},
    }
    fit(tmp_path / "straight", max_epochs=3, **run)
    if cut == "mid-epoch":
        with pytest.raises(TrainingInterrupted):
            fit(tmp_path / "cut", max_epochs=3, stop_at=20, **run)
    else:  # a finished run, continued for one more epoch
        fit(tmp_path / "cut", max_epochs=2, **run)
    last = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert last["step"] == (20 if cut == "mid-epoch" else 30)
    fit(tmp_path / "cut", max_epochs=3, resume=last, **run)
    straight, resumed = scalar_curves(tmp_path / "straight"), scalar_curves(tmp_path / "cut")
    assert [step for step, _ in straight["val/loss"]] == [15, 30, 45]
    for tag in ("val/loss", "val/acc", "train/loss", "~optimizer/lr", "~speed/samples_per_sec"):
        assert resumed[tag] == straight[tag], tag


def test_a_nan_loss_stops_with_a_message_and_saves_no_nan_weights(tmp_path):
    data = BlobData()
    data.splits["train"].inputs[::7] = float("nan")
    trainer = Trainer(device="cpu", max_epochs=3, progress=False, log_every_n_steps=1)
    with pytest.raises(NonFiniteLoss) as error:
        trainer.fit(
            torch.nn.Linear(4, 3),
            data,
            partial(torch.optim.SGD, lr=0.1),
            partial(constant),
            run_dir=tmp_path,
        )
    assert str(error.value) == (
        "the training loss became nan in epoch 1, by optimizer step 1 (checked every "
        "trainer.log_every_n_steps=1 steps); usual causes: a learning rate too high (lower "
        "optimizer.lr), fp16 overflow (use trainer.precision=bf16 or 32), or NaN/Inf in the data; "
        "no checkpoint was saved before it."  # it said last.pt and best.pt kept a state
    )
    assert not (tmp_path / "checkpoints").exists()


def test_a_diverging_run_exits_nonzero_from_the_cli(tmp_path):
    done = run_nntrain(
        "optimizer=sgd",
        "optimizer.lr=1e12",
        "trainer.grad_clip=null",
        "trainer=debug",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "Error: the training loss became" in done.stderr and "lower optimizer.lr" in done.stderr
    assert "Traceback" not in done.stderr


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    import random

    import numpy as np

    from nntrain.training.seeding import capture_rng_state, restore_rng_state

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint({"model": {}, "rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.randn()), torch.randn(3))
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (random.random(), float(np.random.randn()), torch.randn(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_a_second_ctrl_c_quits_at_once(tmp_path):
    # One slow step per epoch (1024 images), so the second Ctrl-C lands while it still runs.
    args = ("model=cnn", "data.batch_size=1024", "trainer.max_epochs=30", "hydra.run.dir=run")
    process = start_nntrain(*args, cwd=tmp_path)
    wait_for_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", lambda c: True, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)  # the first one is handled (a flag is set) before the second arrives
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Stopped at once; last.pt holds the last saved step." in err
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] >= 1  # intact


def test_checkpoints_of_the_flat_layout_name_the_moved_classes(tmp_path):
    """A checkpoint written before the package was grouped into subpackages names the old
    places; loading it points them at the new ones, so eval, predict and resume still work."""
    from hydra.utils import get_object
    from omegaconf import OmegaConf

    config = compose_config("data=cifar10", "scheduler=triangle")
    text = OmegaConf.to_yaml(config, resolve=True)
    old = (
        text.replace("nntrain.training.trainer.", "nntrain.trainer.")
        .replace("nntrain.data.torchvision_sets.", "nntrain.data.vision.")
        .replace("nntrain.optim.schedules.", "nntrain.optim.")
    )
    assert "nntrain.data.vision.TorchvisionData" in old and "nntrain.optim.triangle" in old
    save_checkpoint({"model": {}, "config": old}, tmp_path / "old.pt")
    loaded = OmegaConf.create(load_checkpoint(tmp_path / "old.pt")["config"])
    assert loaded == OmegaConf.create(text)
    for group in ("trainer", "data", "scheduler", "model"):
        assert callable(get_object(loaded[group]._target_))


def test_a_resume_with_more_accumulation_continues_the_schedule_where_its_epoch_is(tmp_path):
    """15 batches an epoch: 15 steps at accumulate_grad_batches=1, 4 at 4. Resumed after 2 of 4
    epochs with 4, the cosine continues at step 8 of 16, not at the saved step 30 (past its end)."""
    run = {
        "make_model": lambda: torch.nn.Linear(4, 3),
        "make_data": BlobData,
        "optimizer": partial(torch.optim.SGD, lr=0.1),
        "scheduler": partial(warmup_cosine, min_lr=0.001),
        "early_stopping": {"monitor": "val/loss", "mode": "min", "patience": None},
    }
    fit(tmp_path / "straight", max_epochs=4, accumulate_grad_batches=4, **run)
    fit(tmp_path / "cut", max_epochs=2, accumulate_grad_batches=1, **run)
    saved = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert saved["step"] == 30
    fit(tmp_path / "cut", max_epochs=4, accumulate_grad_batches=4, resume=saved, **run)
    straight, resumed = (
        load_checkpoint(tmp_path / name / "checkpoints" / "last.pt") for name in ("straight", "cut")
    )
    assert [row["lr"] for row in resumed["history"][2:]] == [
        row["lr"] for row in straight["history"][2:]
    ]
    assert resumed["history"][-1]["lr"] == pytest.approx(0.001)
    assert resumed["scheduler"]["last_epoch"] == 16 and resumed["step"] == 30 + 8
