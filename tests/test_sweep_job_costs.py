"""What a sweep job costs beside its training: the garbage collector kept off the imports, YAML
read by libyaml, a sweep's keys read once (nntrain/launch/job_process.py, files.load_yaml,
reporting/run_names.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from nntrain import files
from nntrain.reporting.run_names import swept_keys

FREEZE_CHECK = textwrap.dedent(
    """
    import gc, json, sys, weakref

    class Cycle:
        pass

    garbage = Cycle()
    garbage.me = garbage  # only the cyclic collector frees it
    gone = weakref.ref(garbage)
    del garbage
    gc.disable()  # nothing but keep_collector_off_imports collects it

    from nntrain.launch.job_process import keep_collector_off_imports

    first, again = keep_collector_off_imports(), keep_collector_off_imports()
    json.dump({
        "first": first,
        "again": again,
        "frozen": gc.get_freeze_count(),
        "garbage_freed": gone() is None,
        "dynamo": "torch._dynamo" in sys.modules,
    }, sys.stdout)
    """
)


def test_a_sweep_process_freezes_its_imports_once_and_frees_its_garbage_first():
    import json

    done = subprocess.run(
        [sys.executable, "-c", FREEZE_CHECK], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    assert result["first"] is True and result["again"] is False
    # torch and torch._dynamo (which torch.optim imports on an optimizer's first use) are in.
    assert result["dynamo"] is True
    assert result["frozen"] > 100_000
    assert result["garbage_freed"] is True  # collected before the freeze, not kept for good


def test_yaml_is_read_as_safe_load_reads_it(tmp_path):
    text = textwrap.dedent(
        """
        name: mlp-digits
        optimizer: {lr: 1e-3, weight_decay: 0.01, betas: [0.9, 0.999]}
        trainer: {max_epochs: 10, device: auto, compile: null, amp: true}
        hydra: {overrides: {task: ['optimizer.lr=0.001,0.003', 'model=mlp,cnn']}}
        when: 2026-12-07
        """
    )
    assert files.load_yaml(text) == yaml.safe_load(text)
    assert files.load_yaml(text)["optimizer"]["lr"] == "1e-3"  # YAML 1.1, as Hydra writes it
    with pytest.raises(yaml.YAMLError):  # no Python objects from a file
        files.load_yaml("!!python/object/apply:os.system ['true']")


def test_a_sweeps_keys_are_read_again_when_its_multirun_yaml_changes(tmp_path):
    multirun = tmp_path / "multirun.yaml"

    def write(task: list[str], stamp_s: int) -> None:
        multirun.write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}}))
        os.utime(multirun, (stamp_s, stamp_s))

    write(["optimizer.lr=0.001,0.003", "seed=1"], 1_000_000)
    assert swept_keys(tmp_path) == ["optimizer.lr"]
    assert swept_keys(tmp_path) == ["optimizer.lr"]  # read once
    write(["optimizer.lr=0.001", "model=mlp,cnn", "seed=1,2"], 1_000_100)
    assert swept_keys(tmp_path) == ["model", "seed"]
    multirun.unlink()
    assert swept_keys(tmp_path) == []
    assert swept_keys(Path(tmp_path / "nowhere")) == []


def test_the_sweeps_own_process_writes_its_summary_without_importing_torch(tmp_path):
    """The sweeper's process never needs torch (its jobs do): importing it for the HParams
    columns at a search's end cost 1.3 s of every search's wall time."""
    check = (
        "import sys; from pathlib import Path; "
        "from nntrain.reporting.sweep_summary import write_sweep_experiment; "
        f"assert write_sweep_experiment(Path({str(tmp_path)!r}), []) is None; "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
