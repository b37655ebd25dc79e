"""The configured Optuna sampler, built from hydra.sweeper.sampler.

A field left at null is not passed (Optuna's default applies), so switching `_target_` to
another sampler keeps working with the fields of the config group's entry. The grid sampler
gets its grid from the search space: every value of each choice() and range().
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from nntrain.errors import first_line

from .search_space import SearchSpace

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler

log = logging.getLogger(__name__)

# Samplers that need a package optuna does not install: target -> (module, pip name).
NEEDS = {"CmaEsSampler": ("cmaes", "cmaes")}


def sampler_settings(config: DictConfig | None) -> dict[str, Any] | None:
    """The sampler's config as plain values, without nulls and Hydra's _partial_."""
    if config is None:
        return None
    settings = OmegaConf.to_container(config, resolve=True)
    assert isinstance(settings, dict)
    settings.pop("_partial_", None)  # hydra-optuna-sweeper's grid entry is a partial
    return {str(key): value for key, value in settings.items() if value is not None}


def target_name(settings: dict[str, Any]) -> str:
    return str(settings.get("_target_", "")).rsplit(".", 1)[-1]


def is_grid(settings: dict[str, Any] | None) -> bool:
    return settings is not None and target_name(settings) == "GridSampler"


def build_sampler(
    settings: dict[str, Any] | None, seed_offset: int, grid: dict[str, list[Any]] | None
) -> BaseSampler | None:
    """The sampler (None: Optuna's default); its seed moved on by seed_offset."""
    from hydra.utils import instantiate

    if settings is None:
        return None
    settings = dict(settings)
    needed = NEEDS.get(target_name(settings))
    if needed and importlib.util.find_spec(needed[0]) is None:
        raise HydraException(
            f"the {target_name(settings)} sampler needs the {needed[0]} package, which is not "
            f"installed; install it with pip install {needed[1]}."
        )
    if grid is not None and "search_space" not in settings:
        settings["search_space"] = grid
    if settings.get("seed") is not None and seed_offset:
        settings["seed"] = int(settings["seed"]) + seed_offset
    try:
        sampler: BaseSampler = instantiate(settings)
        return sampler
    except Exception as error:  # a misspelt field, a _target_ that is not a sampler
        cause = error.__cause__ or error
        reason = first_line(f"{type(cause).__name__}: {cause}")
        raise HydraException(
            f"hydra.sweeper.sampler ({settings.get('_target_')}) cannot be built: {reason}; "
            "check its fields against the sampler's documentation."
        ) from None


def grid_of(distributions: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """Every value of each search key, for the grid sampler; a continuous key has none."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    grid: dict[str, list[Any]] = {}
    for key, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            count = round((dist.high - dist.low) / dist.step) + 1
            grid[key] = [round(dist.low + i * dist.step, 12) for i in range(count)]
        else:
            raise HydraException(
                f"the grid sampler needs a finite set of values for {key}, which is "
                "continuous here; give it as choice(...) or range(start, stop, step)."
            )
    return grid


def grid_size(grid: dict[str, list[Any]]) -> int:
    size = 1
    for values in grid.values():
        size *= len(values)
    return size


def grid_for(settings: dict[str, Any] | None, space: SearchSpace) -> dict[str, list[Any]] | None:
    """The grid to search when the sampler is the grid sampler (else None)."""
    if not is_grid(settings):
        return None
    assert settings is not None
    given = settings.get("search_space")
    if given is not None:
        return {str(key): list(values) for key, values in given.items()}
    return grid_of(space.distributions)
