"""Libraries' INFO lines stay out of nntrain's output and train.log (issue 27): torch's
"FakeTensor cache stats" at exit, matplotlib's "generated new fontManager"; nntrain's own lines,
and every library's warnings, stay in."""

from __future__ import annotations

import logging
import os

import pytest

from nntrain.reporting.console import ConsoleHandler, keep_library_chatter_out
from tests.conftest import run_nntrain, single_run_dir


@pytest.fixture
def run_logging(tmp_path):
    """The root logger as Hydra's job logging sets it up for a run (nntrain.yaml): INFO, the
    console handler, then train.log's file handler."""
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    file = logging.FileHandler(tmp_path / "train.log")
    root.handlers[:] = [ConsoleHandler(), file]
    root.setLevel(logging.INFO)
    yield tmp_path / "train.log"
    file.close()
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])  # (also clears the loggers' cached levels, whatever a test set)


def test_torchs_fake_tensor_stats_at_exit_stay_out_of_the_output(run_logging, capsys, monkeypatch):
    from torch._subclasses import fake_tensor

    # What a torch logger's level set by someone (here: INFO, propagating to the root logger,
    # as the leak had it) lets through: torch's atexit dump of its FakeTensor cache counters.
    for name in ("torch", "torch._subclasses.fake_tensor"):
        torch_logger = logging.getLogger(name)
        monkeypatch.setattr(torch_logger, "propagate", True)
        monkeypatch.setattr(torch_logger, "level", logging.INFO if name == "torch" else 0)
        monkeypatch.setattr(torch_logger, "handlers", [])
    logging.getLogger().manager._clear_cache()  # the levels just set apply at once
    logging.getLogger("nntrain").info("epoch 1/1 done")
    fake_tensor.dump_cache_stats()
    logging.getLogger("torch._subclasses.fake_tensor").warning("a warning of torch's")
    printed = capsys.readouterr().out
    logged = run_logging.read_text()
    for text in (printed, logged):
        assert "FakeTensor cache stats" not in text and "cache_hits" not in text, text
        assert "epoch 1/1 done" in text and "a warning of torch's" in text, text


def test_the_users_own_info_lines_pass():
    user = logging.getLogger("mynet").makeRecord(
        "mynet", logging.INFO, os.path.abspath("code/mynet.py"), 3, "built", (), None
    )
    library = logging.getLogger("matplotlib.font_manager").makeRecord(
        "matplotlib.font_manager", logging.INFO, logging.__file__, 1, "generated", (), None
    )
    assert keep_library_chatter_out(user) and not keep_library_chatter_out(library)


def test_a_run_prints_no_font_cache_line(tmp_path):
    # A new matplotlib config folder: the first figure builds its font cache and says so at INFO.
    done = run_nntrain("trainer=debug", cwd=tmp_path, env={"MPLCONFIGDIR": str(tmp_path / "mpl")})
    assert done.returncode == 0, done.stderr
    log = (single_run_dir(tmp_path) / "train.log").read_text()
    for text in (done.stdout, log):
        assert "fontManager" not in text, text
        assert "figures in" in text and "test with best.pt" in text, text
