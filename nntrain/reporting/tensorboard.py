"""TensorBoard event files for a run (kept apart so the trainer does not know the format).

The import of TensorBoard's writer happens when the first run opens it, not at package import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class RunLogger:
    """What the trainer writes to TensorBoard: on ranks other than 0 (and before a fit opens
    its event file), nothing; TensorBoardLogger writes it."""

    def scalars(self, values: Mapping[str, float], step: int) -> None: ...
    def image(self, tag: str, image: np.ndarray, step: int) -> None: ...
    def hparams(self, *args: Any, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


# TensorBoard's Custom Scalars tab: the curves a person compares runs by, train and validation
# together in one chart each (the Scalars tab lists every tag, alphabetically).
MAIN_CURVES = {
    "nntrain": {
        "loss (train, val)": ["Multiline", ["train/loss", "val/loss"]],
        "accuracy (train, val)": ["Multiline", ["train/acc", "val/acc"]],
        "learning rate": ["Multiline", ["train/lr"]],
        "samples per second": ["Multiline", ["train/samples_per_sec"]],
    }
}


# TensorBoard (Scalars and Time Series) lists tag groups in ASCII order and opens the first two:
# train/* (with lr and epoch time) and val/*. The HParams tab's metrics need scalars of their
# own; their group sorts after val ("~" follows the letters), collapsed at the bottom.
HPARAMS_GROUP = "~hparams"


class TensorBoardLogger(RunLogger):
    """Scalars and images against the global optimizer step, written under <run dir>/tb."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides this run's earlier events at steps >= purge_step.
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        self.writer.add_custom_scalars(MAIN_CURVES)

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
        self,
        hparams: Mapping[str, float | int | str | bool],
        metrics: Mapping[str, float],
        first: Sequence[str] = (),
        label: str | None = None,
    ) -> None:
        """The HParams tab's record of this run, written into the run's own event file.

        SummaryWriter.add_hparams would write it to a new sub-directory, a separate "run" in
        TensorBoard; here each run directory stays one run, so a sweep's runs line up. The
        keys in `first` (what the user set, a sweep's swept keys) lead the list and are marked
        as differing, which is what TensorBoard shows first and ticks; `label` names the run
        in the tab's "Trial ID" column instead of its directory path. The metrics (named as
        the tab shows them: test/acc, best_epoch) are single-point scalars under HPARAMS_GROUP.
        """
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        ordered = {k: hparams[k] for k in first if k in hparams} | dict(hparams)
        tags = {f"{HPARAMS_GROUP}/{name}": value for name, value in metrics.items()}
        experiment, session_start, session_end = hparams_summaries(ordered, tags)
        mark_differing(experiment, set(first))
        name_metrics(experiment, {f"{HPARAMS_GROUP}/{name}": name for name in metrics})
        if label:
            name_session(session_start, label)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        for tag, value in tags.items():
            self.writer.add_scalar(tag, value)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def mark_differing(experiment: Any, keys: set[str]) -> None:
    """Set HParamInfo.differs on keys in an Experiment summary (TensorBoard sorts the hparams
    that differ first, and shows the first ones); a TensorBoard without the field is left as
    it is."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    if "differs" not in api_pb2.HParamInfo.DESCRIPTOR.fields_by_name:
        return
    value = experiment.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in keys
    value.metadata.plugin_data.content = data.SerializeToString()


def name_metrics(experiment: Any, display_names: Mapping[str, str]) -> None:
    """Give the HParams tab's metric columns their display names (test/acc rather than the
    scalar's tag, ~hparams/test/acc)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    value = experiment.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.metric_infos:
        info.display_name = display_names.get(info.name.tag, info.name.tag)
    value.metadata.plugin_data.content = data.SerializeToString()


def name_session(session_start: Any, label: str) -> None:
    """The session's group name: what the HParams table lists as the run's Trial ID."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    value = session_start.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    data.session_start_info.group_name = label
    value.metadata.plugin_data.content = data.SerializeToString()
