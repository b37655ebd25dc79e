"""The sweeper's config schema, registered as `hydra/sweeper=nntrain_optuna` (and `optuna`).

configs/hparams_search/optuna.yaml selects it and fills in nntrain's search space; any key can
be changed on the command line (`hydra.sweeper.n_trials=50`). The samplers are a config group,
`hydra/sweeper/sampler` (tpe, random, grid, cmaes, nsgaii, qmc, gp, bruteforce), as in
hydra-optuna-sweeper, so its configs compose here unchanged.

A sampler field left at null is not passed to the sampler: Optuna's own default applies (the
fields are listed so that `hydra.sweeper.sampler.n_startup_trials=5` needs no `+`).

The names `optuna` (sweeper) and the sampler group's entries are hydra-optuna-sweeper's too:
they are registered here only when that plugin is not installed, so that an environment with it
keeps it working as it did (Hydra would otherwise keep whichever plugin it scanned last).

No `from __future__ import annotations` here: Hydra's plugin scan executes this module before it
is in sys.modules, and dataclasses cannot resolve string annotations then.
"""

import importlib.util
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

UPSTREAM_PACKAGE = "hydra_plugins.hydra_optuna_sweeper"


def upstream_plugin_installed() -> bool:
    """Whether hydra-optuna-sweeper is installed (found without importing it)."""
    try:
        return importlib.util.find_spec(UPSTREAM_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


def motpe_removed(**settings: Any) -> Any:
    """hydra/sweeper/sampler=motpe: that sampler is gone from Optuna 4."""
    raise ValueError(
        "The 'motpe' sampler was removed in Optuna 4.0; use hydra/sweeper/sampler=tpe, which "
        "handles several objectives"
    )


@dataclass
class SamplerConf:
    _target_: str = MISSING
    seed: Any = None


def optuna_conf(
    target: str, *keywords: str, base: type = SamplerConf, name: str | None = None
) -> type:
    """The config dataclass of an Optuna class (TPESamplerConf for optuna.samplers.TPESampler):
    its _target_, and each keyword it takes at null (not passed: Optuna's own default), so that
    setting one needs no `+`. A module attribute like a class written out: a composed config
    names its dataclass, and pickling it (a SLURM job's saved state) looks the class up here."""
    fields = [
        ("_target_", str, field(default=target)),
        *((keyword, Any, field(default=None)) for keyword in keywords),
    ]
    name = name or target.rsplit(".", 1)[-1] + "Conf"
    conf = make_dataclass(name, fields, bases=(base,))
    conf.__module__ = __name__
    globals()[name] = conf
    return conf


SAMPLERS = {
    "tpe": optuna_conf(
        "optuna.samplers.TPESampler",
        *("n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar"),
        *("consider_prior", "prior_weight", "consider_magic_clip", "consider_endpoints"),
        "warn_independent_sampling",
    ),
    "random": optuna_conf("optuna.samplers.RandomSampler"),
    # The grid is built from hydra.sweeper.params (every value of each choice and range); a
    # search_space given here ({key: [values]}) is used instead.
    "grid": optuna_conf("optuna.samplers.GridSampler", "search_space"),
    "cmaes": optuna_conf(
        "optuna.samplers.CmaEsSampler",
        *("x0", "sigma0", "n_startup_trials", "warn_independent_sampling"),
        *("consider_pruned_trials", "restart_strategy", "popsize", "inc_popsize"),
        *("use_separable_cma", "with_margin", "lr_adapt"),
    ),
    "nsgaii": optuna_conf(
        "optuna.samplers.NSGAIISampler",
        *("population_size", "mutation_prob", "crossover_prob", "swapping_prob"),
    ),
    "qmc": optuna_conf(
        "optuna.samplers.QMCSampler",
        *("qmc_type", "scramble", "warn_asynchronous_seeding", "warn_independent_sampling"),
    ),
    "gp": optuna_conf(
        "optuna.samplers.GPSampler",
        *("n_startup_trials", "deterministic_objective", "warn_independent_sampling"),
    ),
    "bruteforce": optuna_conf("optuna.samplers.BruteForceSampler", "avoid_premature_stop"),
    "motpe": optuna_conf(  # says that it is gone
        "hydra_plugins.nntrain_optuna_sweeper.config.motpe_removed", name="MOTPESamplerConf"
    ),
}


@dataclass
class NntrainOptunaSweeperConf:
    _target_: str = "hydra_plugins.nntrain_optuna_sweeper.optuna_sweeper.NntrainOptunaSweeper"
    # The sweeper builds the sampler itself: Hydra would build it before the sweeper runs, and
    # without optuna installed that fails with an import error instead of our install hint.
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])

    # hydra/sweeper/sampler=random (or any Optuna sampler given by _target_). A seeded sampler
    # gets the seed plus the number of trials already in the study, so a continued study draws
    # new points.
    sampler: Any = MISSING  # MISSING: the group entry (merged before this node) stays
    # auto: the direction of what the trials return (trainer.early_stopping.mode; minimize for
    # a regression's val/loss; with `metrics`, minimize a loss, rmse or mae and maximize the
    # rest), or maximize / minimize (`max` / `min` too), or a list of them for several
    # objectives: [maximize, maximize]. One that would seek the worst value of what the trials
    # return (maximize a loss, minimize an accuracy) is refused.
    direction: Any = "auto"
    # The objectives by name, read from each job's metrics.json (one per direction), e.g.
    # [val/acc, train/samples_per_sec]; null: the job's return value (nntrain's: the monitored
    # metric, trainer.early_stopping.monitor).
    metrics: list[str] | None = None
    # An optuna storage URL (sqlite:///search.db) to keep the study; null keeps it in memory.
    storage: str | None = None
    # With a storage, the study to create or continue (load_if_exists).
    study_name: str | None = None
    # Trials this sweep runs; with a stored study, that many more.
    n_trials: int = 20
    # Trials asked at once and launched as one batch (parallel with hydra/launcher=joblib).
    n_jobs: int = 1
    # Stop the search when more than this share of its trials have failed (checked after each
    # batch); 1.0 never stops early. A search whose every trial failed ends with an error.
    max_failure_rate: float = 1.0
    # module.function(cfg, trial) called for each trial after the params are drawn: it may add
    # parameters that depend on them (trial.suggest_float("z", trial.params["x"], ...)).
    custom_search_space: str | None = None
    # key: Hydra override value, e.g. `optimizer.lr: tag(log, interval(1e-4, 1e-1))`,
    # `data.batch_size: choice(32, 64, 128)`; a plain value fixes the key for every trial.
    params: dict[str, Any] | None = None


def register() -> None:
    store = ConfigStore.instance()
    names = ["nntrain_optuna"]
    upstream = upstream_plugin_installed()
    if not upstream:
        names.append("optuna")
    for name in names:
        store.store(
            group="hydra/sweeper",
            name=name,
            node=NntrainOptunaSweeperConf,
            provider="nntrain_optuna_sweeper",
        )
    if not upstream:  # with it, its own sampler configs (same names, same samplers) stay
        for name, node in SAMPLERS.items():
            store.store(
                group="hydra/sweeper/sampler",
                name=name,
                node=node,
                provider="nntrain_optuna_sweeper",
            )


register()
