"""The captured training step (trainer.cuda_graphs): the whole optimizer step compiled as one
graph (on CUDA replayed as CUDA graphs) trains the same weights as eager steps, and a run resumed
across it continues exactly. On a CPU the same code path compiles with inductor (needs a C++
compiler); compilation on 2 cores is slow, so these tests are few and tiny."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from nntrain.checkpoint import load_checkpoint
from nntrain.errors import UserError
from nntrain.optim.schedules import warmup_cosine
from nntrain.training.captured import CapturedStep, use_captured_step
from nntrain.training.signals import TrainingInterrupted
from nntrain.training.trainer import Trainer
from tests.test_speedrun import InterruptAt

needs_cxx = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("g++", "c++", "clang++")),
    reason="torch.compile on a CPU needs a C++ compiler",
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def model() -> nn.Module:
    # No dropout: inductor draws its own random numbers, so masks differ from eager ones. No
    # bias before BatchNorm: its gradient is rounding noise, which Adam scales up to full steps.
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3)
    )


def fit(tmp: Path, device: str, captured: bool, interrupt_at: int | None = None, resume=None):
    trainer = Trainer(
        device=device,
        max_epochs=2,
        progress=False,
        cuda_graphs=captured,
        grad_clip=0.5,
        accumulate_grad_batches=2,
        lookahead={"every_n_steps": 3},
        report_images=False,
    )
    net = model()
    optimizer = partial(torch.optim.AdamW, lr=3e-3, weight_decay=1e-2)
    scheduler = partial(warmup_cosine, warmup_epochs=0.5)
    data = InterruptAt(interrupt_at)  # blobs; SIGINT before batch `at` of epoch 2
    result = trainer.fit(net, data, optimizer, scheduler, run_dir=tmp, resume=resume)
    return net, result, trainer


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(x.float(), y.float(), rtol=1e-4, atol=1e-5), name


def captured_against_eager(tmp_path: Path, device: str) -> None:
    eager, eager_result, _ = fit(tmp_path / "eager", device, False)
    captured, result, trainer = fit(tmp_path / "captured", device, True)
    assert isinstance(trainer._step, CapturedStep) and trainer.compile_seconds > 0
    # 15 batches an epoch in pairs: the last step of each epoch (one batch) runs eagerly.
    assert trainer._step.eager_steps == 2
    assert_same_weights(eager, captured)
    assert result["test/acc"] == pytest.approx(eager_result["test/acc"], abs=0.02)
    # A captured run stopped by Ctrl-C mid-epoch, resumed from its last.pt (captured again):
    # the weights of the uninterrupted eager run.
    with pytest.raises(TrainingInterrupted):
        fit(tmp_path / "resumed", device, True, interrupt_at=7)
    last = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["batches_done"]) == (1, 8)
    resumed, _, _ = fit(tmp_path / "resumed", device, True, resume=last)
    assert_same_weights(eager, resumed)


@needs_cxx
def test_the_compiled_step_trains_the_eager_weights_and_resumes_across_on_cpu(tmp_path):
    captured_against_eager(tmp_path, "cpu")


@needs_cuda
def test_the_captured_step_trains_the_eager_weights_and_resumes_across_on_cuda(tmp_path):
    captured_against_eager(tmp_path, "cuda")


def test_auto_captures_small_models_on_cuda_only_and_refuses_fp16():
    small, cuda, cpu = nn.Linear(10, 10), torch.device("cuda"), torch.device("cpu")
    assert use_captured_step("auto", cuda, small, None, world=1) is True
    assert use_captured_step("auto", cuda, small, torch.float16, world=1) is False
    assert use_captured_step("auto", cuda, small, None, world=2) is False
    assert use_captured_step("auto", cpu, small, None, world=1) is False
    assert use_captured_step("auto", cuda, nn.Conv2d(512, 512, 5, device="meta"), None, 1) is False
    with pytest.raises(UserError) as error:
        use_captured_step(True, cuda, small, torch.float16, world=1)
    assert str(error.value) == (
        "trainer.cuda_graphs=true cannot capture fp16's loss scaling (it checks for inf on the "
        "host); use trainer.precision=bf16 or 32, or trainer.cuda_graphs=false."
    )
    with pytest.raises(UserError) as error:
        Trainer(device="cpu", cuda_graphs="yes")
    assert str(error.value) == "trainer.cuda_graphs must be auto, true or false, got 'yes'."
