"""nntrain-lr-find: the learning-rate range test, its files and its suggestion."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nntrain.commands.lr_find import find_lr, train_command
from nntrain.commands.train import run
from nntrain.errors import UserError
from nntrain.models.mlp import MLP
from nntrain.training.lr_finder import RangeSettings, range_test
from nntrain.training.trainer import Trainer
from tests.helpers import BlobData

CPU = ("trainer.device=cpu", "trainer.progress=false", "trainer.report_images=false")


def lr_find_config(*overrides: str) -> DictConfig:
    """The config `nntrain-lr-find <overrides>` runs with (as tests.conftest.compose_config)."""
    with initialize_config_module("nntrain.configs", version_base="1.3"):
        cfg = compose("lr_find", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture(scope="module")
def digits_test(tmp_path_factory):
    """The range test of the default MLP on digits (100 steps), and its run directory."""
    run_dir = tmp_path_factory.mktemp("lr_find")
    return find_lr(lr_find_config(*CPU), run_dir), run_dir


def test_the_suggested_lr_trains_the_digits_mlp_at_least_as_well_as_the_default(
    digits_test, tmp_path
):
    from tests.conftest import compose_config

    test, _ = digits_test
    assert 1e-4 < test.suggestion < 1e-1  # a sane lr for AdamW on this MLP
    # Two epochs (the budget where the lr matters most); best.pt by val/loss, which has no
    # ties (val/acc on 180 samples often has).
    same = (*CPU, "trainer.max_epochs=2", "trainer.early_stopping.monitor=val/loss")
    same = (*same, "trainer.early_stopping.mode=min")
    default = run(compose_config(*same), str(tmp_path / "default"))
    lr = f"{test.suggestion:.2g}"  # as the printed command gives it
    suggested = run(compose_config(*same, f"optimizer.lr={lr}"), str(tmp_path / "suggested"))
    assert suggested["test/acc"] >= default["test/acc"], (lr, suggested, default)
    assert suggested["val/loss"] < default["val/loss"], (lr, suggested, default)


def test_the_lr_grows_exponentially_until_the_loss_diverges(digits_test):
    test, _ = digits_test
    ratios = [b / a for a, b in zip(test.lrs, test.lrs[1:], strict=False)]
    assert test.lrs[0] == pytest.approx(1e-7)
    assert all(r == pytest.approx((10 / 1e-7) ** (1 / 99)) for r in ratios)
    assert len(test.lrs) < 100 and "exceeded 4x its minimum" in test.stopped
    assert test.smoothed[-1] > 4 * min(test.smoothed)
    assert test.suggestion == pytest.approx(test.lrs[test.smoothed.index(min(test.smoothed))] / 10)


def test_the_plot_json_and_tensorboard_are_in_the_run_dir(digits_test):
    test, run_dir = digits_test
    saved = json.loads((run_dir / "lr_find.json").read_text())
    assert saved["suggestion"] == test.suggestion and saved["losses"] == test.losses
    assert saved["rule"] == "minimum of the smoothed loss / 10"
    assert (run_dir / "lr_find.png").stat().st_size > 10_000
    events = EventAccumulator(str(run_dir))
    events.Reload()
    losses = [event.value for event in events.Scalars("lr_find/loss")]
    assert losses == pytest.approx(test.losses, rel=1e-6)
    assert events.Tags()["images"] == ["lr_find"]


def test_the_model_is_left_with_its_initial_weights(tmp_path):
    data = BlobData(n=200)
    model = MLP(input_shape=(4,), num_classes=3, hidden=[16], dropout=0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(device="cpu", progress=False)
    test = range_test(
        trainer, model, data, partial(torch.optim.SGD, lr=0.1), RangeSettings(steps=20)
    )
    assert len(test.losses) >= 3 and math.isfinite(test.suggestion)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_printed_command_replaces_only_the_lr():
    command = train_command(
        ["model=cnn", "data=digits", "optimizer.lr=0.1", "lr_find.steps=50", "name=a b"], 0.00312
    )
    assert command == "nntrain model=cnn data=digits 'name=a b' optimizer.lr=0.0031"


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"steps": 5}, "lr_find.steps must be an integer >= 10, got 5; for example lr_find.steps=100."),
        (
            {"min_lr": 1.0, "max_lr": 0.1},
            "lr_find.min_lr (1.0) must be below lr_find.max_lr (0.1).",
        ),
        ({"divergence": 1}, "lr_find.divergence must be a number > 1, got 1; for example lr_find.divergence=4.0."),
    ],
)
def test_bad_settings_are_one_sentence(settings, message):
    with pytest.raises(UserError) as raised:
        RangeSettings(**settings)
    assert str(raised.value) == message


def test_cli_refuses_a_bad_max_lr_and_leaves_no_run_dir(tmp_path):
    script = str(Path(sys.executable).with_name("nntrain-lr-find"))
    done = subprocess.run(
        [script, "data=moons", "lr_find.max_lr=-1"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "Error: lr_find.max_lr must be a number > 0, got -1; for example lr_find.max_lr=10.0."
    )
    assert list(tmp_path.iterdir()) == []  # not even an empty outputs/


def test_the_figure_plots_the_losses_against_the_lrs(digits_test):
    from nntrain.reporting.metric_figures import lr_find_figure

    test, _ = digits_test
    picture = lr_find_figure(test.lrs, test.losses, test.smoothed, test.suggestion, test.rule)
    assert picture.data["smoothed"][:, 0].tolist() == pytest.approx(test.lrs)
    assert picture.data["smoothed"][:, 1].tolist() == pytest.approx(test.smoothed)
    assert picture.data["suggestion"] == test.suggestion


def test_nntrain_help_points_to_the_new_commands_and_keys():
    """`nntrain --help` prints configs/hydra/default.yaml's help footer (tests/test_cli.py runs it)."""
    from tests.conftest import compose_config

    with initialize_config_module("nntrain.configs", version_base="1.3"):
        footer = compose("train", return_hydra_config=True).hydra.help.footer
    for hint in (
        "nntrain-lr-find",
        "nntrain-export ckpt=",
        "trainer.overfit_batches=2",
        "data.class_weights=balanced",
    ):
        assert hint in footer, hint
    assert compose_config().trainer.overfit_batches == 0


def test_cli_refuses_lr_zero_in_one_sentence_and_leaves_nothing(tmp_path):
    # optimizer.lr is the reference the range test keeps each parameter group's ratio to.
    script = str(Path(sys.executable).with_name("nntrain-lr-find"))
    done = subprocess.run(
        [script, "data=moons", "optimizer.lr=0"], cwd=tmp_path, capture_output=True, text=True
    )
    assert (done.returncode, done.stderr.strip()) == (
        1,
        "Error: optimizer.lr must be a number > 0, got 0; for example optimizer.lr=1e-3.",
    )
    assert list(tmp_path.iterdir()) == []
