"""New inputs for a trained model (nntrain-predict): a CSV file's rows, an image, or a folder of
images, made into model input exactly as the run's evaluation made its data, from the
input_spec its checkpoint keeps (each data class's input_spec() writes it: the image size,
resize and crop, mean and std; a table's columns, their encodings and standardisation).
This lives beside the data it mirrors, so that a change to evaluation's preprocessing is made
in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nntrain.errors import UserError, require

if TYPE_CHECKING:  # torch is imported where it is used
    from collections.abc import Iterable

    import torch


@dataclass
class NewInputs:
    """What predict scores: the inputs' names (the output's input column), their model-input
    batches (images decoded batch by batch, so a big folder never sits in memory at once), why
    some inputs (table rows) cannot be scored, by index (their batch rows are placeholders),
    and a note about the inputs to say once (a table's ignored columns, ...)."""

    names: list[str]
    batches: Iterable[torch.Tensor]
    problems: dict[int, str] = field(default_factory=dict)
    note: str | None = None


def image_extensions() -> tuple[str, ...]:
    # Imported when needed: torchvision takes a second to import, and tabular models never do.
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMG_EXTENSIONS


def is_image_name(name: str) -> bool:
    from nntrain.data.image_folder import is_image_name

    return is_image_name(name)


def load_image(path: Path, spec: dict[str, Any]) -> torch.Tensor:
    """One image as model input (C, H, W), preprocessed exactly as evaluation did in training."""
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from nntrain.data.image_folder import check_mode, quiet_pil, too_large, unreadable, upright

    try:
        # PIL warns about palette transparency and large images (the latter while opening);
        # neither is the user's error.
        with quiet_pil(), Image.open(path) as image:
            check_mode(image, path)
            # upright as in training (EXIF orientation); convert loads the pixels
            converted = upright(image).convert("L" if spec["channels"] == 1 else "RGB")
    except Image.DecompressionBombError as error:
        raise UserError(too_large(path)) from error
    except (OSError, SyntaxError, ValueError) as error:  # corrupt, truncated, not an image
        raise UserError(unreadable(path)) from error
    size = list(spec["size"])
    interpolation = spec.get("interpolation", "bilinear")  # older runs: bilinear
    if spec.get("resize_shorter"):  # the imagefolder evaluation transform: resize, centre crop
        mode = F.InterpolationMode(interpolation)
        resized = F.resize(converted, [spec["resize_shorter"]], interpolation=mode, antialias=True)
        converted = F.center_crop(resized, size)
    x = F.pil_to_tensor(converted).float() * (spec["pixel_max"] / 255)  # the stored data's units
    mean, std = (torch.tensor(spec[key]).view(-1, 1, 1) for key in ("mean", "std"))
    # Else normalised, then resized to the model's size as the in-memory sets resize batches
    # (data.resize): an image of the set's own size becomes exactly what evaluation gave.
    from nntrain.data.in_memory import Normalize

    return Normalize(mean, std, (size[0], size[1]), interpolation)(x[None])[0]


def table_columns(spec: dict[str, Any]) -> list[str]:
    """The CSV columns a tabular model reads (for a data=csv model: its table's columns)."""
    if spec["kind"] == "table":
        return [column["name"] for column in spec["columns"]]
    return list(spec["feature_names"])


def read_inputs(given: str, spec: dict[str, Any], batch_size: int) -> NewInputs:
    """The inputs `given` names (a CSV file, an image or a folder of them), refused in one
    sentence when they are not what the model takes."""
    import torch

    path, tabular = Path(given), spec["kind"] in ("tabular", "table")
    if tabular:
        columns = ", ".join(table_columns(spec))
        takes, wanted = "tabular features", f"a CSV file with the columns {columns}"
    else:
        takes, wanted = f"{spec['channels']}-channel images", "an image file or a folder of images"
    require(path.exists(), f"inputs {given} does not exist; give {wanted}.")
    is_csv = path.is_file() and path.suffix.lower() == ".csv"
    is_image = path.is_file() and not is_csv and is_image_name(path.name)
    found = "a folder" if path.is_dir() else "an image" if is_image else "a CSV file"
    require(
        (not path.is_dir() and not is_image) if tabular else not is_csv,
        f"the model takes {takes}, so inputs must be {wanted}; {given} is {found}.",
    )
    if tabular:  # text columns, missing values, identifiers; one result per row
        from nntrain.data.csv_table import prepare_new_rows

        rows = prepare_new_rows(given, spec)
        return NewInputs(rows.names, rows.inputs.split(batch_size), rows.problems, rows.note)
    extensions = " ".join(image_extensions())
    if path.is_dir():
        from nntrain.data.image_folder import list_images

        names = [file.relative_to(path).as_posix() for file in list_images(path)]
        require(
            bool(names),
            f"{given} has no images ({extensions}); put the images to predict in it, "
            "or give an image file.",
        )
        paths = [Path(given, name) for name in names]  # errors name files as the user sees them
    else:
        require(is_image, f"{given} is not an image file ({extensions}); give {wanted}.")
        names, paths = [given], [path]
    batches = (
        torch.stack([load_image(file, spec) for file in paths[start : start + batch_size]])
        for start in range(0, len(paths), batch_size)
    )
    return NewInputs(names, batches)

