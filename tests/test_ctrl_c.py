"""Ctrl-C ends every command with one line and no traceback (issue 27): the notice of a graceful
stop is printed once, however many DataLoader workers got the signal too, and a KeyboardInterrupt
that Python swallows or a library turns into another error still ends the command as Ctrl-C.

Each run gets its SIGINT at an exact moment, from inside (a patched function sends it, or waits
for it): none depends on timing or on the machine's load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from PIL import Image

SMOKE = ("trainer=debug", "trainer.report_images=false")
NOTICE = "SIGINT: finishing this step, then saving last.pt (press Ctrl-C again to quit at once)."


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`nntrain <args>` run by `script` (which patches nntrain first), in a session of its own:
    os.killpg(0, SIGINT) in it is the terminal's Ctrl-C, reaching every process of the command."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def write_image_folder(root: Path, per_class: int = 40) -> None:
    for index, (name, grey) in enumerate((("dark", 40), ("light", 200))):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12, 12), (grey + i, grey, grey - index)).save(folder / f"{i}.png")


# Training on an image folder with two DataLoader workers: when the first training batch has
# come from the workers (they are alive until the epoch's loader is done), the script says so on
# stdout and waits; the test then sends SIGINT to the whole process group, as Ctrl-C in a
# terminal does, and the script carries on once the training process has seen it.
CTRL_C_WHILE_WORKERS_LOAD = """
import signal, sys, time
from nntrain.data.image_folder import FolderLoader

original = FolderLoader.__iter__

def iterate(self):
    for index, batch in enumerate(original(self)):
        yield batch
        if self.shuffle and self.epoch == 0 and index == 0:
            print("training started", flush=True)
            handler = signal.getsignal(signal.SIGINT)  # the training's StopRequests
            deadline = time.monotonic() + 120
            while getattr(handler, "__self__").signum is None and time.monotonic() < deadline:
                time.sleep(0.01)

FolderLoader.__iter__ = iterate
from nntrain.commands.train import main
sys.argv = ["nntrain", *sys.argv[1:]]
main()
"""


def test_ctrl_c_with_dataloader_workers_prints_the_notice_once(tmp_path):
    write_image_folder(tmp_path / "photos")
    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_WHILE_WORKERS_LOAD, *SMOKE, "data=imagefolder",
         "data.root=photos", "data.num_workers=2", "data.batch_size=4", "data.image_size=8",
         "model=cnn", "hydra.run.dir=run"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its process group: the command and its workers only
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "training started":
            break
    else:
        raise AssertionError(process.communicate()[1])
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the training process and both workers
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert [line for line in stderr.splitlines() if line.startswith("SIGINT")] == [NOTICE]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()  # the graceful stop saved


# A KeyboardInterrupt that a library turns into another error: here the data's construction
# gets Ctrl-C (sent to the process itself) and fails with a RecursionError, as numpy's lazy
# submodules do when the interrupt lands inside their import.
CTRL_C_BECOMES_ANOTHER_ERROR = """
import os, signal, sys, time
import nntrain.commands.train as train

original = train.build

def build(node, group, **kwargs):
    if group == "data":
        try:
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the interrupt is raised in here
                time.sleep(0.001)
        except KeyboardInterrupt:
            raise RecursionError("maximum recursion depth exceeded") from None
    return original(node, group, **kwargs)

train.build = build
sys.argv = ["nntrain", *sys.argv[1:]]
train.main()
"""

# A KeyboardInterrupt raised in a callback that Python cannot raise from (a weakref's, as in
# the import system's module locks): Python prints "Exception ignored in ..." and goes on.
CTRL_C_IN_A_CALLBACK = """
import sys, time, weakref
import nntrain.commands.train as train

original = train.build

def interrupt(reference):
    raise KeyboardInterrupt

class Lock:
    pass

def build(node, group, **kwargs):
    if group == "data":
        lock = Lock()
        reference = weakref.ref(lock, interrupt)
        del lock  # the callback runs, and its KeyboardInterrupt is swallowed
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the interrupt delivered again lands in here
            time.sleep(0.001)
    return original(node, group, **kwargs)

train.build = build
sys.argv = ["nntrain", *sys.argv[1:]]
train.main()
"""


def test_ctrl_c_that_became_another_error_is_one_line(tmp_path):
    done = run_script(CTRL_C_BECOMES_ANOTHER_ERROR, *SMOKE, cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == (
        "Error: interrupted by SIGINT before the first checkpoint; nothing was saved."
    )
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_ctrl_c_swallowed_in_a_callback_still_ends_the_command(tmp_path):
    done = run_script(CTRL_C_IN_A_CALLBACK, *SMOKE, cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == (
        "Error: interrupted by SIGINT before the first checkpoint; nothing was saved."
    )
    assert list(tmp_path.iterdir()) == []
