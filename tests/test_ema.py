"""trainer.ema: an exponential moving average of the weights, used for validation, best.pt and
the test, saved for exact resume."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import nn

from nntrain.checkpoint import load_checkpoint
from nntrain.errors import UserError
from nntrain.inference.logits import score
from nntrain.inference.trained_run import build_model, load_run
from nntrain.instantiate import build
from nntrain.optim.schedules import constant
from nntrain.training.ema import WeightEma
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config, run_nntrain
from tests.helpers import BlobData
from tests.resume_helpers import SignalAt, assert_resume_is_exact, fit


def small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("warmup", [False, True])
def test_the_average_equals_a_hand_computed_ema_of_weights_and_buffers(warmup):
    torch.manual_seed(0)
    model = small_net().double()
    ema = WeightEma(model, decay=0.9, warmup=warmup)
    expected: dict[str, torch.Tensor] = {}
    for t in range(1, 6):  # five "optimizer steps": new weights and BatchNorm statistics
        with torch.no_grad():
            for tensor in [*model.parameters(), model[1].running_mean, model[1].running_var]:
                tensor.add_(torch.randn_like(tensor))
        ema.update(model)
        current = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        decay = min(0.9, (1 + t) / (10 + t)) if warmup else 0.9
        for key, value in current.items():  # ema_1 = w_1; ema_t = d ema_(t-1) + (1 - d) w_t
            expected[key] = value if t == 1 else decay * expected[key] + (1 - decay) * value
    averaged = ema.module.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key], value, rtol=1e-12, atol=1e-12)
    assert not torch.equal(averaged["0.weight"], model.state_dict()["0.weight"])
    assert ema.updates == 5 and int(ema.averaged.n_averaged) == 5


EMA_RUN = {
    "make_model": small_net,
    "make_data": BlobData,  # 15 batches per epoch
    "optimizer": partial(torch.optim.SGD, lr=0.2, momentum=0.9),
    "scheduler": partial(constant),
    "max_epochs": 3,
    "early_stopping": {"patience": None},
    "ema": {"decay": 0.9},
}


def test_validation_best_pt_and_the_test_use_the_average(tmp_path):
    result = fit(tmp_path, **EMA_RUN)  # type: ignore[arg-type]
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["ema"]["updates"] == 45 == last["step"]
    average, raw = last["model"], last["train_model"]
    assert not torch.equal(average["inner.0.weight"], raw["inner.0.weight"])

    def val_loss(weights: dict) -> float:
        model = SignalAt(small_net())
        model.load_state_dict(weights)
        data = BlobData()
        data.setup(torch.device("cpu"))
        return score(model.eval(), data.val_loader(), compute_of(model)).loss

    assert last["history"][-1]["val/loss"] == val_loss(average) != val_loss(raw)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert result["val/acc"] == best["metrics"]["val/acc"]
    assert best["model"].keys() == best["train_model"].keys()


def compute_of(model: nn.Module):
    from nntrain.devices import Compute

    return Compute.resolve(torch.device("cpu"), "32", False, model)


def test_an_interrupted_run_with_ema_resumes_bitwise(tmp_path):
    last = assert_resume_is_exact(tmp_path, stop_at=22, **EMA_RUN)  # mid-epoch 2
    assert last["ema"] == {"updates": 45, "decay": 0.9, "warmup": False}


def test_a_bad_decay_is_one_sentence(tmp_path):
    done = run_nntrain("trainer=debug", "trainer.ema.decay=1.5", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: trainer.ema.decay must be a number in (0, 1) (e.g. 0.999) or null (off), got 1.5; for example trainer.ema.decay=0.999."
    )
    with pytest.raises(UserError, match=r"^trainer.ema.warmup must be true or false, got 'yes'"):
        Trainer(ema={"decay": 0.99, "warmup": "yes"})


def test_eval_and_predict_rebuild_the_average_from_best_pt(tmp_path):
    from nntrain.commands.train import run

    cfg = compose_config("trainer=debug", "trainer.ema.decay=0.9", "trainer.report_images=false")
    metrics = run(cfg, str(tmp_path))
    trained = load_run(tmp_path)  # what nntrain-eval and nntrain-predict load: best.pt
    model = build_model(trained)
    best = trained.state
    assert torch.equal(model.state_dict()["net.1.weight"], best["model"]["net.1.weight"])
    raw = copy.deepcopy(model)
    raw.load_state_dict(best["train_model"])
    data = build(cfg.data, "data")
    data.setup(torch.device("cpu"))
    losses = [score(m, data.test_loader(), compute_of(m)).loss for m in (model, raw)]
    assert losses[0] == pytest.approx(metrics["test/loss"], rel=1e-6)
    assert losses[1] != pytest.approx(metrics["test/loss"], rel=1e-3)


def test_under_ddp_the_ranks_hold_the_same_average(tmp_path):
    """Two ranks (gloo) with EMA, MixUp/CutMix (each rank mixes its own batches), plateau and
    clipping by value: the end-of-run check all-gathers a checksum of the weights and of the
    EMA (its BatchNorm statistics are broadcast from rank 0 at each epoch end)."""
    from tests.conftest import read_metrics
    from tests.test_distributed import torchrun

    done = torchrun(
        "trainer=debug", "trainer.ema.decay=0.9", "data.mixup_alpha=0.2", "data.cutmix_alpha=1",
        "scheduler=plateau", "trainer.grad_clip_mode=value", "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "weights identical on all 2 ranks" in (tmp_path / "run" / "train.log").read_text()
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["ema"]["updates"] == last["step"] == 10  # 5 steps per epoch per rank
    assert not torch.equal(last["model"]["net.1.weight"], last["train_model"]["net.1.weight"])
    assert read_metrics(tmp_path / "run")["epochs_run"] == 2
