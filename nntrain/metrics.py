"""Classification metrics accumulated on the device and read back only when asked.

update() is a few tensor ops with no host synchronisation, so it can sit in the training step;
compute() moves the sums to the host once (per log step or per evaluation).
"""

from __future__ import annotations

import torch


class RunningClassification:
    """Sums of loss, correct predictions and samples; loss is given as a batch mean."""

    def __init__(self, device: torch.device, sums: torch.Tensor | None = None) -> None:
        self.device = device
        # float64 keeps counts exact past 2**24 samples; MPS has no float64.
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.sums = torch.zeros(3, dtype=dtype, device=device)  # loss*n, correct, n
        if sums is not None:  # continuing an epoch from a checkpoint
            self.sums.copy_(sums)

    def update(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        n = targets.shape[0]
        correct = (logits.argmax(dim=1) == targets).sum()
        # In-place adds with a Python scalar: no host-to-device copy, no sync.
        self.sums[0].add_(loss.detach().to(self.sums.dtype), alpha=n)
        self.sums[1].add_(correct)
        self.sums[2].add_(n)

    def snapshot(self) -> torch.Tensor:
        return self.sums.clone()

    def compute(self, since: torch.Tensor | None = None) -> dict[str, float]:
        """Mean loss and accuracy over everything seen, or since an earlier snapshot()."""
        sums = self.sums - since if since is not None else self.sums
        loss_sum, correct, count = sums.tolist()
        if count == 0:
            return {"loss": float("nan"), "acc": float("nan"), "count": 0}
        return {"loss": loss_sum / count, "acc": correct / count, "count": int(count)}
