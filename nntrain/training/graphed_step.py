"""The step as one CUDA graph (trainer.cuda_graphs=true): recorded once, replayed every step.

For small models a CUDA step is launch-bound: the GPU waits for the host to queue ~100
kernels. GraphedStep records update_weights (step.py: forward and loss of each micro-batch,
backward, clipping, the optimizer's update, the metric sums) with torch.cuda.graph after a
few ordinary warm-up steps, and from then on a step is: copy the batch into the graph's
input tensors, one replay, the schedule on the host. Nothing is compiled, so the set-up
costs the warm-up steps and one recording (well under a second), not a compilation.

What a graph needs and how it gets it:
- Static addresses. The batch is copied into input tensors recorded once; the metric sums
  live in one tensor that each epoch's RunningClassification/RunningRegression adopts
  (store_sums_in); the gradient norm is written into a tensor owned here. The weights,
  BatchNorm statistics and optimizer state are updated in place by the recorded kernels,
  so lookahead, EMA and checkpoints read and write the same tensors as ever.
- No host work inside. The graph reads the learning rates from one device tensor
  (DeviceLearningRates): each group's lr is a view of it while the step is recorded, and a
  Python float again afterwards, so the schedule, the log and checkpoints see floats; one
  copy before each replay brings the schedule's values over. Adam-style optimizers run with
  capturable=True (their step count on the device), SGD with its fused kernel; fp16's
  GradScaler (host-side inf check) and DDP are refused by captured.captured_mode.
  Python-side counts (the samples seen) are kept here and added after each replay.
- Lazy initialisation done before recording: WARM_UP_STEPS ordinary steps on the recording
  stream create the optimizer state, cuDNN's autotuned plans and cuBLAS workspaces. They
  train on their batches like any step; recording itself runs nothing.
- Trust checked once: the last warm-up step's batch is replayed from the state before it and
  must reproduce the eager step (step_check.py); a graph that does not is dropped, the eager
  state put back, and the run goes on eagerly after one warning.
- The same shapes. A step whose micro-batches differ in number, shape or dtype from the
  recorded ones (the short last group of an epoch) runs eagerly. A change of which
  parameters train (a backbone unfrozen at epoch k) records a new graph after new
  warm-up steps. If recording fails (a model that syncs with the host in its forward),
  the run says why once and continues eagerly.

On a CPU there are no CUDA graphs: CallAgain stands in, and a "replay" calls the recorded
step again. All the bookkeeping above runs unchanged, so the CPU tests check it against
eager training; there is no speed-up there.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import nn

from nntrain.errors import first_line
from nntrain.optim.optimizers import step_counts_on_device
from nntrain.training.step import Batch, StepParts, update_weights
from nntrain.training.step_check import Running, StepSnapshot

log = logging.getLogger("nntrain")

# torch warns once that a capturable optimizer stepping outside a graph is slower: the
# warm-up steps and the short last step of each epoch do, by design.
warnings.filterwarnings("ignore", message="This instance was constructed with capturable=True")


class Graph(Protocol):
    def warm_up(self) -> contextlib.AbstractContextManager[object]: ...
    def record(self, step: Callable[[], None]) -> None: ...
    def replay(self) -> None: ...


class CudaGraph:
    """torch.cuda.CUDAGraph, warmed up and recorded on one side stream (torch's recipe)."""

    def __init__(self, device: torch.device) -> None:
        self.graph = torch.cuda.CUDAGraph()
        self.stream = torch.cuda.Stream(device)

    @contextlib.contextmanager
    def warm_up(self) -> Iterator[None]:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            yield
        torch.cuda.current_stream().wait_stream(self.stream)

    def record(self, step: Callable[[], None]) -> None:
        # thread_local: the DataLoader's pin-memory thread may call CUDA while this records.
        with torch.cuda.graph(self.graph, stream=self.stream, capture_error_mode="thread_local"):
            step()

    def replay(self) -> None:
        self.graph.replay()


class CallAgain:
    """A CPU's stand-in for a CUDA graph: replay calls the recorded step again."""

    def __init__(self) -> None:
        self._step: Callable[[], None] | None = None

    def warm_up(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def record(self, step: Callable[[], None]) -> None:
        self._step = step

    def replay(self) -> None:
        assert self._step is not None
        self._step()


def can_capture(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer's update can run inside a CUDA graph with a device-tensor lr:
    torch's capturable implementations (Adam, AdamW, RMSprop, ...) or a fused one (SGD)."""
    return all("capturable" in group or group.get("fused") for group in optimizer.param_groups)


def lr_as_tensor(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Each parameter group's lr as a 0-d tensor on the device: the schedule fills it in place
    (torch's schedulers and ReduceLROnPlateau write a tensor lr with fill_), so a graph or a
    compiled step reads the new value without being recorded or compiled again."""
    for group in optimizer.param_groups:
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """capturable=True; a step count kept on the host (foreach Adam) moves to the device,
    where the capturable kernels keep it."""
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
    step_counts_on_device(optimizer)


class DeviceLearningRates:
    """Each parameter group's lr as one element of a device tensor, for a recorded step.

    A graph records the address its optimizer kernels read the lr from, so that must be a
    device tensor; a schedule writing tensors in place costs a fill and a copy per group and
    step (torch's LRScheduler keeps a clone as its last lr). Instead the groups hold views of
    `values` only while the step is recorded (installed), and floats otherwise; before each
    replay one copy (non_blocking: the floats are staged at once, no wait) brings the
    schedule's values to the device."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        self.optimizer = optimizer
        self.values = torch.tensor(self._floats(), device=device)

    def _floats(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        floats = self._floats()
        self.update()
        for index, group in enumerate(self.optimizer.param_groups):
            group["lr"] = self.values[index]
        try:
            yield
        finally:
            for group, lr in zip(self.optimizer.param_groups, floats, strict=True):
                group["lr"] = lr

    def update(self) -> None:
        self.values.copy_(torch.tensor(self._floats()), non_blocking=True)


@dataclass(frozen=True)
class StepKey:
    """What a recorded graph is valid for: the micro-batches' shapes and dtypes and which
    parameters train."""

    batches: tuple[tuple[torch.Size, torch.dtype, torch.Size, torch.dtype], ...]
    trainable: tuple[bool, ...]

    @classmethod
    def of(cls, model: nn.Module, micro_batches: list[Batch]) -> StepKey:
        return cls(
            tuple((x.shape, x.dtype, y.shape, y.dtype) for x, y in micro_batches),
            tuple(p.requires_grad for p in model.parameters()),
        )


class GraphedStep:
    """train_step's drop-in (see the module's doc): warm-up steps, one recording, replays."""

    WARM_UP_STEPS = 3

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._graph: Graph | None = None  # recorded: replayed from now on
        self._pending: Graph | None = None  # warming up, then recorded
        self._key: StepKey | None = None
        self._warmed_up = 0
        self._inputs: list[Batch] = []  # the graph's input tensors
        self._sums: torch.Tensor | None = None  # the graph's metric sums
        self._samples = 0  # samples per recorded step
        self._grad_norm = torch.zeros((), device=device)
        self._lrs: DeviceLearningRates | None = None  # what the graph reads its lr from
        self._given_parts: StepParts | None = None  # the trainer's, and ours made from it
        self._parts: StepParts | None = None
        self._given_up = False  # recording failed: eager from then on
        self.eager_steps = 0  # steps of another shape than the recorded one
        self.recordings = 0

    @property
    def ready(self) -> bool:
        """Whether the set-up (warm-up steps and recording) is over: the trainer times it apart."""
        return self._graph is not None or self._given_up

    def __call__(
        self,
        parts: StepParts,
        micro_batches: list[Batch],
        running: Running,
        measure_grad_norm: bool = False,
    ) -> torch.Tensor | None:
        parts = self._without_autocast_cache(parts)
        key = StepKey.of(parts.model, micro_batches)
        # Warm up for the latest shape until a graph is recorded: a run resumed at an epoch's
        # short last step must not record that shape and then train every full one eagerly.
        warming_another = self._graph is None and not self._given_up and key != self._key
        if self._key is None or key.trainable != self._key.trainable or warming_another:
            self._start_over(parts, key)
        if self._given_up or key != self._key:
            self.eager_steps += not self._given_up
            grad_norm = update_weights(parts, micro_batches, running, measure_grad_norm)
        elif self._graph is None:
            grad_norm = self._warm_up(parts, micro_batches, running)
        else:
            grad_norm = self._replay(micro_batches, running, measure_grad_norm)
        if parts.scheduler is not None:  # None: stepped per epoch (plateau)
            parts.scheduler.step()
        return grad_norm if measure_grad_norm else None

    def _without_autocast_cache(self, parts: StepParts) -> StepParts:
        """parts with autocast's weight cache off (made once per StepParts: once an epoch)."""
        if parts is not self._given_parts:
            self._given_parts = parts
            self._parts = replace(parts, compute=replace(parts.compute, autocast_cache=False))
        assert self._parts is not None
        return self._parts

    def _start_over(self, parts: StepParts, key: StepKey) -> None:
        """A new graph for this key: after its own warm-up steps (new trainable parameters
        have no optimizer state yet)."""
        self._graph, self._key, self._warmed_up = None, key, 0
        self._lrs = DeviceLearningRates(parts.optimizer, self.device)
        if self.device.type == "cuda":
            make_capturable(parts.optimizer)
            self._pending = CudaGraph(self.device)
        else:
            self._pending = CallAgain()

    def _warm_up(
        self, parts: StepParts, micro_batches: list[Batch], running: Running
    ) -> torch.Tensor | None:
        assert self._pending is not None
        if self._warmed_up == self.WARM_UP_STEPS - 1:
            return self._record_checked(self._pending, parts, micro_batches, running)
        with self._pending.warm_up():
            grad_norm = update_weights(parts, micro_batches, running, True)
        self._warmed_up += 1
        return grad_norm

    def _record_checked(
        self, graph: Graph, parts: StepParts, micro_batches: list[Batch], running: Running
    ) -> torch.Tensor | None:
        """The last warm-up step runs eagerly; then, from the state before it, the same step
        is recorded and replayed, and the graph is kept only if both agree (step_check.py).
        Otherwise the eager step's state is put back and the run goes on eagerly."""
        before = StepSnapshot(parts, running)
        with graph.warm_up():
            grad_norm = update_weights(parts, micro_batches, running, True)
        eager = StepSnapshot(parts, running)
        before.restore(running)
        problem = self._record(graph, parts, micro_batches, running)
        if problem is None:
            self._graph = graph
            try:
                self._replay(micro_batches, running, measure_grad_norm=False)
            except RuntimeError as error:
                problem = f"its replay failed: {first_line(error)}"
            else:
                problem = eager.differs_from_live(before)
                if problem is not None:
                    problem = f"its replay did not reproduce the eager step: {problem}"
        if problem is None:
            self._pending, self._warmed_up = None, self.WARM_UP_STEPS
            self.recordings += 1
            return grad_norm
        self._graph, self._given_up = None, True
        eager.restore(running)
        parts.optimizer.zero_grad(set_to_none=True)  # gradients of an aborted recording
        log.warning(
            f"trainer.cuda_graphs: the training step could not be recorded as a CUDA graph "
            f"({problem}); it runs eagerly instead. Set trainer.cuda_graphs=false to skip the "
            "attempt."
        )
        return grad_norm

    def _record(
        self, graph: Graph, parts: StepParts, micro_batches: list[Batch], running: Running
    ) -> str | None:
        """Record the step on copies of this batch (nothing runs); why it failed, or None."""
        self._inputs = [(x.clone(), y.clone()) for x, y in micro_batches]
        self._samples = sum(len(y) for _, y in micro_batches)
        self._sums, recorded_running = running.sums, running

        def step() -> None:
            count = recorded_running.count  # update() counts on the host: not in a graph
            norm = update_weights(parts, self._inputs, recorded_running, True)
            self._grad_norm.copy_(norm)  # type: ignore[arg-type]
            recorded_running.count = count

        assert self._lrs is not None
        try:
            with self._lrs.installed():
                graph.record(step)
        except RuntimeError as error:
            return first_line(error)
        return None

    def _replay(
        self, micro_batches: list[Batch], running: Running, measure_grad_norm: bool
    ) -> torch.Tensor | None:
        for (x_static, y_static), (x, y) in zip(self._inputs, micro_batches, strict=True):
            x_static.copy_(x)
            y_static.copy_(y)
        if running.sums is not self._sums:  # a new epoch's sums: into the graph's tensor
            assert self._sums is not None
            running.store_sums_in(self._sums)
        assert self._graph is not None and self._lrs is not None
        self._lrs.update()  # the schedule's lr for this step
        self._graph.replay()
        running.count += self._samples
        # The graph overwrites its output at the next replay: a copy for the log.
        return self._grad_norm.clone() if measure_grad_norm else None


def describe_recording(step: GraphedStep, seconds: float) -> str:
    """The log line once the step is recorded: what the set-up cost, and that it is left out."""
    where = "a CUDA graph" if step.device.type == "cuda" else "a replayable step (no CUDA here)"
    return (
        f"trainer.cuda_graphs: the step was recorded as {where} after {step.WARM_UP_STEPS} "
        f"warm-up steps; the set-up took {seconds:.2f} s, left out of epoch 1's time and "
        "samples/s"
    )
