import copy
import math
from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from nntrain.errors import UserError
from nntrain.models.hooks import PretrainedBackbone
from nntrain.models.mlp import MLP
from nntrain.optim.optimizers import build_optimizer, param_groups
from nntrain.optim.schedules import constant, step_decay, warmup_cosine
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config


def test_no_weight_decay_on_biases_and_normalisation_weights():
    model = MLP((64,), num_classes=10, hidden=[32, 16])
    groups = {g["name"]: g["params"] for g in param_groups(model)}
    linear_weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    assert {id(p) for p in groups["decay"]} == {id(p) for p in linear_weights}
    norm_params = [
        p for m in model.modules() if isinstance(m, nn.BatchNorm1d) for p in m.parameters()
    ]
    biases = [m.bias for m in model.modules() if isinstance(m, nn.Linear)]
    assert {id(p) for p in groups["no_decay"]} == {id(p) for p in norm_params + biases}


class Pretrained(nn.Module):
    """The smallest model with a pretrained backbone (models.hooks.PretrainedBackbone)."""

    def __init__(self, pretrained: bool, backbone_lr_scale: float) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
        self.head = nn.Linear(8, 2)
        self.pretrained_backbone = pretrained
        self.backbone_lr_scale = backbone_lr_scale


def test_a_pretrained_backbone_trains_at_the_models_lr_scale():
    model = Pretrained(pretrained=True, backbone_lr_scale=0.25)
    assert isinstance(model, PretrainedBackbone)
    groups = param_groups(model, lr=0.1)
    assert [g["name"] for g in groups] == [
        "decay",
        "no_decay",
        "backbone_decay",
        "backbone_no_decay",
    ]
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone_decay"]["params"] == [model.backbone[0].weight]
    assert by_name["backbone_no_decay"]["params"] == [
        model.backbone[0].bias, model.backbone[1].weight, model.backbone[1].bias
    ]  # fmt: skip
    assert by_name["backbone_decay"]["lr"] == by_name["backbone_no_decay"]["lr"] == 0.1 * 0.25
    assert "lr" not in by_name["decay"] and "lr" not in by_name["no_decay"]  # the optimizer's lr
    with pytest.raises(
        UserError, match=r"^optimizer\.lr must be set to scale the backbone's lr\.$"
    ):
        param_groups(model)


def test_a_backbone_trained_from_scratch_or_a_plain_model_gets_no_backbone_groups():
    scratch = Pretrained(pretrained=False, backbone_lr_scale=0.25)
    assert [g["name"] for g in param_groups(scratch, lr=0.1)] == ["decay", "no_decay"]
    plain = MLP((4,), 2, hidden=[8])
    assert not isinstance(plain, PretrainedBackbone)
    assert [g["name"] for g in param_groups(plain, lr=0.1)] == ["decay", "no_decay"]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_config_builds_with_parameter_groups(name):
    cfg = compose_config(f"optimizer={name}", "optimizer.weight_decay=0.01")
    partial_optimizer = instantiate(cfg.optimizer)  # a pure torch partial, as written
    assert not {"backbone_lr_scale", "fused"} & set(cfg.optimizer)
    optimizer = build_optimizer(partial_optimizer, MLP((4,), 2, hidden=[8]))
    expected = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "rmsprop": torch.optim.RMSprop,
    }
    assert type(optimizer) is expected[name]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    if name == "sgd":
        assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] is True


def lrs_over(
    schedule, total_steps: int, lr: float = 0.1, ratio: float | None = None
) -> list[list[float]]:
    """The lr of each group before every optimizer step."""
    params = [{"params": [nn.Parameter(torch.zeros(1))]}]
    if ratio is not None:
        params.append({"params": [nn.Parameter(torch.zeros(1))], "lr": lr * ratio})
    optimizer = torch.optim.SGD(params, lr=lr)
    scheduler = schedule(optimizer, total_steps=total_steps, steps_per_epoch=10)
    seen = []
    for _ in range(total_steps):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_warmup_cosine_equals_the_formula():
    lr_max, lr_min, total, warmup = 0.1, 0.001, 100, 10
    seen = lrs_over(partial(warmup_cosine, warmup_epochs=1, min_lr=lr_min), total)
    for step in (0, 4, 9):  # linear warmup
        assert seen[step][0] == pytest.approx(lr_max * (step + 1) / warmup)
    for step in (10, 25, 55, 80, 99):
        t, horizon = step - warmup, total - warmup
        expected = lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t / horizon))
        assert seen[step][0] == pytest.approx(expected, rel=1e-12)
    assert seen[10][0] == pytest.approx(lr_max)


def test_cosine_keeps_the_ratio_between_parameter_groups():
    seen = lrs_over(partial(warmup_cosine, warmup_epochs=0, min_lr=0.01), 50, ratio=0.1)
    for head, backbone in seen:
        assert backbone == pytest.approx(0.1 * head)


def test_warmup_longer_than_the_run_is_cut_to_the_run():
    seen = lrs_over(partial(warmup_cosine, warmup_epochs=5, min_lr=0.0), 10)
    assert [lr for (lr,) in seen] == pytest.approx([0.1 * (s + 1) / 10 for s in range(10)])


def test_step_decay_and_constant():
    seen = lrs_over(partial(step_decay, step_epochs=2, gamma=0.5), 60)
    assert [seen[s][0] for s in (0, 19, 20, 39, 40)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert {lr for (lr,) in lrs_over(partial(constant), 30)} == {0.1}


@pytest.mark.parametrize(
    ("name", "setting", "fused", "foreach"),
    [
        ("adamw", "auto", True, None),
        ("adam", "auto", True, None),
        ("sgd", "auto", True, None),
        ("rmsprop", "auto", None, True),  # no fused kernel: the multi-tensor version instead
        ("adamw", "false", None, None),  # torch's own default (a per-tensor loop on CPU)
        ("adamw", "true", True, None),
    ],
)
def test_fused_setting_picks_the_optimizer_implementation_on_cpu(name, setting, fused, foreach):
    cfg = compose_config(f"optimizer={name}", f"trainer.fused_optimizer={setting}")
    optimizer = build_optimizer(
        instantiate(cfg.optimizer), MLP((4,), 2, hidden=[8]), fused=cfg.trainer.fused_optimizer
    )
    assert optimizer.defaults.get("fused") == fused
    assert optimizer.defaults.get("foreach") == foreach


def test_fused_and_per_tensor_adamw_train_to_the_same_weights():
    """The fused kernel is the same update rule: 20 steps agree to float rounding. (No
    BatchNorm here: a bias before it gets a gradient of pure rounding noise, which Adam's
    normalisation blows up to a full step either way.)"""
    generator = torch.Generator().manual_seed(1)
    inputs, targets = torch.randn(64, 6, generator=generator), torch.arange(64) % 3
    torch.manual_seed(0)
    initial = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    results = []
    for setting in ("true", "false"):
        model = copy.deepcopy(initial)
        cfg = compose_config(f"trainer.fused_optimizer={setting}")
        optimizer = build_optimizer(
            instantiate(cfg.optimizer), model, fused=cfg.trainer.fused_optimizer
        )
        for _ in range(20):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)
    start = torch.cat([p.detach().flatten() for p in initial.parameters()])
    assert (results[0] - start).abs().max() > 1e-3  # it did train


def test_fused_true_on_an_optimizer_without_a_fused_kernel_is_refused():
    cfg = compose_config("optimizer=rmsprop", "trainer.fused_optimizer=true")
    with pytest.raises(UserError) as error:
        build_optimizer(
            instantiate(cfg.optimizer), MLP((4,), 2, hidden=[8]), fused=cfg.trainer.fused_optimizer
        )
    assert str(error.value) == (
        "RMSprop has no fused implementation; set trainer.fused_optimizer=auto."
    )


@pytest.mark.parametrize("setting", [1.0, 0, "yes", "fused"])
def test_a_fused_setting_other_than_auto_true_or_false_is_refused(setting):
    with pytest.raises(UserError) as error:
        Trainer(device="cpu", fused_optimizer=setting)
    assert str(error.value) == (
        f"trainer.fused_optimizer must be auto, true or false, got {setting!r}; for example "
        "trainer.fused_optimizer=auto."
    )


@pytest.mark.parametrize(
    ("keywords", "fused", "foreach"),
    [({"fused": False}, False, None), ({"foreach": False}, None, False)],
)
def test_auto_keeps_a_kernel_the_optimizer_config_chose_itself(keywords, fused, foreach):
    """fused and foreach are torch's own arguments: +optimizer.fused=false is obeyed."""
    optimizer = build_optimizer(
        partial(torch.optim.AdamW, lr=1e-3, **keywords), MLP((4,), 2, hidden=[8]), "auto"
    )
    assert optimizer.defaults.get("fused") == fused
    assert optimizer.defaults.get("foreach") == foreach
