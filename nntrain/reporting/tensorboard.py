"""TensorBoard event files for a run (kept apart so the trainer does not know the format).

The import of TensorBoard's writer happens when the first run opens it, not at package import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class RunLogger(Protocol):
    """What the trainer writes to TensorBoard (rank 0) or to nowhere (the other ranks)."""

    def scalars(self, values: Mapping[str, float], step: int) -> None: ...
    def image(self, tag: str, image: np.ndarray, step: int) -> None: ...
    def hparams(
        self, hparams: Mapping[str, float | int | str | bool], metrics: Mapping[str, float]
    ) -> None: ...
    def close(self) -> None: ...


class NullLogger:
    """TensorBoard on ranks other than 0: nothing is written."""

    def scalars(self, *args: Any) -> None: ...
    def image(self, *args: Any) -> None: ...
    def hparams(self, *args: Any) -> None: ...
    def close(self) -> None: ...


class TensorBoardLogger:
    """Scalars and images against the global optimizer step, written under <run dir>/tb."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides this run's earlier events at steps >= purge_step.
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """All values in one event: TensorBoard reads a summary of several tags as well as one
        event per tag (add_scalar), and writing one costs 100 us instead of 600 us for the 7
        scalars of a training log step, time the trainer's step would otherwise lose (on the
        main thread, and on the writer thread that takes the GIL from it)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(
            value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()]
        )
        self.writer._get_file_writer().add_summary(summary, global_step=step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An (H, W, 3) uint8 RGB picture (see nntrain.reporting.figures)."""
        self.writer.add_image(tag, image, global_step=step, dataformats="HWC")

    def hparams(
        self, hparams: Mapping[str, float | int | str | bool], metrics: Mapping[str, float]
    ) -> None:
        """The HParams tab's record of this run, written into the run's own event file.

        SummaryWriter.add_hparams would write it to a new sub-directory, a separate "run" in
        TensorBoard; here each run directory stays one run, so a sweep's runs line up.
        """
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        experiment, session_start, session_end = hparams_summaries(dict(hparams), dict(metrics))
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
