"""The `nntrain-predict` command: class predictions for new inputs from a trained checkpoint.

    nntrain-predict ckpt=outputs/2026-11-25/10-00-00-resnet18-imagefolder inputs=~/new_photos   # -> predictions.csv

The checkpoint alone is enough: it holds the model's config and weights, the class names and
an `inputs` spec (how evaluation turned an input into model input; see the data sets'
input_spec), so no training data is read. Every input is read and predicted before the CSV is
written: a bad input ends in one sentence (a UserError) and leaves no half-written file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from nntrain import files
from nntrain.commands.settings import PredictSettings
from nntrain.data.new_inputs import is_image_name, read_inputs
from nntrain.errors import UserError, require
from nntrain.schema import checked
from nntrain.tasks import task_of_spec

if TYPE_CHECKING:  # torch is imported where it is used, so --help and typos answer at once
    import torch

HEADER = ["input", "predicted", "probability", "top_k"]
REGRESSION_HEADER = ["input", "predicted"]  # a regression model's value (6 significant digits)
SHOWN_ROWS = 20


def with_reasons(
    rows: list[list[str]], header: list[str], problems: dict[int, str]
) -> list[list[str]]:
    """The CSV rows with a last column, reason, when some input rows could not be scored:
    theirs holds only the input's name and why; the others are as predicted."""
    if not problems:
        return [header, *rows]
    blank = [""] * (len(header) - 1)
    return [
        [*header, "reason"],
        *(
            [row[0], *blank, problems[i]] if i in problems else [*row, ""]
            for i, row in enumerate(rows)
        ),
    ]


def prediction_rows(
    names: list[str], probs: torch.Tensor, class_names: list[str], top_k: int
) -> list[list[str]]:
    """CSV rows: input, predicted class, its probability, the top_k classes as name:p;..."""
    values, indices = probs.topk(min(top_k, len(class_names)), dim=1)
    rows = []
    for name, top_values, top_indices in zip(names, values.tolist(), indices.tolist(), strict=True):
        pairs = zip(top_indices, top_values, strict=True)
        top = ";".join(f"{class_names[i]}:{p:.4f}" for i, p in pairs)
        rows.append([name, class_names[top_indices[0]], f"{top_values[0]:.4f}", top])
    return rows


def show(
    rows: list[list[str]],
    output: Path,
    source: str,
    header: list[str] = HEADER,
    unscored: int = 0,
) -> None:
    """The first rows as a table titled with the checkpoint that made them, then how many
    there are (and how many could not be scored) and where the CSV is."""
    from rich.table import Table
    from rich.text import Text

    from nntrain.reporting.console import display_path, get_console

    get_console().print(Text(f"nntrain-predict with {source}"), soft_wrap=True)  # not a title
    table = Table()
    for column in header:
        right = column == "probability" or (column == "predicted" and "probability" not in header)
        table.add_column(column, justify="right" if right else "left")
    for row in rows[:SHOWN_ROWS]:
        table.add_row(*(Text(cell) for cell in row))  # Text: a file named [red].png is no markup
    if len(rows) > SHOWN_ROWS:
        table.caption = f"the first {SHOWN_ROWS} of {len(rows)} rows"
    get_console().print(table)
    done = f"{len(rows)} predicted"
    if unscored:
        done = (
            f"{len(rows)} rows: {len(rows) - unscored} predicted, {unscored} not scored "
            "(empty prediction; the reason column says why)"
        )
    get_console().print(Text(f"{done}; wrote {display_path(output)}"))


def clash_with_inputs(output: Path, inputs: Path) -> str | None:
    """What output is that it must not be replaced by the CSV: a folder, the inputs file, or
    one of the images of an inputs folder (output=photos/cat.jpg would overwrite the photo)."""
    if output.is_dir():
        return "a folder"
    if output.resolve() == inputs.resolve():
        return "the inputs file"
    inside = inputs.is_dir() and output.resolve().is_relative_to(inputs.resolve())
    if inside and output.is_file() and is_image_name(output.name):
        return f"one of the images in {inputs}"
    return None


def predict(cfg: DictConfig) -> Path:
    """Predict every input of cfg.inputs with the model of cfg.ckpt; returns the CSV written."""
    missing = sorted(OmegaConf.missing_keys(cfg))  # ckpt and inputs have no default
    if missing:
        raise UserError(
            f"{missing[0]} has no value; set it on the command line, e.g. nntrain-predict "
            "ckpt=outputs/2026-11-25/10-00-00-resnet18-imagefolder inputs=~/photos."
        )
    checked(PredictSettings, cfg)
    output = Path(str(cfg.output)).absolute()
    # Refused before any work: a folder cannot be replaced, and the inputs must not be.
    clash = clash_with_inputs(output, Path(str(cfg.inputs)))
    require(
        clash is None,
        f"output {cfg.output} is {clash}; give another file name, e.g. output=predictions.csv.",
    )
    require(
        files.writable_folder(output.parent),
        f"cannot write output {cfg.output}: {output.parent} is not a folder you can write to; "
        "give another path, e.g. output=predictions.csv.",
    )
    from nntrain.devices import resolve_device
    from nntrain.inference.logits import probabilities
    from nntrain.inference.trained_run import build_model, load_run, run_compute
    from nntrain.reporting.console import get_console, plain

    device = resolve_device(str(cfg.device), key="device")
    run = load_run(str(cfg.ckpt))
    # The run's batch size by default: its test score was computed in batches of that size.
    batch_size = cfg.batch_size or run.config.data.get("batch_size") or 64
    inputs = read_inputs(str(cfg.inputs), run.inputs, batch_size)
    if inputs.note:  # said once, whatever the number of rows
        get_console().print(plain(f"Note: {inputs.note}"))
    names, batches, problems = inputs.names, inputs.batches, inputs.problems
    model = build_model(run, device)
    # The inference path of the run's own test score: its precision, layout and TTA.
    compute = run_compute(run, device, model)
    if not task_of_spec(run.inputs).has_classes:  # a regression: its value, in target units
        from nntrain.inference.logits import predicted_values

        spec = run.inputs
        values = (
            predicted_values(model, batches, compute) * spec["target_std"] + spec["target_mean"]
        )
        rows = [[name, f"{value:.6g}"] for name, value in zip(names, values.tolist(), strict=True)]
        header = REGRESSION_HEADER
    else:
        probs = probabilities(model, batches, compute, run.test_time_augmentation)
        rows, header = prediction_rows(names, probs, run.class_names, cfg.top_k), HEADER
    table = with_reasons(rows, header, problems)
    files.write_csv(output, table)  # atomic: an interrupted write leaves no half CSV
    show(table[1:], output, describe_checkpoint(run), table[0], len(problems))
    return output


def describe_checkpoint(run: Any) -> str:
    """The checkpoint a prediction or evaluation used, as the user would type it, with its
    epoch: `outputs/.../checkpoints/best.pt (epoch 7)`."""
    from nntrain.reporting.console import display_path

    epoch = run.state.get("epoch")
    return display_path(run.checkpoint_path) + (f" (epoch {epoch})" if epoch else "")


@hydra.main(version_base="1.3", config_path="pkg://nntrain.configs", config_name="predict")
def predict_app(cfg: DictConfig) -> None:
    from nntrain.commands.common import user_errors_end_in_one_line

    with user_errors_end_in_one_line():
        predict(cfg)


def main() -> None:
    """Entry point of the `nntrain-predict` console script."""
    from nntrain.commands.common import run_app

    run_app(predict_app, command="nntrain-predict")
