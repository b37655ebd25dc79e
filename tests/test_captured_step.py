"""The captured training step (trainer.cuda_graphs): the whole optimizer step recorded as one
CUDA graph (true) or compiled whole (reduce-overhead) trains the same weights as eager steps,
and a run resumed across it continues exactly.

On a CPU, `true` runs GraphedStep's whole bookkeeping (warm-up steps, static inputs, the
metric sums a graph adds into, host counts, eager steps of another shape, re-recording when
a backbone unfreezes) with a stand-in whose replay calls the step again: bitwise the eager
weights. `reduce-overhead` compiles with inductor (needs a C++ compiler); compilation on 2
cores is slow, so those tests are few and tiny. The CUDA tests skip without a GPU."""

from __future__ import annotations

import logging
import shutil
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from nntrain.checkpoint import load_checkpoint
from nntrain.devices import Compute
from nntrain.errors import UserError
from nntrain.inference.metrics import RunningClassification
from nntrain.optim.optimizers import load_optimizer_state
from nntrain.optim.schedules import one_cycle, warmup_cosine
from nntrain.training import graphed_step
from nntrain.training.compiled_step import CompiledStep, captured_mode
from nntrain.training.graphed_step import GraphedStep
from nntrain.training.signals import TrainingInterrupted
from nntrain.training.step import StepParts, update_weights
from nntrain.training.step_check import StepSnapshot
from nntrain.training.trainer import NonFiniteLoss, Trainer
from tests.helpers import BlobData
from tests.test_resume import scalar_curves
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


def fit(
    tmp: Path,
    device: str,
    captured: bool | str,
    interrupt_at: int | None = None,
    resume=None,
    net: nn.Module | None = None,
    data=None,
    **settings,
):
    trainer = Trainer(
        device=device,
        max_epochs=settings.pop("max_epochs", 2),
        progress=False,
        cuda_graphs=captured,
        grad_clip=0.5,
        accumulate_grad_batches=2,
        lookahead={"every_n_steps": 3},
        report_images=False,
        **settings,
    )
    net = net if net is not None else model()
    optimizer = partial(torch.optim.AdamW, lr=3e-3, weight_decay=1e-2)
    scheduler = partial(warmup_cosine, warmup_epochs=0.5)
    data = data if data is not None else InterruptAt(interrupt_at)  # SIGINT in epoch 2
    result = trainer.fit(net, data, optimizer, scheduler, run_dir=tmp, resume=resume)
    return net, result, trainer


def assert_same_weights(a: nn.Module, b: nn.Module, exact: bool = False) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if exact:
            assert torch.equal(x, y), name
        else:
            assert torch.allclose(x.float(), y.float(), rtol=1e-4, atol=1e-5), name


def train_history(run_dir: Path) -> list[float]:
    """Each epoch's train/loss and train/acc as last.pt recorded them (the metric sums)."""
    history = load_checkpoint(run_dir / "checkpoints" / "last.pt")["history"]
    return [epoch[key] for epoch in history for key in ("train/loss", "train/acc")]


def scheduled_lr(steps: int) -> float:
    """fit's learning rate after `steps` optimizer steps (8 a epoch, 16 in all)."""
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=3e-3)
    schedule = warmup_cosine(optimizer, total_steps=16, steps_per_epoch=8, warmup_epochs=0.5)
    for _ in range(steps):
        optimizer.step()
        schedule.step()
    return optimizer.param_groups[0]["lr"]


def captured_against_eager(tmp_path: Path, device: str, mode: bool | str) -> None:
    exact = device == "cpu" and mode is True  # the same kernels in the same order
    eager, eager_result, _ = fit(tmp_path / "eager", device, False)
    captured, result, trainer = fit(tmp_path / "captured", device, mode)
    step_type = GraphedStep if mode is True else CompiledStep
    assert isinstance(trainer.last_step.call, step_type) and trainer.last_step.set_up_seconds > 0
    assert result["compile_seconds"] == trainer.last_step.set_up_seconds
    # 15 batches an epoch in pairs: the last step of each epoch (one batch) runs eagerly.
    assert trainer.last_step.call.eager_steps == 2
    assert_same_weights(eager, captured, exact)
    assert result["test/acc"] == pytest.approx(eager_result["test/acc"], abs=0.02)
    # Both epochs' training figures: the sums the graph adds into, adopted by epoch 2.
    history, eager_history = train_history(tmp_path / "captured"), train_history(tmp_path / "eager")
    if exact:
        assert history == eager_history
    else:
        assert history == pytest.approx(eager_history, rel=1e-4)
    # The log steps' figures (read back in one transfer; the lr a device tensor when compiled).
    curves, eager_curves = (scalar_curves(tmp_path / name) for name in ("captured", "eager"))
    assert curves.keys() == eager_curves.keys() and "~optimizer/lr_no_decay" in curves
    for tag, points in eager_curves.items():
        steps, values = zip(*points, strict=True)
        assert [step for step, _ in curves[tag]] == list(steps), tag
        expected = list(values) if exact else pytest.approx(values, rel=1e-4, abs=1e-6)
        assert [value for _, value in curves[tag]] == expected, tag
    # ... and right: each group's lr is the schedule's after that many steps (TensorBoard keeps
    # float32), the gradient norm a positive number.
    for step, lr in curves["~optimizer/lr"]:
        assert lr == pytest.approx(scheduled_lr(step), rel=1e-6)
    lrs = (curves[f"~optimizer/{name}"] for name in ("lr_decay", "lr_no_decay", "lr"))
    assert len({tuple(points) for points in lrs}) == 1
    assert all(norm > 0 for _, norm in curves["~optimizer/grad_norm"])
    # A captured run stopped by Ctrl-C mid-epoch, resumed from its last.pt (captured again):
    # the weights of the uninterrupted eager run.
    with pytest.raises(TrainingInterrupted):
        fit(tmp_path / "resumed", device, mode, interrupt_at=7)
    last = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["batches_done"]) == (1, 8)
    resumed, _, _ = fit(tmp_path / "resumed", device, mode, resume=last)
    assert_same_weights(eager, resumed, exact)
    assert train_history(tmp_path / "resumed") == (
        eager_history if exact else pytest.approx(eager_history, rel=1e-4)
    )


def test_the_graphed_step_trains_the_eager_weights_bitwise_and_resumes_across_on_cpu(
    tmp_path, caplog
):
    with caplog.at_level(logging.INFO, logger="nntrain"):
        captured_against_eager(tmp_path, "cpu", True)
    assert (
        "| captured step's path (no CUDA here: replayed by calling it, no speed-up) |"
        in caplog.text
    )
    assert (
        "trainer.cuda_graphs: the step was recorded as a replayable step (no CUDA here) after 3 "
        "warm-up steps; the set-up took" in caplog.text
    )


@needs_cxx
def test_the_compiled_step_trains_the_eager_weights_and_resumes_across_on_cpu(tmp_path):
    captured_against_eager(tmp_path, "cpu", "reduce-overhead")


@needs_cuda
def test_the_cuda_graph_step_trains_the_eager_weights_and_resumes_across_on_cuda(tmp_path):
    captured_against_eager(tmp_path, "cuda", True)


@needs_cuda
def test_the_reduce_overhead_step_trains_the_eager_weights_and_resumes_across_on_cuda(tmp_path):
    captured_against_eager(tmp_path, "cuda", "reduce-overhead")


class UnfreezesAtEpoch1(nn.Module):
    """A frozen first layer that starts training at epoch 1 (models.hooks.EpochAware)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = model()
        self.layers[0].requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def on_epoch_start(self, epoch: int) -> None:
        self.layers[0].requires_grad_(epoch >= 1)


def test_a_backbone_unfrozen_mid_run_is_recorded_again_and_trains_the_eager_weights(tmp_path):
    eager, _, _ = fit(tmp_path / "eager", "cpu", False, net=UnfreezesAtEpoch1())
    graphed, _, trainer = fit(tmp_path / "graphed", "cpu", True, net=UnfreezesAtEpoch1())
    assert trainer.last_step.call.recordings == 2  # one per set of trainable parameters
    assert not torch.equal(graphed.layers[0].weight, model()[0].weight)  # it did train
    assert_same_weights(eager, graphed, exact=True)


class LinearTargets(BlobData):
    """A regression: the blobs' features summed, standardised like a CSV table's target."""

    task = "regression"

    def __init__(self) -> None:
        super().__init__(n=400, batch_size=16)
        for split in self.splits.values():
            split.targets = split.inputs.sum(dim=1) / 4
        self.target_mean, self.target_std = 0.0, 1.0
        self.class_names, self.num_classes = ["y"], 1


def test_a_regression_through_the_graphed_step_reports_the_eager_figures(tmp_path):
    def regressor() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))

    eager, eager_result, _ = fit(
        tmp_path / "eager", "cpu", False, net=regressor(), data=LinearTargets()
    )
    graphed, result, trainer = fit(
        tmp_path / "graphed", "cpu", True, net=regressor(), data=LinearTargets()
    )
    assert trainer.last_step.call.recordings == 1 and trainer.last_step.call.eager_steps == 2
    assert_same_weights(eager, graphed, exact=True)
    history = load_checkpoint(tmp_path / "graphed" / "checkpoints" / "last.pt")["history"]
    eager_history = load_checkpoint(tmp_path / "eager" / "checkpoints" / "last.pt")["history"]
    for key in ("train/loss", "train/rmse", "train/mae", "train/r2"):
        assert [e[key] for e in history] == [e[key] for e in eager_history], key
    assert result["test/rmse"] == eager_result["test/rmse"] < 0.5


def test_a_step_that_cannot_be_recorded_runs_eagerly_after_one_warning(
    tmp_path, monkeypatch, caplog
):
    net = model()

    def fails(self, step):
        # A recording that fails half-way leaves gradient tensors whose kernels never ran.
        for param in net.parameters():
            param.grad = torch.full_like(param, float("nan"))
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore")

    monkeypatch.setattr(graphed_step.CallAgain, "record", fails)
    # The aborted recording's gradients are dropped: the run goes on as an eager one.
    runs_as_eager_after_one_warning(
        tmp_path, caplog, "CUDA error: operation not permitted when stream is capturing", net
    )


def runs_as_eager_after_one_warning(tmp_path, caplog, reason: str, net=None) -> None:
    """A graphed run whose graph was dropped for `reason`: one warning, the eager run bitwise."""
    eager, _, _ = fit(tmp_path / "eager", "cpu", False)
    with caplog.at_level(logging.INFO, logger="nntrain"):
        graphed, _, trainer = fit(tmp_path / "graphed", "cpu", True, net=net)
    assert trainer.last_step.call.recordings == 0 and trainer.last_step.call.ready
    assert caplog.text.count("could not be recorded") == 1
    assert (
        f"trainer.cuda_graphs: the training step could not be recorded as a CUDA graph ({reason}"
        "); it runs eagerly instead. Set trainer.cuda_graphs=false to skip the attempt."
        in caplog.text
    )
    assert_same_weights(eager, graphed, exact=True)
    assert train_history(tmp_path / "graphed") == train_history(tmp_path / "eager")


def test_a_graph_whose_replay_differs_from_the_eager_step_is_dropped_before_it_trains(
    tmp_path, monkeypatch, caplog
):
    """The one-time check (step_check.py): a graph that replays nothing (as one reading stale
    inputs or a frozen host value would replay something else) is caught at its first replay,
    the eager step's state is put back, and the run is the eager run, bitwise."""
    monkeypatch.setattr(graphed_step.CallAgain, "replay", lambda self: None)
    runs_as_eager_after_one_warning(
        tmp_path,
        caplog,
        "its replay did not reproduce the eager step: its change of the weights differs from "
        "the eager step's by 100% of it",
    )


def test_a_graph_whose_first_replay_fails_is_dropped_too(tmp_path, monkeypatch, caplog):
    def fails(self):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nCompile with")

    monkeypatch.setattr(graphed_step.CallAgain, "replay", fails)
    runs_as_eager_after_one_warning(
        tmp_path, caplog, "its replay failed: CUDA error: an illegal memory access was encountered"
    )


def test_the_check_tells_a_faithful_replay_from_a_wrong_one_with_dropout():
    """Dropout draws from the same generator state in the eager step and the replay, so a
    faithful graph passes; one that replays the step twice does not."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 64), nn.Dropout(0.5), nn.Linear(64, 3))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    parts = StepParts(
        model=net, forward=net, optimizer=optimizer, scheduler=None,
        scaler=torch.amp.GradScaler("cpu", enabled=False), compute=Compute(torch.device("cpu")),
        grad_clip=None, label_smoothing=0.0, distributed=False,
    )  # fmt: skip
    running = RunningClassification(torch.device("cpu"))
    batch = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    update_weights(parts, batch, running)  # optimizer state exists, as after warm-up
    for replays, agrees in ((1, True), (2, False)):
        before = StepSnapshot(parts, running)
        update_weights(parts, batch, running, True)
        eager = StepSnapshot(parts, running)
        before.restore(running)
        for _ in range(replays):
            update_weights(parts, batch, running, True)
        assert (eager.differs_from_live(before) is None) is agrees
        eager.restore(running)


def test_a_short_first_step_is_not_the_shape_recorded():
    """A run resumed just before an epoch's short last step warms up on it first: the graph
    is still recorded for the full batches that follow, not for that one shape."""
    torch.manual_seed(0)
    net = model()
    parts = StepParts(
        model=net, forward=net, optimizer=torch.optim.AdamW(net.parameters()), scheduler=None,
        scaler=torch.amp.GradScaler("cpu", enabled=False), compute=Compute(torch.device("cpu")),
        grad_clip=None, label_smoothing=0.0, distributed=False,
    )  # fmt: skip
    running = RunningClassification(torch.device("cpu"))
    step = GraphedStep(torch.device("cpu"))
    for size in (5, 16, 16, 16, 16):
        step(parts, [(torch.randn(size, 4), torch.randint(0, 3, (size,)))], running)
    assert step.recordings == 1 and step._inputs[0][0].shape == (16, 4)
    assert running.count == 5 + 4 * 16 == running.compute()["count"]


def test_auto_captures_small_models_on_cuda_only_and_refuses_what_a_graph_cannot_hold():
    small, cuda, cpu = nn.Linear(10, 10), torch.device("cuda"), torch.device("cpu")
    adamw = torch.optim.AdamW(small.parameters(), fused=False)
    assert captured_mode("auto", cuda, small, None, 1, adamw) == "graph"
    assert captured_mode("auto", cuda, small, torch.float16, 1, adamw) is None
    assert captured_mode("auto", cuda, small, None, 2, adamw) is None
    assert captured_mode("auto", cpu, small, None, 1, adamw) is None
    large = nn.Conv2d(512, 512, 5, device="meta")
    assert captured_mode("auto", cuda, large, None, 1, adamw) is None
    foreach_sgd = torch.optim.SGD(small.parameters(), lr=0.1, foreach=True)
    fused_sgd = torch.optim.SGD(small.parameters(), lr=0.1, fused=True)
    assert captured_mode("auto", cuda, small, None, 1, foreach_sgd) is None
    assert captured_mode(True, cpu, small, None, 1, fused_sgd) == "graph"
    assert captured_mode("reduce-overhead", cpu, small, None, 1, foreach_sgd) == "reduce-overhead"
    with pytest.raises(UserError) as error:
        captured_mode(True, cuda, small, None, 1, foreach_sgd)
    assert str(error.value) == (
        "trainer.cuda_graphs=true cannot record SGD's update in a CUDA graph (it has neither a "
        "capturable nor a fused kernel here); use optimizer=adamw, keep "
        "trainer.fused_optimizer=auto, or set trainer.cuda_graphs=false."
    )
    with pytest.raises(UserError) as error:
        captured_mode(True, cuda, small, torch.float16, 1, adamw)
    assert str(error.value) == (
        "trainer.cuda_graphs=true cannot capture fp16's loss scaling (it checks for inf on the "
        "host); use trainer.precision=bf16 or 32, or trainer.cuda_graphs=false."
    )
    with pytest.raises(UserError) as error:
        captured_mode("reduce-overhead", cuda, small, None, 2, adamw)
    assert str(error.value) == (
        "trainer.cuda_graphs=reduce-overhead is not supported under torchrun yet; set "
        "trainer.cuda_graphs=false."
    )
    cycling = one_cycle(adamw, total_steps=10, steps_per_epoch=5)
    steady = one_cycle(adamw, total_steps=10, steps_per_epoch=5, cycle_momentum=False)
    assert captured_mode("auto", cuda, small, None, 1, adamw, cycling) is None
    assert captured_mode("auto", cuda, small, None, 1, adamw, steady) == "graph"
    for setting in (True, "reduce-overhead"):
        with pytest.raises(UserError) as error:
            captured_mode(setting, cpu, small, None, 1, adamw, cycling)
        assert str(error.value) == (
            f"trainer.cuda_graphs={str(setting).lower()} cannot follow scheduler=onecycle's "
            "momentum cycle (a captured step keeps the momentum it was recorded with); set "
            "scheduler.cycle_momentum=false or trainer.cuda_graphs=false."
        )
    assert Trainer(device="cpu", cuda_graphs=None).cuda_graphs is False
    for bad in ("yes", 1, "max-autotune", "True"):
        with pytest.raises(UserError) as error:
            Trainer(device="cpu", cuda_graphs=bad)
        assert str(error.value) == (
            f"trainer.cuda_graphs must be auto, true, false or reduce-overhead, got {bad!r}; "
            "for example trainer.cuda_graphs=auto."
        )


def test_a_capturable_optimizer_keeps_its_step_count_on_the_device():
    net = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.1, foreach=True)
    net(torch.ones(1, 3)).sum().backward()
    optimizer.step()  # a step count on the host (foreach, not capturable)
    graphed_step.make_capturable(optimizer)
    assert optimizer.param_groups[0]["capturable"] is True
    assert optimizer.state[net.weight]["step"].dtype == torch.float32


def test_the_compiled_step_keeps_its_lr_in_a_device_tensor_the_schedule_fills():
    optimizer = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.1)
    graphed_step.lr_as_tensor(optimizer, torch.device("cpu"))
    group = optimizer.param_groups[0]
    lr = group["lr"]
    assert isinstance(lr, torch.Tensor)
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)  # sets lr for step 0
    assert group["lr"] is lr and lr.item() == pytest.approx(0.05)  # filled in place


def test_a_recorded_step_reads_each_groups_lr_from_a_device_tensor_updated_before_replays(
    monkeypatch,
):
    """While the step is recorded the groups hold views of one tensor (what a CUDA graph's
    kernels read at every replay); otherwise floats, which the schedule sets. Before each
    replay the schedule's floats are copied into that tensor."""
    torch.manual_seed(0)
    net = model()
    decay, rest = [net[0].weight, net[3].weight], [net[1].weight, net[1].bias, net[3].bias]
    optimizer = torch.optim.AdamW([{"params": decay}, {"params": rest, "weight_decay": 0.0}])
    seen: list[tuple[list[float], list[float]]] = []  # at each replay: (tensor's, schedule's)

    class ReadsTheRecordedLr(graphed_step.CallAgain):
        def record(self, step):
            super().record(step)
            self.views = [group["lr"] for group in optimizer.param_groups]
            assert all(isinstance(view, torch.Tensor) for view in self.views)

        def replay(self):
            floats = [group["lr"] for group in optimizer.param_groups]
            seen.append(([view.item() for view in self.views], floats))
            super().replay()

    monkeypatch.setattr(graphed_step, "CallAgain", ReadsTheRecordedLr)
    parts = StepParts(
        model=net, forward=net, optimizer=optimizer, scheduler=warmup_cosine(
            optimizer, total_steps=10, steps_per_epoch=5, warmup_epochs=1
        ), scaler=torch.amp.GradScaler("cpu", enabled=False), compute=Compute(
            torch.device("cpu")
        ), grad_clip=None, label_smoothing=0.0, distributed=False,
    )  # fmt: skip
    running = RunningClassification(torch.device("cpu"))
    step = GraphedStep(torch.device("cpu"))
    for _ in range(8):
        step(parts, [(torch.randn(16, 4), torch.randint(0, 3, (16,)))], running)
    assert step.recordings == 1 and len(seen) == 1 + 5  # the check's replay, then steps 4-8
    lrs = [tensor for tensor, floats in seen]
    assert all(tensor == pytest.approx(floats, rel=1e-6) for tensor, floats in seen)
    # The schedule moved it: up the warm-up, the peak at steps 5 and 6, down the cosine.
    assert [lr[0] for lr in lrs] == pytest.approx(
        [6e-4, 8e-4, 1e-3, 1e-3, 9.045e-4, 6.545e-4], rel=1e-3
    )
    assert all(isinstance(group["lr"], float) for group in optimizer.param_groups)


def test_a_checkpoint_of_the_cuda_graph_step_resumes_with_this_runs_own_optimizer_settings():
    """A GPU run's checkpoint under trainer.cuda_graphs=true holds capturable=True and a tensor
    lr (here made by hand: the CPU never records a graph); resumed by a CPU run with torch's
    foreach kernel, whose capturable path refuses CPU tensors, it must step as that run would."""
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    graphed = torch.optim.AdamW(net.parameters(), lr=0.1, foreach=True)
    net(torch.ones(4, 3)).sum().backward()
    graphed.step()
    graphed_step.make_capturable(graphed)  # what a CUDA run saves (the compiled step's lr:
    graphed_step.lr_as_tensor(graphed, torch.device("cpu"))  # a tensor; the graph's: a float)
    saved = graphed.state_dict()
    assert saved["param_groups"][0]["capturable"] is True
    resumed = torch.optim.AdamW(net.parameters(), lr=0.1, foreach=True)
    load_optimizer_state(resumed, saved)
    group = resumed.param_groups[0]
    assert group["capturable"] is False and group["lr"] == pytest.approx(0.1)
    assert not isinstance(group["lr"], torch.Tensor)
    resumed.step()  # torch.optim.AdamW.load_state_dict alone: capturable on CPU tensors fails
    assert resumed.state[net.weight]["step"].item() == 2


class TurnsNanAt(nn.Module):
    """A linear model whose output turns NaN from its n-th training forward on."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = nn.Linear(4, 3), at, 0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        outputs = self.inner(inputs)
        return outputs * float("nan") if self.calls >= self.at else outputs


def test_a_loss_that_turns_nan_under_the_graphed_step_stops_the_run_at_its_log_step(tmp_path):
    """Forwards 1-2 warm up, 3-4 are the recording step's eager run and checked replay, then
    one replay a step: the 7th forward is optimizer step 6's, read back at its log step."""
    trainer = Trainer(
        device="cpu", max_epochs=2, progress=False, log_every_n_steps=1, cuda_graphs=True,
        report_images=False,
    )  # fmt: skip
    with pytest.raises(NonFiniteLoss) as error:
        trainer.fit(
            TurnsNanAt(7), BlobData(), partial(torch.optim.AdamW, lr=1e-2),
            partial(warmup_cosine), run_dir=tmp_path,
        )  # fmt: skip
    assert isinstance(trainer.last_step.call, GraphedStep) and trainer.last_step.call.recordings == 1
    assert str(error.value).startswith(
        "the training loss became nan in epoch 1, by optimizer step 6 (checked every "
        "trainer.log_every_n_steps=1 steps);"
    )
