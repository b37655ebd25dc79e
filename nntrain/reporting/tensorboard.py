"""TensorBoard event files for a run (kept apart so the trainer does not know the format).

Where they go (nntrain.reporting.run_names): a single run's in its run directory, a sweep job's
in a folder of the sweep directory named by its label, so that TensorBoard names every run by
what it is. What a run shows first:

- Scalars and Time Series list tag groups in ASCII order and open the first ones: train/* and
  val/* hold the task's curves only (loss and accuracy; a regression's loss, RMSE, MAE, R²).
  The secondary charts sort after them ("~" follows the letters), collapsed: ~figures (the
  images), ~hparams (the HParams tab's figures), ~optimizer (learning rates, gradient norm),
  ~speed (samples per second, epoch time).
- Custom Scalars opens on one chart per figure, train and validation together, for the task the
  run trained (its layout follows the tags it writes); the secondary charts in a closed group.
- HParams: see TensorBoardLogger.hparams.

The import of TensorBoard's writer happens when the first run opens it, not at package import.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nntrain.reporting.run_names import events_dir

if TYPE_CHECKING:
    from nntrain.tasks import Task


class RunLogger:
    """What the trainer writes to TensorBoard: on ranks other than 0 (and before a fit opens
    its event file), nothing; TensorBoardLogger writes it."""

    label: str | None = None  # a sweep job's label (its events folder's name)
    directory: Path | None = None  # where the events go

    def scalars(self, values: Mapping[str, float], step: int) -> None: ...
    def image(self, tag: str, image: np.ndarray, step: int) -> None: ...
    def hparams(self, *args: Any, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


# Groups of tags that sort after train/ and val/ (see the module's docstring).
FIGURES_GROUP = "~figures"
HPARAMS_GROUP = "~hparams"
OPTIMIZER_GROUP = "~optimizer"
SPEED_GROUP = "~speed"

# Custom Scalars: the titles of a figure's chart (train and val together), in this order.
CURVE_TITLES = {
    "loss": "loss",
    "acc": "accuracy",
    "rmse": "RMSE",
    "r2": "R²",
    "mae": "MAE",
}
SECONDARY_CHARTS = {
    "learning rate": [rf"^{OPTIMIZER_GROUP}/lr$"],
    "samples per second": [rf"^{SPEED_GROUP}/samples_per_sec$"],
    "epoch time (s)": [rf"^{SPEED_GROUP}/epoch_time$"],
    "gradient norm": [rf"^{OPTIMIZER_GROUP}/grad_norm$"],
    "learning rate per parameter group": [rf"^{OPTIMIZER_GROUP}/lr_"],
}
CURVES_CATEGORY, MORE_CATEGORY = "curves (train and val)", "more: learning rate and speed"


# The trainer's names of the secondary figures, and the tags TensorBoard shows them under.
SECONDARY_TAGS = {
    "train/lr": f"{OPTIMIZER_GROUP}/lr",
    "train/grad_norm": f"{OPTIMIZER_GROUP}/grad_norm",
    "train/samples_per_sec": f"{SPEED_GROUP}/samples_per_sec",
    "train/epoch_time": f"{SPEED_GROUP}/epoch_time",
    "epoch_time": f"{SPEED_GROUP}/epoch_time",
}


@functools.cache
def shown_tag(name: str) -> str:
    """The tag a scalar is written under: the trainer's name for the task's curves (train/loss,
    val/acc), a secondary group's for the others (train/lr_decay -> ~optimizer/lr_decay)."""
    if name in SECONDARY_TAGS:
        return SECONDARY_TAGS[name]
    if name.startswith("train/lr_"):
        return f"{OPTIMIZER_GROUP}/{name.removeprefix('train/')}"
    return name


def curve_names(tags: Iterable[str]) -> list[str]:
    """The figures with a train or val curve among tags, in CURVE_TITLES' order (others after)."""
    found = {m.group(2) for tag in tags if (m := re.fullmatch(r"(train|val)/(\w+)", tag))}
    known = [name for name in CURVE_TITLES if name in found]
    return known + sorted(found - set(known))


def custom_scalars_layout(names: Sequence[str]) -> Any:
    """Custom Scalars' layout: one chart per figure (train and val), the learning rate, then
    the secondary charts in a closed category. Categories of the same title merge across runs,
    so a logdir of classifications and regressions shows every figure's chart once."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    def chart(title: str, tags: list[str]) -> Any:
        return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=tags))

    curves = [
        chart(f"{CURVE_TITLES.get(name, name)} (train, val)", [rf"^(train|val)/{name}$"])
        for name in names
    ]
    more = [chart(title, tags) for title, tags in SECONDARY_CHARTS.items()]
    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(title=CURVES_CATEGORY, chart=[*curves, more[0]]),
            layout_pb2.Category(title=MORE_CATEGORY, chart=more[1:], closed=True),
        ]
    )


class TensorBoardLogger(RunLogger):
    """Scalars and images against the global optimizer step, in the run's events folder."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        """log_dir: the run directory (or `<run dir>/tb`, as the Trainer and nntrain-lr-find
        name it: the events go in events_dir(run dir) all the same)."""
        from torch.utils.tensorboard import SummaryWriter

        given = Path(log_dir)
        run_dir = given.parent if given.name == "tb" else given
        self.directory = events_dir(run_dir)
        self.label = self.directory.name if self.directory != run_dir else None
        # purge_step: TensorBoard hides this run's earlier events at steps >= purge_step.
        self.writer = SummaryWriter(log_dir=str(self.directory), purge_step=purge_step)
        self._curves: list[str] = []

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """All values in one event: TensorBoard reads a summary of several tags as well as one
        event per tag (add_scalar), and writing one costs 100 us instead of 600 us for the 7
        scalars of a training log step, time the trainer's step would otherwise lose (on the
        main thread, and on the writer thread that takes the GIL from it)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(
            value=[
                Summary.Value(tag=shown_tag(tag), simple_value=float(v))
                for tag, v in values.items()
            ]
        )
        self.writer._get_file_writer().add_summary(summary, global_step=step)
        names = curve_names(shown_tag(tag) for tag in values)
        if not set(names) <= set(self._curves):  # the first of a figure's curves: its chart
            self._curves = [*self._curves, *(n for n in names if n not in self._curves)]
            self._write_layout(step)

    def _write_layout(self, step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

        names = curve_names(f"train/{name}" for name in self._curves)
        tensor = TensorProto(
            dtype="DT_STRING",
            string_val=[custom_scalars_layout(names).SerializeToString()],
            tensor_shape=TensorShapeProto(),
        )
        metadata = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(plugin_name="custom_scalars")
        )
        value = Summary.Value(tag="custom_scalars__config__", tensor=tensor, metadata=metadata)
        self.writer._get_file_writer().add_summary(Summary(value=[value]), global_step=step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An (H, W, 3) uint8 RGB picture (see nntrain.reporting.figures)."""
        self.writer.add_image(tag, image, global_step=step, dataformats="HWC")

    def hparams(
        self,
        hparams: Mapping[str, float | int | str | bool],
        metrics: Mapping[str, float],
        label: str | None = None,
        experiment: Any = None,
    ) -> None:
        """The HParams tab's record of this run, in the run's own event file (a separate
        folder, as SummaryWriter.add_hparams makes, would be a separate run in TensorBoard).

        hparams: the run's values; label: its Trial ID; metrics: its figures (test/acc,
        best_epoch...), written as single-point scalars under HPARAMS_GROUP, which the tab
        reads. experiment (an api_pb2.Experiment, see experiment_info): which columns the tab
        shows. TensorBoard uses the first experiment it finds in a logdir, so a sweep's jobs
        write none and the sweep writes one for all of them (nntrain.reporting.sweep_summary);
        without any, TensorBoard lists every hparam of every run and ticks those that differ.
        """
        file_writer = self.writer._get_file_writer()
        if experiment is not None:
            file_writer.add_summary(experiment_summary(experiment))
        file_writer.add_summary(session_start_summary(hparams, label or ""))
        file_writer.add_summary(session_end_summary())
        for name, value in metrics.items():
            if math.isfinite(value):
                self.writer.add_scalar(f"{HPARAMS_GROUP}/{name}", value)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


# --- the HParams plugin's records ---------------------------------------------------------------


def hparams_summary(tag: str, data: Any) -> Any:
    """A Summary holding HParamsPluginData under tag, as TensorBoard's own summary_v2 makes it."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    return Summary(
        value=[
            Summary.Value(
                tag=tag,
                metadata=metadata.create_summary_metadata(data),
                tensor=metadata.NULL_TENSOR,
            )
        ]
    )


def session_start_summary(hparams: Mapping[str, float | int | str | bool], label: str) -> Any:
    """The run's values and its Trial ID (group_name)."""
    import time

    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(group_name=label, start_time_secs=time.time())
    for name, value in hparams.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, int | float):
            start.hparams[name].number_value = value
        else:
            start.hparams[name].string_value = str(value)
    data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
    return hparams_summary(metadata.SESSION_START_INFO_TAG, data)


def session_end_summary() -> Any:
    import time

    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return hparams_summary(
        metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)
    )


def experiment_info(
    runs: Sequence[Mapping[str, float | int | str | bool]],
    metrics: Sequence[str],
    differing: Iterable[str] = (),
) -> Any:
    """An api_pb2.Experiment for runs' hparams: every key of any run, in first-seen order, with
    its type and the values seen (the tab's filters), marked as differing where the values
    differ or the key is in `differing` (TensorBoard lists those first and shows the first five
    keys); the metric columns in the order given (it shows the first five)."""
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2

    differing = set(differing)
    values: dict[str, list[Any]] = {}
    for run in runs:
        for key, value in run.items():
            values.setdefault(key, [])
            if value not in values[key]:
                values[key].append(value)
    infos = []
    for key, seen in values.items():
        info = api_pb2.HParamInfo(name=key, differs=len(seen) > 1 or key in differing)
        if all(isinstance(v, bool) for v in seen):
            info.type = api_pb2.DATA_TYPE_BOOL
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(values=[
                struct_pb2.Value(bool_value=v) for v in seen
            ]))  # fmt: skip
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen):
            info.type = api_pb2.DATA_TYPE_FLOAT64
            info.domain_interval.min_value = float(min(seen))
            info.domain_interval.max_value = float(max(seen))
        else:
            info.type = api_pb2.DATA_TYPE_STRING
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(values=[
                struct_pb2.Value(string_value=str(v)) for v in seen
            ]))  # fmt: skip
        infos.append(info)
    metric_infos = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(tag=f"{HPARAMS_GROUP}/{name}"), display_name=name
        )
        for name in metrics
    ]
    return api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos)


def experiment_summary(experiment: Any) -> Any:
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    return hparams_summary(
        metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)
    )


def read_session_starts(folder: Path) -> list[Any]:
    """The SessionStartInfo records in a folder's event files (a run's HParams values)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    found = []
    for path in sorted(folder.glob("*tfevents*")):
        try:
            for event in EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    if value.tag == metadata.SESSION_START_INFO_TAG:
                        content = value.metadata.plugin_data.content
                        found.append(metadata.parse_session_start_info_plugin_data(content))
        except Exception:  # a file cut short (a killed job): what was read is kept
            continue
    return found


def start_values(start: Any) -> dict[str, float | str | bool]:
    """A SessionStartInfo's hparams as Python values."""
    values: dict[str, float | str | bool] = {}
    for key, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        if kind == "bool_value":
            values[key] = value.bool_value
        elif kind == "number_value":
            values[key] = value.number_value
        elif kind == "string_value":
            values[key] = value.string_value
    return values


SWEEP_EXPERIMENT_SUFFIX = ".sweep-hparams"


def write_experiment(folder: Path, experiment: Any, stale: Iterable[Path] = ()) -> Path:
    """The experiment into an event file of its own in folder (removing stale ones first)."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for path in stale:
        path.unlink(missing_ok=True)
    writer = EventFileWriter(str(folder), filename_suffix=SWEEP_EXPERIMENT_SUFFIX)
    import time

    writer.add_event(Event(wall_time=time.time(), summary=experiment_summary(experiment)))
    writer.close()
    return Path(writer.get_logdir())


# --- the HParams tab's metric columns (no torch: the sweep's own process reads them) ---


def task_metrics(task: Task) -> list[str]:
    """The HParams tab's figures of a task, the one a person compares runs by first: the best
    epoch's validation figures (accuracy, or the loss a regression follows, its RMSE and R²),
    the test's, the best epoch."""
    validation = [f"val/{name}" for name in task.hparams_metrics]
    test = [f"test/{name}" for name in task.hparams_metrics]
    if task.has_classes:
        return [*validation, "val/loss", *test, "test/loss", "best_epoch"]
    return ["val/loss", *validation, *test, "best_epoch", "test/loss"]


def metric_columns(tasks: Sequence[Task]) -> list[str]:
    """The HParams tab's metric columns: the given tasks' figures first (TensorBoard shows the
    first five), then every other task's, so that a logdir of classifications and regressions
    has a column for each whichever run's list TensorBoard reads."""
    from nntrain.tasks import TASKS

    ordered = [*tasks, *(task for task in TASKS.values() if task not in tasks)]
    return list(dict.fromkeys(name for task in ordered for name in task_metrics(task)))
