"""The captured training step (trainer.cuda_graphs): the whole optimizer step as one graph.

For small models a CUDA step is launch-bound: the GPU waits for the host to queue ~100 kernels.
Compiled whole with torch.compile's `reduce-overhead` mode, the step (forward and loss of each
micro-batch, backward, clipping, the optimizer's update and the metric sums; step.py's
update_weights) is replayed as CUDA graphs: one launch instead of a hundred. The schedule
runs outside, on a learning rate held as a device tensor, so that changing it neither
recompiles nor re-captures (the scheduler writes the tensor in place; dynamo makes the
optimizer capturable). On a CPU the same step is compiled by inductor without graphs: the
path the CPU tests check against eager training.

Static shapes: a step whose micro-batches differ in number or shape from the first captured
one (the last, shorter group of an epoch under gradient accumulation, or a short last batch)
runs eagerly. Everything else stays outside the graph and is unchanged: lookahead, checkpoints
(the state lives in the same tensors), SIGTERM, the NaN check on log steps.
"""

from __future__ import annotations

import torch

from nntrain.devices import is_large
from nntrain.errors import require
from nntrain.inference.metrics import RunningClassification, RunningRegression
from nntrain.training.compilation import require_a_cxx_compiler
from nntrain.training.step import Batch, StepParts, train_step, update_weights


def check_cuda_graphs(setting: object, device: torch.device) -> bool | str:
    require(
        setting == "auto" or isinstance(setting, bool),
        f"trainer.cuda_graphs must be auto, true or false, got {setting!r}.",
    )
    if setting is True and device.type == "cpu":
        require_a_cxx_compiler(
            "trainer.cuda_graphs=true on a CPU compiles the step and", "trainer.cuda_graphs=false"
        )
    return setting  # type: ignore[return-value]


def use_captured_step(
    setting: bool | str,
    device: torch.device,
    model: torch.nn.Module,
    autocast_dtype: torch.dtype | None,
    world: int,
) -> bool:
    """Whether this run's steps are captured. auto: on CUDA for models under
    devices.LARGE_MODEL_PARAMETERS (launch-bound), without fp16 (its GradScaler checks for
    inf on the host) and without torchrun (DDP's gradient hooks are not captured here)."""
    if setting == "auto":
        return (
            device.type == "cuda"
            and not is_large(model)
            and autocast_dtype != torch.float16
            and world == 1
        )
    if setting:
        require(
            autocast_dtype != torch.float16,
            "trainer.cuda_graphs=true cannot capture fp16's loss scaling (it checks for inf on "
            "the host); use trainer.precision=bf16 or 32, or trainer.cuda_graphs=false.",
        )
        require(
            world == 1,
            "trainer.cuda_graphs=true is not supported under torchrun yet; set "
            "trainer.cuda_graphs=false.",
        )
    return bool(setting)


def lr_as_tensor(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Each parameter group's lr as a 0-d tensor on the device: the scheduler fills it in place,
    so the compiled step reads the new value without recompiling."""
    for group in optimizer.param_groups:
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)


class CapturedStep:
    """train_step's drop-in: the step compiled whole (CUDA: reduce-overhead, i.e. CUDA graphs),
    the schedule after it, and eager steps for batches of another shape than the first."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        mode = "reduce-overhead" if device.type == "cuda" else None
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
