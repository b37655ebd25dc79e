"""Shared helpers: compose the real config tree, run the CLI as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict


def compose_config(*overrides: str) -> DictConfig:
    """The config `nntrain <overrides>` would run with (Hydra's own node removed, as in a job)."""
    with initialize_config_module("nntrain.configs", version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # as in a real job: ${hydra:...} resolves
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_nntrain(
    *args: str, cwd: Path, timeout: float = 240, module: bool = False, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the installed console script (or python -m nntrain) in a subprocess."""
    if module:
        command = [sys.executable, "-m", "nntrain", *args]
    else:
        command = [str(Path(sys.executable).with_name("nntrain")), *args]
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def single_run_dir(cwd: Path) -> Path:
    """The one run directory under cwd/outputs/<date>/<time>."""
    runs = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir() and p.parent.name != "multirun"]
    assert len(runs) == 1, runs
    return runs[0]


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def wait_until(
    condition: Callable[[], bool],
    process: subprocess.Popen,
    timeout: float = 300,
    every_s: float = 0.05,
) -> None:
    """Wait until condition() holds while a background nntrain process runs; fail with its
    output if it ends first, or after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every_s)
