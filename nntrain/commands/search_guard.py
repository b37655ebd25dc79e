"""A hyperparameter search typed without -m: Hydra composes it and runs one ordinary training,
its sweeper left unused, so the user waits for a run that searches nothing. It is refused
before training, in one sentence."""

from __future__ import annotations

from typing import Any

from nntrain.errors import UserError


def refuse_a_search_without_multirun(cfg: Any, hydra_config: Any) -> None:
    """UserError for `nntrain hparams_search=...` in Hydra's RUN mode (no -m). A resumed run
    is let through: a search's trial replays its overrides (hparams_search=... among them)
    when it is resumed on its own with `nntrain resume=<trial dir>`."""
    from hydra.types import RunMode

    search = hydra_config.runtime.choices.get("hparams_search")
    if not search or hydra_config.mode == RunMode.MULTIRUN or cfg.get("resume"):
        return
    raise UserError(
        f"hparams_search={search} is a search and runs only in multirun mode: add -m, e.g. "
        f"nntrain -m hparams_search={search}; to train once with a trial's values, leave "
        f"hparams_search={search} out."
    )
