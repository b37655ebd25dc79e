"""The settings schema (nntrain.schema): strict types, did-you-mean, extras, removed keys and
null groups refused in one sentence; the options Hydra composes are the schema's defaults."""

from __future__ import annotations

import pytest
from nntrain.configs import COMMAND_SETTINGS, SCHEMA_OPTIONS

from nntrain.commands.schema_check import check_settings
from nntrain.data.settings import DigitsSettings
from nntrain.errors import UserError
from nntrain.optim.settings import AdamWSettings, SGDSettings
from nntrain.schema import checked, defaults_of
from nntrain.training.settings import TrainerSettings
from tests.conftest import compose_config, run_nntrain


@pytest.mark.parametrize(
    "values,message",
    [
        # OmegaConf's typed nodes would have taken these as true, 3 and "3".
        (
            {"deterministic": 2},
            "trainer.deterministic must be true or false, got 2; for example "
            "trainer.deterministic=false.",
        ),
        (
            {"max_epochs": 3.0},
            "trainer.max_epochs must be a positive integer, got 3.0; for "
            "example trainer.max_epochs=30.",
        ),
        ({"device": 3}, "trainer.device must be a text, got 3; for example trainer.device=auto."),
        (
            {"grad_clip": float("inf")},
            "trainer.grad_clip must be a number > 0 or null (off), got "
            "inf; for example trainer.grad_clip=1.0.",
        ),
        (
            {"max_epoch": 3},
            "trainer.max_epoch is not a setting of trainer; did you mean trainer.max_epochs?",
        ),
        (
            {"early_stopping": None},
            "trainer.early_stopping must be a group of settings (monitor, "
            "mode, patience, min_delta), e.g. trainer.early_stopping.monitor=..., got None.",
        ),
    ],
    ids=["bool", "int", "text", "inf", "misspelt", "null group"],
)
def test_values_are_refused_in_one_sentence(values, message):
    with pytest.raises(UserError) as error:
        checked(TrainerSettings, values)
    assert str(error.value) == message


def test_a_checked_value_keeps_its_type_and_extras_stay_out_of_the_composed_config():
    settings = checked(AdamWSettings, {"lr": 1, "betas": (0.8, 0.9), "eps": 1e-6})
    assert (settings.lr, settings.betas, settings.eps) == (1, [0.8, 0.9], 1e-6)
    assert "eps" not in defaults_of(AdamWSettings) and "lr" in defaults_of(AdamWSettings)
    with pytest.raises(UserError, match=r"^optimizer.nesterov must be false unless"):
        checked(SGDSettings, {"momentum": 0.0})


def test_a_reference_to_another_key_has_a_fallback_in_python():
    assert defaults_of(DigitsSettings)["seed"] == "${seed}"
    assert checked(DigitsSettings, {}).seed == 42


def test_every_option_composes_to_its_schema_defaults():
    """The option Hydra composes is the dataclass's defaults, key for key (nothing added,
    nothing lost: a run's recorded config stays comparable across versions)."""
    for group, option, schema in SCHEMA_OPTIONS:
        if group in ("lr_find",):
            continue  # part of nntrain-lr-find's config, not nntrain's
        cfg = compose_config(f"{group}={option}", "data.target=y" if option == "csv" else "seed=1")
        node = cfg[group]
        assert set(node) == set(defaults_of(schema)), (group, option)
    assert {command for _, command, _ in COMMAND_SETTINGS} == {
        "nntrain-eval",
        "nntrain-predict",
        "nntrain-export",
    }


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "~trainer.max_epochs",
            "trainer.max_epochs cannot be removed: every setting of trainer "
            "has a value; set it instead (`nntrain --cfg job` shows its default).",
        ),
        (
            "+trainer.max_epoch=3",
            "trainer.max_epoch is not a setting of trainer; did you mean trainer.max_epochs?",
        ),
        (
            "+optimizer.capturable=true",
            "optimizer.capturable is not a setting of optimizer; its settings are lr, "
            "weight_decay, maximize, foreach, fused, layer_decay, betas, eps, amsgrad.",
        ),
    ],
    ids=["removed", "added misspelt", "undeclared torch argument"],
)
def test_the_composed_config_is_checked_before_anything_is_built(override, message):
    cfg = compose_config("trainer=debug", override)
    with pytest.raises(UserError) as error:
        check_settings(cfg)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "optimizer=null",
            "optimizer=null: a config group needs one of its options; choose one "
            "(`nntrain --help` lists them), or leave optimizer= out for its default.",
        ),
        (
            "optimizer.eps=1e-6",
            "optimizer.eps is added, not overridden (it is not in the config "
            "until given): write +optimizer.eps=1e-6.",
        ),
    ],
    ids=["null option", "extra without +"],
)
def test_command_line_mistakes_of_the_schema_are_one_line(tmp_path, override, message):
    done = run_nntrain("trainer=debug", override, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: {message}"
    assert not (tmp_path / "outputs").exists()
