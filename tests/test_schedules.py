"""scheduler=onecycle and scheduler=plateau, and gradient clipping by value."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from nntrain.devices import Compute
from nntrain.errors import UserError
from nntrain.inference.metrics import RunningClassification
from nntrain.optim.schedules import constant, one_cycle, plateau
from nntrain.optim.settings import PlateauSettings
from nntrain.schema import checked
from nntrain.training.step import StepParts, train_step
from tests.conftest import compose_config, run_nntrain
from tests.helpers import BlobData
from tests.resume_helpers import assert_resume_is_exact, fit


def small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def lrs_and_momenta(schedule, optimizer, steps: int) -> list[tuple[float, ...]]:
    seen = []
    for _ in range(steps):
        optimizer.step()
        schedule.step()
        seen.append((*schedule.get_last_lr(), optimizer.param_groups[0]["momentum"]))
    return seen


def test_onecycle_config_gives_torchs_onecycle_lr_sequence():
    cfg = compose_config("scheduler=onecycle", "optimizer=sgd")
    ours_opt = instantiate(cfg.optimizer)([nn.Parameter(torch.zeros(2))])
    ours = instantiate(cfg.scheduler)(ours_opt, total_steps=50, steps_per_epoch=10)
    torch_opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.05, momentum=0.9)
    reference = torch.optim.lr_scheduler.OneCycleLR(torch_opt, max_lr=0.05, total_steps=50)
    assert ours.get_last_lr() == reference.get_last_lr() == [pytest.approx(0.05 / 25)]
    assert lrs_and_momenta(ours, ours_opt, 50) == lrs_and_momenta(reference, torch_opt, 50)


def test_onecycle_max_lr_keeps_the_groups_ratio():
    groups = [
        {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1},  # a head
        {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.01},  # a backbone at 0.1x
    ]
    optimizer = torch.optim.AdamW(groups)
    schedule = one_cycle(optimizer, total_steps=10, steps_per_epoch=5, max_lr=1.0)
    assert [g["max_lr"] for g in optimizer.param_groups] == [1.0, pytest.approx(0.1)]
    assert optimizer.param_groups[0]["betas"][0] == 0.95  # Adam's beta1 is cycled
    assert schedule.total_steps == 10


def test_onecycle_through_the_trainer_follows_torchs_reference_per_epoch(tmp_path):
    run = {
        "make_model": small_net,
        "make_data": BlobData,  # 240 training samples, 15 batches of 16
        "optimizer": partial(torch.optim.SGD, lr=0.1, momentum=0.9),
        "scheduler": partial(one_cycle),
        "max_epochs": 3,
        "early_stopping": {"patience": None},
    }
    last = assert_resume_is_exact(tmp_path, stop_at=20, **run)  # mid-epoch 2
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=45)
    per_epoch = []
    for _ in range(3):
        for _ in range(15):
            optimizer.step()
            reference.step()
        per_epoch.append(reference.get_last_lr()[0])
    assert [row["lr"] for row in last["history"]] == per_epoch


class Frozen(nn.Module):
    """Outputs that no optimizer step changes: the validation loss never improves."""

    def __init__(self) -> None:
        super().__init__()
        self.fixed = nn.Linear(4, 3).requires_grad_(False)
        self.unused = nn.Parameter(torch.zeros(1))  # trained, with a zero gradient

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.fixed(inputs) + 0 * self.unused


def test_plateau_reduces_the_lr_after_patience_epochs_without_improvement(tmp_path):
    result = fit(
        tmp_path,
        Frozen,
        BlobData,
        partial(torch.optim.SGD, lr=0.1),
        partial(plateau, monitor="val/loss", factor=0.5, patience=1),
        max_epochs=6,
        early_stopping={"monitor": "val/acc", "mode": "max", "patience": None},
    )
    assert result["epochs_run"] == 6
    history = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["history"]
    # Epoch 1 sets the best; epochs 2 and 3 do not improve on it: more than patience=1 bad
    # epochs, so epoch 4 trains at half the lr; epochs 4 and 5 are bad again: epoch 6 at 1/4.
    assert [row["lr"] for row in history] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.025]
    assert len({row["val/loss"] for row in history}) == 1  # planted: nothing improves


def test_plateau_follows_the_early_stopping_figure_and_resumes_exactly(tmp_path):
    run = {
        "make_model": small_net,
        "make_data": BlobData,
        "optimizer": partial(torch.optim.SGD, lr=0.5, momentum=0.9),
        "scheduler": partial(plateau, factor=0.5, patience=0),
        "max_epochs": 4,
        "early_stopping": {"monitor": "val/loss", "mode": "min", "patience": None},
    }
    last = assert_resume_is_exact(tmp_path, stop_at=38, **run)  # mid-epoch 3
    assert last["scheduler"]["monitor"] == "val/loss" and last["scheduler"]["mode"] == "min"
    assert last["scheduler"]["last_epoch"] == 4  # stepped once per epoch, never per step


def test_plateau_refuses_a_figure_the_run_does_not_compute(tmp_path):
    with pytest.raises(UserError) as error:
        fit(
            tmp_path,
            small_net,
            BlobData,
            partial(torch.optim.SGD, lr=0.1),
            partial(plateau, monitor="val/r2"),
        )
    assert str(error.value) == (
        "scheduler.monitor=val/r2 is not a figure of this run; use one of val/acc, val/loss, "
        "train/acc, train/loss, or null (trainer.early_stopping.monitor)."
    )


def step_once(grad_clip: float | None, mode: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One train_step of a model with large gradients; the gradients the optimizer applied
    and the norm the step reported."""
    torch.manual_seed(0)
    model = nn.Linear(8, 5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    applied: list[torch.Tensor] = []
    optimizer.register_step_pre_hook(
        lambda *_: applied.extend(p.grad.clone() for p in model.parameters())
    )
    parts = StepParts(
        model=model,
        forward=model,
        optimizer=optimizer,
        scheduler=constant(optimizer, total_steps=1, steps_per_epoch=1),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        compute=Compute.resolve(torch.device("cpu"), "32", False, model),
        grad_clip=grad_clip,
        label_smoothing=0.0,
        distributed=False,
        grad_clip_mode=mode,
    )
    batch = (100 * torch.randn(32, 8), torch.arange(32) % 5)
    running = RunningClassification(torch.device("cpu"))
    grad_norm = train_step(parts, [batch], running, measure_grad_norm=True)
    assert grad_norm is not None
    return applied, grad_norm


def test_clip_by_value_bounds_every_gradient_element_and_logs_the_norm_before():
    raw, raw_norm = step_once(None, "norm")
    clipped, norm = step_once(0.05, "value")
    assert max(g.abs().max() for g in raw) > 1  # large enough to be clipped
    assert all(g.abs().max() <= 0.05 for g in clipped)
    for g, r in zip(clipped, raw, strict=True):
        assert torch.equal(g, r.clamp(-0.05, 0.05))
    assert torch.equal(norm, raw_norm)  # the measured norm is the unclipped gradient's
    by_norm, _ = step_once(0.05, "norm")
    assert float(torch.cat([g.flatten() for g in by_norm]).norm()) == pytest.approx(0.05)


def test_a_bad_schedule_or_clip_value_is_one_sentence(tmp_path):
    done = run_nntrain(
        "trainer=debug", "scheduler=plateau", "scheduler.monitor=val/f1", cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: scheduler.monitor=val/f1 is not a figure of this run; use one of val/acc, "
        "val/loss, train/acc, train/loss, or null (trainer.early_stopping.monitor)."
    )
    with pytest.raises(UserError, match=r"^trainer.grad_clip_mode must be norm .* got 'sideways'"):
        from nntrain.training.trainer import Trainer

        Trainer(grad_clip_mode="sideways")
    with pytest.raises(UserError, match=r"^scheduler.factor must be a number in \(0, 1\), got 2"):
        checked(PlateauSettings, {"factor": 2})
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)  # no momentum
    with pytest.raises(UserError, match=r"the optimizer's momentum is 0; set optimizer\.momentum"):
        one_cycle(optimizer, 10, 5)
