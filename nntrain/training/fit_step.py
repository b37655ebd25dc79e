"""The step one fit trains with, and what setting it up cost.

A fit trains with train_step (step.py), or with a captured step (trainer.cuda_graphs: the whole
step recorded once as a CUDA graph, graphed_step.py, or compiled whole, compiled_step.py). Its
first steps may set something up: torch.compile compiles (or loads from its persistent cache),
a graph warms up and records. Those steps are timed on their own (to their end on the device),
logged once, and left out of the epochs' times and samples/s; metrics.json reports their
total as compile_seconds. This object is that part of a fit's state: Trainer.fit keeps it in
its Run, and Trainer.last_step keeps the last fit's for tests and benchmarks to read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nntrain.inference.metrics import RunningClassification, RunningRegression
from nntrain.training.compilation import CacheCounts, describe_compilation
from nntrain.training.compiled_step import CompiledStep
from nntrain.training.graphed_step import GraphedStep, describe_recording
from nntrain.training.step import Batch, StepParts, train_step

log = logging.getLogger("nntrain")


@dataclass
class FitStep:
    """The step function of a fit and its set-up: `call` is what each optimizer step runs."""

    call: Callable[..., torch.Tensor | None]
    device: torch.device
    compiled: bool  # trainer.compile: the model's forward is compiled (its time is logged)
    set_up_pending: bool  # the next step still sets up (compiles, warms up or records)
    timed_set_up: bool  # whether this fit has a set-up at all (metrics.json: compile_seconds)
    set_up_seconds: float = 0.0
    cache_before: CacheCounts | None = None  # the compile cache's counts before the set-up

    @classmethod
    def choose(cls, captured: str | None, device: torch.device, compiled: bool) -> FitStep:
        """train_step for captured=None, else the captured step of that mode (graph or
        reduce-overhead: see compiled_step.captured_mode)."""
        call: Callable[..., torch.Tensor | None] = train_step
        if captured == "graph":
            call = GraphedStep(device)
        elif captured == "reduce-overhead":
            call = CompiledStep(device)
        pending = compiled or captured is not None
        return cls(call, device, compiled, set_up_pending=pending, timed_set_up=pending)

    @property
    def mode(self) -> str | None:
        """The captured step's mode (trainer.cuda_graphs resolved), None for train_step."""
        if isinstance(self.call, GraphedStep):
            return "graph"
        return "reduce-overhead" if isinstance(self.call, CompiledStep) else None

    @property
    def eager(self) -> bool:
        """Whether each step runs train_step as Python: it counts correct predictions when they
        are read (fewer ops a step), where a captured step records its updates as they are."""
        return self.call is train_step

    def __call__(
        self,
        parts: StepParts,
        micro_batches: list[Batch],
        running: RunningClassification | RunningRegression,
        log_step: bool,
    ) -> tuple[torch.Tensor | None, float]:
        """One optimizer step: (the gradient norm on a log step, the seconds it spent setting
        up: 0.0 once the set-up is over). A step of the set-up is timed to its end on the
        device, and the set-up logged once it is over."""
        if not self.set_up_pending:
            return self.call(parts, micro_batches, running, measure_grad_norm=log_step), 0.0
        if self.cache_before is None:
            self.cache_before = CacheCounts.now()
        start = time.perf_counter()
        grad_norm = self.call(parts, micro_batches, running, measure_grad_norm=log_step)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        self.set_up_seconds += seconds
        graphed = self.call if isinstance(self.call, GraphedStep) else None
        self.set_up_pending = graphed is not None and not graphed.ready
        if not self.set_up_pending:
            self._log_set_up(graphed)
        return grad_norm, seconds

    def _log_set_up(self, graphed: GraphedStep | None) -> None:
        if (graphed is None or self.compiled) and self.cache_before is not None:
            log.info(describe_compilation(self.set_up_seconds, self.cache_before, CacheCounts.now()))
        if graphed is not None and graphed.recordings:
            log.info(describe_recording(graphed, self.set_up_seconds))
