"""The captured training step (trainer.cuda_graphs): which one a run takes, and the compiled one.

Two ways to run the whole optimizer step (step.py's update_weights) without ~100 kernel
launches from the host, for small models where a CUDA step is launch-bound:
- true: recorded as one CUDA graph with torch.cuda.graph and replayed (graphed_step.py); no
  compilation. On a CPU the same bookkeeping runs with a stand-in that calls the step again.
- reduce-overhead: compiled whole with torch.compile's `reduce-overhead` mode (CompiledStep
  below), which fuses kernels and replays CUDA graphs; dynamo splits the step at the backward
  and the fused optimizer, so a step is 2-3 graph replays, and the first step compiles. On a
  CPU inductor compiles it without graphs (needs a C++ compiler).
Which is faster is measured by scripts/benchmark.py's captured columns on a GPU.

CompiledStep: the schedule runs outside, on a learning rate held as a device tensor, so that
changing it neither recompiles nor re-captures (the scheduler writes the tensor in place;
dynamo makes the optimizer capturable). A step whose micro-batches differ in number or shape
from the first compiled one (the last, shorter group of an epoch under gradient accumulation,
or a short last batch) runs eagerly. Everything else stays outside and is unchanged:
lookahead, checkpoints (the state lives in the same tensors), SIGTERM, the NaN check.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import OneCycleLR

from nntrain.devices import is_large
from nntrain.errors import require
from nntrain.inference.metrics import RunningClassification, RunningRegression
from nntrain.training.compilation import require_a_cxx_compiler, use_persistent_cache
from nntrain.training.graphed_step import can_capture, lr_as_tensor
from nntrain.training.step import Batch, StepParts, train_step, update_weights


def describe_capture(mode: str | None, device: torch.device) -> str:
    """The start-up line's note of the step a run takes (captured_mode's answer)."""
    if mode == "graph":
        if device.type == "cuda":
            return " | step as one CUDA graph"
        return " | captured step's path (no CUDA here: replayed by calling it, no speed-up)"
    if mode == "reduce-overhead":
        return " | step compiled whole (reduce-overhead)"
    return ""


def check_cuda_graphs(setting: bool | str, device: torch.device) -> bool | str:
    """trainer.cuda_graphs=reduce-overhead on a CPU needs a C++ compiler on this machine."""
    if setting == "reduce-overhead" and device.type == "cpu":
        require_a_cxx_compiler(
            "trainer.cuda_graphs=reduce-overhead on a CPU compiles the step and",
            "trainer.cuda_graphs=false",
        )
    return setting


def captured_mode(
    setting: bool | str,
    device: torch.device,
    model: torch.nn.Module,
    autocast_dtype: torch.dtype | None,
    world: int,
    optimizer: torch.optim.Optimizer,
    scheduler: object = None,
) -> str | None:
    """How this run's steps are captured: "graph" (GraphedStep), "reduce-overhead"
    (CompiledStep) or None (train_step). auto: "graph" on CUDA for models under
    devices.LARGE_MODEL_PARAMETERS (launch-bound), without fp16 (its GradScaler checks for
    inf on the host), without torchrun (DDP's gradient hooks are not captured here), with
    an optimizer whose update can run in a graph (cuda_graph.can_capture) and a schedule
    that changes only the learning rate (cycles_momentum)."""
    if setting == "auto":
        chosen = (
            device.type == "cuda"
            and not is_large(model)
            and autocast_dtype != torch.float16
            and world == 1
            and can_capture(optimizer)
            and not cycles_momentum(scheduler)
        )
        return "graph" if chosen else None
    if setting is False:
        return None
    name = "true" if setting is True else str(setting)
    require(
        not cycles_momentum(scheduler),
        f"trainer.cuda_graphs={name} cannot follow scheduler=onecycle's momentum cycle (a "
        "captured step keeps the momentum it was recorded with); set "
        "scheduler.cycle_momentum=false or trainer.cuda_graphs=false.",
    )
    require(
        autocast_dtype != torch.float16,
        f"trainer.cuda_graphs={name} cannot capture fp16's loss scaling (it checks for inf on "
        "the host); use trainer.precision=bf16 or 32, or trainer.cuda_graphs=false.",
    )
    require(
        world == 1,
        f"trainer.cuda_graphs={name} is not supported under torchrun yet; set "
        "trainer.cuda_graphs=false.",
    )
    if setting is True:
        require(
            can_capture(optimizer),
            f"trainer.cuda_graphs=true cannot record {type(optimizer).__name__}'s update in a "
            "CUDA graph (it has neither a capturable nor a fused kernel here); use "
            "optimizer=adamw, keep trainer.fused_optimizer=auto, or set trainer.cuda_graphs=false.",
        )
        return "graph"
    return "reduce-overhead"


def cycles_momentum(scheduler: object) -> bool:
    """Whether the schedule rewrites the momentum (SGD's, Adam's beta1) every step: OneCycleLR
    puts in a new Python float, which a CUDA graph or a compiled step would not see (only the
    learning rate is a device tensor filled in place)."""
    return isinstance(scheduler, OneCycleLR) and bool(scheduler.cycle_momentum)


class CompiledStep:
    """train_step's drop-in: the step compiled whole (CUDA: reduce-overhead, i.e. CUDA graphs),
    the schedule after it, and eager steps for batches of another shape than the first."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        mode = "reduce-overhead" if device.type == "cuda" else None
        use_persistent_cache()  # paid once: a second run loads the compiled step
        self._compiled = torch.compile(update_weights, mode=mode)
        self._shapes: tuple[tuple[torch.Size, torch.Size], ...] | None = None
        self.eager_steps = 0  # steps run eagerly (another shape than the captured one)

    def __call__(
        self,
        parts: StepParts,
        micro_batches: list[Batch],
        running: RunningClassification | RunningRegression,
        measure_grad_norm: bool = False,
    ) -> torch.Tensor | None:
        shapes = tuple((inputs.shape, targets.shape) for inputs, targets in micro_batches)
        if self._shapes is None:
            self._shapes = shapes
            lr_as_tensor(parts.optimizer, self.device)
        if shapes != self._shapes:
            self.eager_steps += 1
            return train_step(parts, micro_batches, running, measure_grad_norm)
        if self.device.type == "cuda":
            # The graph adds into the metric sums in place: a mutated input that is not at a
            # static address would make cudagraphs skip the whole graph. (Each epoch's new sums
            # re-record the graphs once; they do not recompile.)
            torch._dynamo.mark_static_address(running.sums)
        # Always measure the norm: one graph for log and other steps alike.
        grad_norm = self._compiled(parts, micro_batches, running, True)
        if parts.scheduler is not None:  # None: stepped per epoch (plateau)
            parts.scheduler.step()
        if not measure_grad_norm:
            return None
        if grad_norm is not None and self.device.type == "cuda":
            grad_norm = grad_norm.clone()  # the graph's output is overwritten at its next replay
        return grad_norm
