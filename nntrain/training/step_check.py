"""A recorded CUDA graph checked against the eager step it replaces, once, before it is trusted.

A graph that replays the wrong thing fails silently: stale inputs, a host-side value frozen at
recording, a kernel that was not recorded. So GraphedStep trains the recording step's batch
eagerly, puts everything back, records, replays the same batch from the same state and asks
StepSnapshot whether the two agree: the change of each part of the state (weights,
normalisation statistics, optimizer state, metric sums) within 1 % of the eager change,
relative, over the whole part (the same kernels in the same order agree to rounding;
nondeterministic atomics move single elements, not a part). Everything is put back with
copy_, in place: the graph holds the tensors' addresses. Random numbers (dropout) are replayed
from the same generator state, so eager and graph draw the same masks.
"""

from __future__ import annotations

import torch

from nntrain.inference.metrics import RunningClassification, RunningRegression
from nntrain.training.step import StepParts

Running = RunningClassification | RunningRegression

# How far the graph's change of each part of the state may be from the eager step's, relative
# to the eager change.
TOLERANCE = 1e-2


def state_parts(parts: StepParts, running: Running) -> dict[str, list[torch.Tensor]]:
    """Everything one step changes, by part: each floating part is compared on its own (the
    BatchNorm statistics' large change would hide a small change of the weights missed)."""
    model, optimizer = parts.model, parts.optimizer
    optimizer_state = [
        value
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    ]
    buffers = list(model.buffers())
    return {
        "weights": [p for p in model.parameters() if p.is_floating_point()],
        "normalisation statistics": [b for b in buffers if b.is_floating_point()],
        "optimizer state": [t for t in optimizer_state if t.is_floating_point()],
        "counters": [t for t in (*buffers, *optimizer_state) if not t.is_floating_point()],
        "metric sums": [running.sums],
    }


class StepSnapshot:
    """Copies of the training state (state_parts, the sample count, the random generators)."""

    def __init__(self, parts: StepParts, running: Running) -> None:
        self._live = state_parts(parts, running)
        self._copies = {name: [t.detach().clone() for t in ts] for name, ts in self._live.items()}
        self._count = running.count
        self._device = parts.compute.device
        self._cpu_rng = torch.get_rng_state()
        self._cuda_rng = (
            torch.cuda.get_rng_state(self._device) if self._device.type == "cuda" else None
        )

    @torch.no_grad()
    def restore(self, running: Running) -> None:
        for name, tensors in self._live.items():
            for live, copy in zip(tensors, self._copies[name], strict=True):
                live.copy_(copy)
        running.count = self._count
        torch.set_rng_state(self._cpu_rng)
        if self._cuda_rng is not None:
            torch.cuda.set_rng_state(self._cuda_rng, self._device)

    @torch.no_grad()
    def differs_from_live(self, before: StepSnapshot) -> str | None:
        """Why the live state is not this snapshot's (the eager step's from `before`), or
        None when it is, up to rounding: each floating part's change within TOLERANCE of the
        eager change, the sums within float rounding (one host sync per part, once a run)."""
        for name, live in self._live.items():
            eager, start = self._copies[name], before._copies[name]
            if name == "counters":
                continue  # follow from the rest (num_batches_tracked, an integer step count)
            missed, moved = float(distance(live, eager)), float(distance(eager, start))
            if missed > TOLERANCE * moved + 1e-12:
                share = f"{missed / moved:.0%} of it" if moved > 0 else f"{missed:.3g}"
                return f"its change of the {name} differs from the eager step's by {share}"
        return None


def distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """The Euclidean distance between two lists of tensors taken as one vector (float64)."""
    squares = [(x - y).double().square().sum() for x, y in zip(a, b, strict=True)]
    return torch.stack(squares).sum().sqrt() if squares else torch.zeros((), dtype=torch.float64)
