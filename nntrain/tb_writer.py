"""TensorBoard event files for a run (kept apart so the trainer does not know the format).

The import of TensorBoard's writer happens when the first run opens it, not at package import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class TensorBoardLogger:
    """Scalars against the global optimizer step, written under <run dir>/tb."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides this run's earlier events at steps >= purge_step.
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
