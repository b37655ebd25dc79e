"""Continuing a run, once Hydra has composed its config: the checkpoint resume= names is read
(and refused when a table it trained on has changed), its config compared with the composed
one (the model, data, optimizer, scheduler and seed must match; trainer settings such as
max_epochs may change deliberately), and, once accepted, the run's files take it up: its
.hydra/ rewritten, a checkpoint kept outside its run adopted into the new run directory.
nntrain.launch.resume_command_line is the half that runs before Hydra composes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from nntrain import files, runs
from nntrain.errors import UserError, require

# Keys whose change would make the resumed run a different run.
FROZEN_GROUPS = ("model", "data", "optimizer", "scheduler", "seed")


# ...except these, which say where things are, not what is trained (a table's files are
# compared by their contents instead: nntrain.data.table_source).
MAY_DIFFER = {
    "data.root",
    "data.download",
    "data.num_workers",
    "data.path",
    "data.train_path",
    "data.val_path",
    "data.test_path",
}


# The settings of data=csv (and of a user's data class alike) that name files.
DATA_FILE_KEYS = ("path", "train_path", "val_path", "test_path")


# Keys added to the frozen groups after runs were saved without them, with the value that
# changes nothing (MixUp/CutMix off; no class weights, no balanced sampler; the images resized
# and normalised as before the model's data config: bilinear, crop 0.875, no mean/std given):
# such a run resumes as the same run.
ADDED_KEYS = {
    "data.mixup_alpha": 0.0,
    "data.cutmix_alpha": 0.0,
    "data.mix_switch_prob": 0.5,
    "data.mix_prob": 1.0,
    "data.class_weights": None,
    "data.sampler": None,
    "data.interpolation": "bilinear",
    "data.crop_fraction": 0.875,
    "data.mean": None,
    "data.std": None,
}

# Keys that moved to another group: an old command line gets told where they live now.
# old key -> (new key, where it exists if not everywhere)
MOVED_KEYS = {
    "optimizer.fused": ("trainer.fused_optimizer", ""),
    "optimizer.backbone_lr_scale": (
        "model.backbone_lr_scale",
        " (a setting of the models with a pretrained backbone, such as model=resnet18)",
    ),
}



def override_key(override: str) -> str:
    """The key an override sets: model.hidden of +model.hidden=[8] or ~model.hidden."""
    return override.split("=", 1)[0].lstrip("+~")


def with_moved_keys(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config with the keys that moved out of the optimizer group since it
    started (MOVED_KEYS) where the current config keeps them, so
    that a run started before they moved is compared like with like."""
    optimizer = dict(saved.get("optimizer") or {})
    fused = optimizer.pop("fused", None)
    scale = optimizer.pop("backbone_lr_scale", None)
    if fused is None and scale is None:
        return saved
    saved = {**saved, "optimizer": optimizer}
    if fused is not None:  # trainer settings are not compared, but keep the record whole
        saved["trainer"] = {"fused_optimizer": fused, **(saved.get("trainer") or {})}
    model = saved.get("model") or {}
    if scale is not None and "backbone_lr_scale" in (current.get("model") or {}):
        saved["model"] = {**model, "backbone_lr_scale": model.get("backbone_lr_scale", scale)}
    return saved


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): node}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key (run: a, now: b)' for every key of the frozen groups that differs."""
    saved_flat = {k: v for k, v in flatten(saved).items() if k.split(".")[0] in FROZEN_GROUPS}
    current_flat = {k: v for k, v in flatten(current).items() if k.split(".")[0] in FROZEN_GROUPS}
    missing = object()
    differences = []
    for key in sorted(set(saved_flat) | set(current_flat)):
        if key in MAY_DIFFER:
            continue
        before, now = saved_flat.get(key, missing), current_flat.get(key, missing)
        if before is missing and key in ADDED_KEYS and now == ADDED_KEYS[key]:
            continue
        if before != now:
            shown = ["absent" if v is missing else repr(v) for v in (before, now)]
            differences.append(f"{key} (run: {shown[0]}, now: {shown[1]})")
    return differences


def check_same_run(checkpoint: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    saved = with_moved_keys(files.load_yaml(checkpoint.get("config") or "") or {}, current)
    differences = config_differences(saved, current)
    if differences:
        raise UserError(
            f"cannot resume {path}: the config differs from the run's in {'; '.join(differences)}; "
            "resume with the run's values (drop those overrides), or start a new run without "
            "resume=. Trainer settings such as trainer.max_epochs may change."
        )


def write_hydra_files(run_dir: Path) -> None:
    """The run's .hydra/ (config, hydra, overrides) as Hydra writes it at a run's start, for an
    accepted resume: the next plain resume= replays these overrides."""
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.get()
    overrides = [o for o in hydra_config.overrides.task if not o.startswith("hydra.output_subdir")]
    folder = run_dir / ".hydra"
    files.write_text(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
    files.write_text(folder / "hydra.yaml", OmegaConf.to_yaml({"hydra": hydra_config}))



def resumed_state(cfg: DictConfig) -> dict[str, Any] | None:
    """The checkpoint resume= names, or None; refused in one sentence (before anything of the
    run changes) when a table it trained on has changed (nntrain.data.table_source)."""
    if not cfg.get("resume"):
        return None
    from nntrain.checkpoint import load_resumable
    from nntrain.data.table_source import changed_data

    state = load_resumable(cfg.resume)
    change = changed_data(state.get("inputs") or {}, cfg.data)
    require(
        change is None,
        f"cannot resume {cfg.resume}: {change}; resume with the data the run trained on, or "
        "train a new run on this data (without resume=).",
    )
    return state


def accept_resume(
    cfg: DictConfig,
    resume: dict[str, Any],
    saved: dict[str, Any],
    run_dir: Path,
    main_process: bool,
    tree: Any,
) -> None:
    """A resume whose config matches its run's (else one sentence): from here on the run's
    files may change: its .hydra/ is rewritten, a loose checkpoint adopted, train.log opened."""
    from nntrain.reporting import console

    check_same_run(resume, saved, cfg.resume)
    if not main_process:
        return
    write_hydra_files(run_dir)
    files.write_text(run_dir / ".hydra" / "config.yaml", OmegaConf.to_yaml(cfg))
    if runs.run_dir_of(Path(cfg.resume)) != run_dir:
        adopt_checkpoint(Path(cfg.resume), resume, run_dir)
    console.LOG_FILE["enabled"] = True
    console.to_log_file(console.rendered(tree))


def adopt_checkpoint(checkpoint: Path, state: dict[str, Any], run_dir: Path) -> None:
    """A run resumed from a checkpoint kept outside its run directory continues in a new one,
    which starts with that checkpoint as its last.pt, and with the best.pt beside it when that
    is of the same run (else the test falls back to last.pt, and says so)."""
    from nntrain.checkpoint import load_checkpoint
    from nntrain.reporting.console import display_path, log

    target = runs.checkpoint_path(run_dir, "last")
    target.parent.mkdir(parents=True, exist_ok=True)
    files.copy_file(checkpoint, target)
    best = checkpoint.with_name("best.pt")
    if best != checkpoint and best.is_file() and best.stat().st_size > 0:
        with contextlib.suppress(Exception):  # not a checkpoint of this run: not adopted
            if same_run_configs(load_checkpoint(best), state):
                files.copy_file(best, runs.checkpoint_path(run_dir, "best"))
    log.info(
        f"resuming {display_path(checkpoint)} in the new run directory {display_path(run_dir)}"
    )


def same_run_configs(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two checkpoints' configs describe the same run (trainer settings may differ)."""
    configs = [files.load_yaml(c.get("config") or "") or {} for c in (one, other)]
    return not config_differences(*configs)


def absolute_data_files(cfg: DictConfig) -> None:
    """The data files' paths made absolute (~ expanded) in the run's config, which its
    checkpoints keep: nntrain-eval and resume= then read the very files the run read, from
    whatever folder they are started in."""
    with open_dict(cfg):
        for key in DATA_FILE_KEYS:
            value = cfg.data.get(key)
            if isinstance(value, str) and value and "://" not in value:  # not a URL
                cfg.data[key] = str(Path(os.path.expanduser(value)).absolute())


def command_line_overrides() -> list[str]:
    """The overrides that make this run's config (as in .hydra/overrides.yaml, without resume=
    and Hydra's own): kept in its checkpoints, so that a checkpoint copied out of its run
    directory can still be resumed with its own config."""
    from hydra.core.hydra_config import HydraConfig

    return [
        o
        for o in HydraConfig.get().overrides.task
        if override_key(o) != "resume" and not override_key(o).startswith("hydra.")
    ]

