"""`nntrain-lr-find`: the learning-rate range test on the training config (same groups and
overrides as nntrain), nntrain.training.lr_finder doing the test.

It writes lr_find.png, lr_find.json and TensorBoard's lr_find/* into its own run directory,
prints the suggested lr with its rule, and the nntrain command that trains with it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig

from nntrain import files, runs
from nntrain.commands.common import check_no_missing_values, run_app, user_errors_end_in_one_line
from nntrain.commands.schema_check import check_settings
from nntrain.errors import require
from nntrain.instantiate import build
from nntrain.launch.run_dirs import refuse_a_taken_run_dir

if TYPE_CHECKING:
    from nntrain.training.lr_finder import RangeTest


def find_lr(cfg: DictConfig, run_dir: Path) -> RangeTest:
    """Build the data, model and optimizer as nntrain would, run the range test, write its
    files into run_dir; returns the test."""
    from nntrain.models.contract import build_checked
    from nntrain.training import distributed
    from nntrain.training.lr_finder import RangeSettings, range_test
    from nntrain.training.seeding import check_seed, seed_everything

    check_no_missing_values(cfg)
    require(
        not cfg.get("resume"),
        "nntrain-lr-find starts from a model's initial weights and resumes nothing; leave "
        "resume= out.",
    )
    require(
        distributed.world_size() == 1,
        "nntrain-lr-find runs in one process (one device); start it without torchrun.",
    )
    check_seed(cfg.seed)  # before data.seed, which is ${seed}
    settings = check_settings(cfg)["lr_find"]
    assert isinstance(settings, RangeSettings)
    trainer = build(cfg.trainer, "trainer", progress=False)
    data = build(cfg.data, "data")
    seed_everything(cfg.seed)  # the same initial weights as `nntrain` with this config
    model = build_checked(cfg.model, tuple(data.input_shape), data.num_classes)
    optimizer = build(cfg.optimizer, "optimizer")
    test = range_test(trainer, model, data, optimizer, settings)
    write_results(test, run_dir)
    return test


def write_results(test: RangeTest, run_dir: Path) -> None:
    from nntrain.reporting.metric_figures import lr_find_figure
    from nntrain.reporting.tensorboard import TensorBoardLogger

    files.write_json(run_dir / "lr_find.json", test.as_dict())
    picture = lr_find_figure(test.lrs, test.losses, test.smoothed, test.suggestion, test.rule)
    picture.save(run_dir / "lr_find.png")
    board = TensorBoardLogger(run_dir)
    try:
        for step, values in enumerate(zip(test.lrs, test.losses, test.smoothed, strict=True)):
            lr, loss, smoothed = values
            board.scalars(
                {"lr_find/lr": lr, "lr_find/loss": loss, "lr_find/smoothed": smoothed}, step
            )
        board.image("lr_find", picture.image, len(test.lrs))
    finally:
        board.close()


def train_command(overrides: list[str], lr: float) -> str:
    """The nntrain command line of this config with optimizer.lr=lr."""
    kept = [
        o
        for o in overrides
        if not o.split("=")[0].lstrip("+~").startswith(("lr_find.", "hydra.", "optimizer.lr"))
    ]
    return shlex.join(["nntrain", *kept, f"optimizer.lr={lr:.2g}"])


def report(test: RangeTest, run_dir: Path, overrides: list[str]) -> None:
    from rich.text import Text

    from nntrain.reporting.console import display_path, get_console

    console = get_console()
    console.print(
        Text(
            f"LR range test: {len(test.lrs)} steps from lr {test.lrs[0]:.2g} to "
            f"{test.lrs[-1]:.2g}; stopped: {test.stopped}.\n"
            f"suggested lr {test.suggestion:.2g} ({test.rule}; the steepest descent of the "
            f"smoothed loss was at {test.steepest:.2g})\n"
            f"plot: {display_path(run_dir / 'lr_find.png')}  (tensorboard --logdir "
            f"{display_path(run_dir)})\n"
            f"train with it:\n  {train_command(overrides, test.suggestion)}"
        ),
        soft_wrap=True,
    )


@hydra.main(version_base="1.3", config_path="pkg://nntrain.configs", config_name="lr_find")
def lr_find_app(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    try:
        with user_errors_end_in_one_line():
            test = find_lr(cfg, run_dir)
    except BaseException:
        if not (run_dir / "lr_find.json").is_file():  # a refused start leaves nothing behind
            (run_dir / f"{hydra_config.job.name}.log").unlink(missing_ok=True)
            runs.remove_unsaved(run_dir)
        raise
    report(test, run_dir, list(hydra_config.overrides.task))
    return test.suggestion


def main() -> None:
    """Entry point of the `nntrain-lr-find` console script."""
    run_app(lr_find_app, refuse_a_taken_run_dir, command="nntrain-lr-find")
