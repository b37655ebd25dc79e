"""The `nntrain` command: Hydra composes configs/train.yaml with the user's overrides, this
module builds the data, model, optimizer and schedule from it and hands them to the Trainer.

No training logic lives here. Errors the user can fix (UserError) end as one line on stderr and
exit status 1, without a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from nntrain.errors import UserError


def build(node: DictConfig, group: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with the user's mistakes turned into UserErrors."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        reason = str(cause or error).splitlines()[0]
        raise UserError(f"could not build {group} from {node.get('_target_')}: {reason}") from error


def train(cfg: DictConfig) -> float:
    """Build everything from the composed config, fit, test; return the best monitored value."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from nntrain import console
    from nntrain.reproducibility import seed_everything

    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    console.print_config_tree(cfg)

    show_progress = (
        bool(cfg.trainer.get("progress", True)) and console.interactive() and not multirun
    )
    trainer = build(cfg.trainer, "trainer", progress=show_progress)
    data = build(cfg.data, "data")
    seed_everything(cfg.seed)  # right before the model: its initial weights follow the seed
    model = build(cfg.model, "model", input_shape=data.input_shape, num_classes=data.num_classes)
    optimizer = build(cfg.optimizer, "optimizer")
    scheduler = build(cfg.scheduler, "scheduler")

    result = trainer.fit(
        model,
        data,
        optimizer,
        scheduler,
        run_dir=run_dir,
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
    )
    console.print_summary(result, run_dir)
    return result[cfg.trainer.early_stopping.monitor]


@hydra.main(version_base="1.3", config_path="pkg://nntrain.configs", config_name="train")
def main(cfg: DictConfig) -> float:
    """Entry point of the `nntrain` console script and of `python -m nntrain`."""
    try:
        return train(cfg)
    except UserError as error:
        from nntrain.console import print_error

        print_error(str(error))
        sys.exit(1)
