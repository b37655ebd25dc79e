"""`nntrain-export`: a trained model as ONNX, TorchScript or safetensors weights, with
model.json beside it (nntrain.inference.export does the writing).

    nntrain-export ckpt=outputs/2026-11-25/10-00-00-mlp-digits format=onnx
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from nntrain import files
from nntrain.commands.settings import ExportSettings
from nntrain.errors import UserError, require
from nntrain.schema import checked


def export(cfg: DictConfig) -> list[Path]:
    """Export cfg.ckpt's model in cfg.format; returns the files written."""
    from nntrain.inference.export import FORMATS, export_model
    from nntrain.inference.trained_run import build_model, load_run

    missing = sorted(OmegaConf.missing_keys(cfg))  # ckpt and format have no default
    if missing:
        raise UserError(
            f"{missing[0]} has no value; set it on the command line, e.g. nntrain-export "
            "ckpt=outputs/2026-11-25/10-00-00-mlp-digits format=onnx."
        )
    fmt = checked(ExportSettings, cfg).format
    checkpoint = Path(str(cfg.ckpt)).expanduser()
    require(
        checkpoint.exists(),
        f"ckpt={cfg.ckpt} does not exist; give a run directory or a checkpoint file, e.g. "
        "ckpt=outputs/2026-11-25/10-00-00-mlp-digits.",
    )
    run = load_run(checkpoint)
    folder = Path(str(cfg.output)).expanduser() if cfg.output else run.run_dir / "export"
    require(
        not folder.is_file() and files.writable_folder(folder),
        f"cannot write into output {folder}: it is a file or not writable; give a folder you "
        "can write to, e.g. output=exported.",
    )
    for name in (FORMATS[fmt], "model.json"):  # checked first: no model without its model.json
        require(
            not (folder / name).is_dir(),
            f"cannot write {folder / name}: a folder of that name is in the way; move it, or "
            "give another folder with output=DIR.",
        )
    folder.mkdir(parents=True, exist_ok=True)
    return export_model(run, build_model(run, "cpu"), fmt, folder)


@hydra.main(version_base="1.3", config_path="pkg://nntrain.configs", config_name="export")
def export_app(cfg: DictConfig) -> None:
    from rich.text import Text

    from nntrain.commands.common import user_errors_end_in_one_line
    from nntrain.reporting.console import display_path, get_console

    with user_errors_end_in_one_line():
        written = export(cfg)
    for path in written:
        get_console().print(Text(f"wrote {display_path(path)}"), soft_wrap=True)


def main() -> None:
    """Entry point of the `nntrain-export` console script."""
    from nntrain.commands.common import run_app

    run_app(export_app, command="nntrain-export")
