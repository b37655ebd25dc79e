"""A recorded CUDA graph checked against the eager step it replaces, once, before it is trusted.

A graph that replays the wrong thing fails silently: stale inputs, a host-side value frozen at
recording, a kernel that was not recorded. So GraphedStep trains the recording step's batch
eagerly, puts everything back, records, replays the same batch from the same state and asks
StepSnapshot whether the two agree: the weights' change within 1 % (relative, over all of them:
the same kernels in the same order agree to rounding; nondeterministic atomics move single
elements, not the whole) and the metric sums within float rounding. Everything is put back with
copy_, in place: the graph holds the tensors' addresses. Random numbers (dropout) are replayed
from the same generator state, so eager and graph draw the same masks.
"""

from __future__ import annotations

import torch

from nntrain.inference.metrics import RunningClassification, RunningRegression
from nntrain.training.step import StepParts

Running = RunningClassification | RunningRegression

# How far the graph's change of the weights may be from the eager step's, relative to it.
TOLERANCE = 1e-2


def state_tensors(parts: StepParts, running: Running) -> list[torch.Tensor]:
    """Everything one step changes: floating weights and buffers first, then the rest."""
    model = parts.model
    weights = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    counters = [t for t in model.buffers() if not t.is_floating_point()]  # num_batches_tracked
    optimizer_state = [
        value
        for state in parts.optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    ]
    return [*weights, *counters, *optimizer_state, running.sums]


class StepSnapshot:
    """Copies of the training state (state_tensors, the sample count, the random generators)."""

    def __init__(self, parts: StepParts, running: Running) -> None:
        self._live = state_tensors(parts, running)
        self._copies = [t.detach().clone() for t in self._live]
        model = parts.model
        self._weights = sum(
            1 for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()
        )
        self._count = running.count
        self._device = parts.compute.device
        self._cpu_rng = torch.get_rng_state()
        self._cuda_rng = (
            torch.cuda.get_rng_state(self._device) if self._device.type == "cuda" else None
        )

    @torch.no_grad()
    def restore(self, running: Running) -> None:
        for live, copy in zip(self._live, self._copies, strict=True):
            live.copy_(copy)
        running.count = self._count
        torch.set_rng_state(self._cpu_rng)
        if self._cuda_rng is not None:
            torch.cuda.set_rng_state(self._cuda_rng, self._device)

    @torch.no_grad()
    def differs_from_live(self, before: StepSnapshot) -> str | None:
        """Why the live state is not this snapshot's (the eager step's from `before`), or
        None when it is, up to rounding."""
        eager, start = self._copies[: self._weights], before._copies[: self._weights]
        live = self._live[: self._weights]
        missed, moved = distance(live, eager), distance(eager, start)  # one sync, once a run
        sums_agree = torch.allclose(self._live[-1], self._copies[-1], rtol=1e-4, atol=1e-6)
        missed_f, moved_f = float(missed), float(moved)
        if missed_f > TOLERANCE * moved_f + 1e-12:
            share = f"{missed_f / moved_f:.0%} of it" if moved_f > 0 else f"{missed_f:.3g}"
            return f"its change of the weights differs from the eager step's by {share}"
        if not sums_agree:
            return "its loss and accuracy sums differ from the eager step's"
        return None


def distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """The Euclidean distance between two lists of tensors taken as one vector (float64)."""
    squares = [(x - y).double().square().sum() for x, y in zip(a, b, strict=True)]
    return torch.stack(squares).sum().sqrt() if squares else torch.zeros((), dtype=torch.float64)
