"""Values of the optimizer, scheduler, trainer and lr finder typed wrongly, and a user's own
model that breaks the contract (docs/pages/your-own-model.md): one sentence, exit status 1, no
traceback, no run directory left behind."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from nntrain.training.lr_finder import RangeSettings
from tests.conftest import run_nntrain

MODELS = """
import math
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, input_shape, num_classes, outputs=None):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), outputs or num_classes)
        )

    def forward(self, x):
        return self.layers(x)


class Pair(Net):
    def forward(self, x):
        return self.layers(x), x


class Detached(Net):
    def forward(self, x):
        return self.layers(x).detach()


class Labels(Net):
    def forward(self, x):
        return self.layers(x).argmax(1, keepdim=True).expand(-1, 10)


class BuffersOnly(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.register_buffer("w", torch.randn(math.prod(input_shape), num_classes))

    def forward(self, x):
        return x.flatten(1) @ self.w


class Frozen(Net):
    def __init__(self, input_shape, num_classes):
        super().__init__(input_shape, num_classes)
        self.requires_grad_(False)


class NotAModule:
    def __init__(self, input_shape, num_classes):
        pass


class RaisesWhenTraining(Net):
    def forward(self, x):
        if self.training:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return super().forward(x)
"""


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("code")
    (folder / "mymodels.py").write_text(MODELS)
    return folder


def refused(done, message: str, cwd: Path) -> None:
    """The run ended with exactly `Error: message`, status 1, no traceback and no run dir."""
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"Error: {message}"
    assert "Traceback" not in done.stderr + done.stdout
    assert not (cwd / "outputs").exists() or not any((cwd / "outputs").rglob("*.json"))
    assert not list(cwd.glob("outputs/*/*"))


OWN = "manual: docs/pages/your-own-model.md"


@pytest.mark.parametrize(
    "target,extra,message",
    [
        (
            "Net",
            ("+model.outputs=13",),
            "the model from mymodels.Net returns shape (2, 13) for a batch of 2 inputs of shape "
            "(1, 8, 8), and nntrain needs one tensor of logits of shape (batch, 10) (the data has "
            f"10 classes); make forward return that ({OWN}).",
        ),
        (
            "Pair",
            (),
            "the model from mymodels.Pair returns a tuple, and nntrain needs one tensor of logits "
            "of shape (batch, 10) (the data has 10 classes); make forward return that "
            f"({OWN}).",
        ),
        (
            "Labels",
            (),
            "the model from mymodels.Labels returns torch.int64 values, and the loss needs "
            f"floating-point logits; return them before any argmax or rounding ({OWN}).",
        ),
        (
            "Detached",
            (),
            "the output of the model from mymodels.Detached does not depend on its trainable "
            "parameters (forward detaches it or runs under torch.no_grad), so no gradient would "
            "reach them; return the logits as computed.",
        ),
        (
            "BuffersOnly",
            (),
            "the model from mymodels.BuffersOnly has no parameters (buffers are not trained), "
            f"so there is nothing to train; give it at least one nn.Parameter or layer ({OWN}).",
        ),
        (
            "Frozen",
            (),
            "every parameter of the model from mymodels.Frozen is frozen (requires_grad=False), "
            "so there is nothing to train; leave at least one trainable.",
        ),
        (
            "NotAModule",
            (),
            "the model from mymodels.NotAModule is a NotAModule, not a torch.nn.Module; "
            "model._target_ must name an nn.Module class or a function returning one "
            f"({OWN}).",
        ),
    ],
    ids=["too many outputs", "tuple", "labels", "detached", "buffers only", "frozen", "no module"],
)
def test_a_model_breaking_the_contract_is_refused_before_training(
    code, tmp_path, target, extra, message
):
    done = run_nntrain(
        "trainer=debug",
        f"model._target_=mymodels.{target}",
        "~model.hidden",
        "~model.dropout",
        *extra,
        cwd=tmp_path,
        env={"PYTHONPATH": str(code)},
    )
    refused(done, message, tmp_path)


def test_a_model_meeting_the_contract_still_trains(code, tmp_path):
    done = run_nntrain(
        "trainer=debug",
        "trainer.max_epochs=1",
        "model._target_=mymodels.Net",
        "~model.hidden",
        "~model.dropout",
        cwd=tmp_path,
        env={"PYTHONPATH": str(code)},
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ("optimizer=sgd", "optimizer.nesterov=abc"),
            "optimizer.nesterov must be true or false, got 'abc'; for example "
            "optimizer.nesterov=true.",
        ),
        (
            ("+optimizer.maximize=null",),
            "optimizer.maximize must be true or false, got None; for example "
            "optimizer.maximize=false.",
        ),
        (
            ("optimizer.weight_decay=abc",),
            "optimizer.weight_decay must be a number >= 0, got 'abc'; for example "
            "optimizer.weight_decay=0.0001.",
        ),
        (
            ("+optimizer.eps=-1",),
            "optimizer.eps must be a number >= 0, got -1; for example optimizer.eps=1e-08.",
        ),
        (
            ("optimizer.lr=null",),
            "optimizer.lr must be a number > 0, got None; for example optimizer.lr=1e-3.",
        ),
    ],
    ids=["nesterov text", "maximize null", "weight_decay text", "eps negative", "lr null"],
)
def test_optimizer_values_of_the_wrong_type_are_one_sentence(tmp_path, overrides, message):
    done = run_nntrain("trainer=debug", *overrides, cwd=tmp_path)
    refused(done, message, tmp_path)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ("+scheduler.foo=1",),
            "scheduler.foo is not a setting of scheduler; its settings are warmup_epochs, min_lr.",
        ),
        (
            (
                "scheduler._target_=torch.optim.lr_scheduler.StepLR",
                "~scheduler.warmup_epochs",
                "~scheduler.min_lr",
                "+scheduler.step_size=2",
            ),
            "could not build scheduler from torch.optim.lr_scheduler.StepLR: got an unexpected "
            "keyword argument 'total_steps'; a scheduler must take the optimizer and the keyword "
            "arguments total_steps and steps_per_epoch (the schedules of "
            "nntrain.optim.schedules do), plus the keys of its config file.",
        ),
    ],
    ids=["unknown key", "torch's StepLR"],
)
def test_scheduler_arguments_are_checked_when_built(tmp_path, overrides, message):
    done = run_nntrain("trainer=debug", *overrides, cwd=tmp_path)
    refused(done, message, tmp_path)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ("scheduler=step", "scheduler.gamma=-1"),
            "scheduler.gamma must be a number in (0, 1] (the lr's factor at each step), got -1; "
            "for example scheduler.gamma=0.1.",
        ),
        (
            ("scheduler=step", "scheduler.gamma=abc"),
            "scheduler.gamma must be a number in (0, 1] (the lr's factor at each step), got "
            "'abc'; for example scheduler.gamma=0.1.",
        ),
        (
            ("scheduler=onecycle", "scheduler.three_phase=abc"),
            "scheduler.three_phase must be true or false, got 'abc'; for example "
            "scheduler.three_phase=false.",
        ),
        (
            ("scheduler=onecycle", "scheduler.cycle_momentum=no"),
            "scheduler.cycle_momentum must be true or false, got 'no'; for example "
            "scheduler.cycle_momentum=true.",
        ),
        (
            ("scheduler=onecycle", "scheduler.pct_start=1"),
            "scheduler.pct_start=1 leaves a phase of the one-cycle schedule without optimizer "
            "steps in this run's 5; choose another share, e.g. scheduler.pct_start=0.3.",
        ),
        (
            ("scheduler=onecycle", "scheduler.pct_start=0.2"),
            "scheduler.pct_start=0.2 leaves a phase of the one-cycle schedule without optimizer "
            "steps in this run's 5; choose another share, e.g. scheduler.pct_start=0.3.",
        ),
        (
            ("scheduler=plateau", "scheduler.min_lr=1"),
            "scheduler.min_lr (1) is above the optimizer's lr (0.001), so the lr would never be "
            "reduced; set scheduler.min_lr below it, e.g. scheduler.min_lr=0.",
        ),
    ],
    ids=[
        "gamma negative",
        "gamma text",
        "three_phase text",
        "cycle_momentum text",
        "pct_start 1",
        "pct_start one step",
        "plateau min_lr above lr",
    ],
)
def test_schedule_values_that_trained_wrongly_or_crashed_are_one_sentence(
    tmp_path, overrides, message
):
    """Checked as the schema says, or where the Trainer builds the schedule (in process:
    trainer=debug's 5 steps, the default optimizer's lr); the first case also from the command
    line."""
    import torch

    from nntrain.commands.schema_check import check_settings
    from nntrain.errors import UserError
    from nntrain.instantiate import build
    from tests.conftest import compose_config

    if overrides == ("scheduler=step", "scheduler.gamma=-1"):
        done = run_nntrain("trainer=debug", "trainer.max_epochs=1", *overrides, cwd=tmp_path)
        refused(done, message, tmp_path)
    cfg = compose_config("trainer=debug", *overrides)
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=cfg.optimizer.lr)
    with pytest.raises(UserError) as error:
        check_settings(cfg)
        build(cfg.scheduler, "scheduler")(optimizer, total_steps=5, steps_per_epoch=5)
    assert str(error.value) == message


def test_onecycle_takes_pct_start_0_as_written(tmp_path):
    """torch's OneCycleLR refused the int 0 (Expected float) with a traceback."""
    done = run_nntrain(
        "trainer=debug",
        "trainer.max_epochs=1",
        "scheduler=onecycle",
        "scheduler.pct_start=0",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr


def run_lr_find(*args: str, cwd: Path):
    return subprocess.run(
        [str(Path(sys.executable).with_name("nntrain-lr-find")), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ("lr_find=abc",),
            "lr_find=abc is not an option of 'lr_find'; choose one of: default (e.g. "
            "lr_find=default).",
        ),
        (
            ("lr_find.steps=10", "data.batch_size=1"),
            "a training batch gave a BatchNorm layer one value per channel, which has no batch "
            "statistics (data.batch_size=1, or one image shrunk to 1x1 pixels); use "
            "data.batch_size=2 or more.",
        ),
    ],
    ids=["lr_find not a mapping", "batch size 1"],
)
def test_lr_find_mistakes_are_one_sentence(tmp_path, overrides, message):
    done = run_lr_find(*overrides, cwd=tmp_path)
    refused(done, message, tmp_path)


def test_the_range_test_lrs_stay_finite_over_a_range_wider_than_a_float():
    """max_lr / min_lr overflowed to inf: every lr after the first was inf, and the test said
    the loss was not finite from its first steps on, advising a lower min_lr."""
    settings = RangeSettings(steps=100, min_lr=1e-300, max_lr=1e300)
    lrs = [settings.lr_at(step) for step in range(100)]
    assert all(math.isfinite(lr) for lr in lrs)
    assert lrs[0] == pytest.approx(1e-300) and lrs[-1] == pytest.approx(1e300)
    assert RangeSettings(steps=11, min_lr=1e-6, max_lr=10).lr_at(5) == pytest.approx(
        1e-3 * 3.16227766
    )


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ("seed=18446744073709551616",),
            "seed must be below 2**64 (torch's generators take 64 bits), got "
            "18446744073709551616; for example seed=42.",
        ),
        (
            ("trainer.lookahead.start_epoch=true",),
            "trainer.lookahead.start_epoch must be an integer >= 0, got True; for example "
            "trainer.lookahead.start_epoch=0.",
        ),
    ],
    ids=["seed over 64 bits", "lookahead start_epoch true"],
)
def test_seed_and_lookahead_edges_are_one_sentence(tmp_path, overrides, message):
    done = run_nntrain("trainer=debug", *overrides, cwd=tmp_path)
    refused(done, message, tmp_path)


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "trainer.ema=abc",
            "trainer.ema must be a group of settings (decay, warmup), e.g. trainer.ema.decay=..., "
            "got 'abc'.",
        ),
        (
            "+trainer.ema.foo=1",
            "trainer.ema.foo is not a setting of trainer.ema; its settings are decay, warmup.",
        ),
        (
            "trainer.lookahead=abc",
            "trainer.lookahead must be a group of settings (every_n_steps, decay, decay_power, "
            "start_epoch), e.g. trainer.lookahead.every_n_steps=..., got 'abc'.",
        ),
        (
            "+trainer.checkpoint.every_n_step=5",  # the typo was ignored: no mid-epoch saves
            "trainer.checkpoint.every_n_step is not a setting of trainer.checkpoint; did you mean "
            "trainer.checkpoint.every_n_steps?",
        ),
        (
            "+trainer.early_stopping.patiance=3",
            "trainer.early_stopping.patiance is not a setting of trainer.early_stopping; did you "
            "mean trainer.early_stopping.patience?",
        ),
    ],
    ids=["ema not a group", "ema unknown key", "lookahead not a group", "checkpoint typo",
         "early stopping typo"],
)  # fmt: skip
def test_a_trainer_settings_group_that_is_no_group_or_has_a_typo_is_one_sentence(
    tmp_path, override, message
):
    done = run_nntrain("trainer=debug", override, cwd=tmp_path)
    refused(done, message, tmp_path)


def test_a_model_whose_forward_raises_in_training_is_one_sentence_naming_its_line(code, tmp_path):
    done = run_nntrain(
        "trainer=debug", "model._target_=mymodels.RaisesWhenTraining", "~model.hidden",
        "~model.dropout", cwd=tmp_path, env={"PYTHONPATH": str(code)},
    )  # fmt: skip
    line = next(i for i, text in enumerate(MODELS.splitlines(), 1) if "raise Runtime" in text)
    refused(
        done,
        "the model's code raised RuntimeError: mat1 and mat2 shapes cannot be multiplied "
        f"(mymodels.py, line {line}, in forward); fix the model ({OWN}).",
        tmp_path,
    )


def test_a_lookahead_starting_after_the_last_epoch_is_said(caplog):
    import logging

    from nntrain.training.trainer import Trainer

    with caplog.at_level(logging.WARNING, logger="nntrain"):
        Trainer(device="cpu", max_epochs=2, lookahead={"every_n_steps": 5, "start_epoch": 1})
        assert caplog.text == ""
        Trainer(device="cpu", max_epochs=2, lookahead={"every_n_steps": 5, "start_epoch": 2})
    assert (
        "trainer.lookahead.start_epoch=2 comes after the last epoch (with trainer.max_epochs=2 "
        "they are 0 to 1): lookahead never runs" in caplog.text
    )
