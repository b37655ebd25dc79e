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
    target: str,
    *keywords: str,
    base: type = SamplerConf,
    name: str | None = None,
    required: dict[str, Any] | None = None,
) -> type:
    """The config dataclass of an Optuna class (TPESamplerConf for optuna.samplers.TPESampler):
    its _target_, and each keyword it takes at null (not passed: Optuna's own default), so that
    setting one needs no `+`. A module attribute like a class written out: a composed config
    names its dataclass, and pickling it (a SLURM job's saved state) looks the class up here.
    required: keywords Optuna has no default for, with ours."""
    given = required or {}
    fields = [
        ("_target_", str, field(default=target)),
        *((keyword, Any, field(default=given.get(keyword))) for keyword in keywords),
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
class PrunerConf:
    _target_: str = MISSING


# hydra/sweeper/pruner=median (fields as Optuna's pruners; null: Optuna's default). A trial
# reports its monitored metric at every epoch's end; the pruner may stop it there.
PRUNERS = {
    "nop": optuna_conf("optuna.pruners.NopPruner", base=PrunerConf),
    "median": optuna_conf(
        "optuna.pruners.MedianPruner",
        *("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
        base=PrunerConf,
    ),
    "percentile": optuna_conf(
        "optuna.pruners.PercentilePruner",
        *("percentile", "n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
        base=PrunerConf,
        # the 25th percentile: a trial in the worst quarter at an epoch stops
        required={"percentile": 25.0},
    ),
    "successive_halving": optuna_conf(
        "optuna.pruners.SuccessiveHalvingPruner",
        *("min_resource", "reduction_factor", "min_early_stopping_rate", "bootstrap_count"),
        base=PrunerConf,
    ),
    "hyperband": optuna_conf(
        "optuna.pruners.HyperbandPruner",
        *("min_resource", "max_resource", "reduction_factor", "bootstrap_count"),
        base=PrunerConf,
    ),
    "threshold": optuna_conf(
        "optuna.pruners.ThresholdPruner",
        *("lower", "upper", "n_warmup_steps", "interval_steps"),
        base=PrunerConf,
    ),
}


@dataclass
class NntrainOptunaSweeperConf:
    _target_: str = "hydra_plugins.nntrain_optuna_sweeper.optuna_sweeper.NntrainOptunaSweeper"
    # The sweeper builds the sampler itself: Hydra would build it before the sweeper runs, and
    # without optuna installed that fails with an import error instead of our install hint.
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "nop"}])

    # hydra/sweeper/sampler=random (or any Optuna sampler given by _target_). A seeded sampler
    # gets the seed plus the number of trials already in the study, so a continued study draws
    # new points.
    sampler: Any = MISSING  # MISSING: the group entry (merged before this node) stays
    # hydra/sweeper/pruner=median (also percentile, successive_halving, hyperband, threshold;
    # nop: none): each trial reports its monitored metric at every epoch's end, and a trial
    # the pruner stops ends there like an early stop (status pruned, PRUNED in the study).
    pruner: Any = MISSING
    # Whether a pruned trial is still tested (a pass over the test split): off, as for a run
    # that is not worth finishing.
    test_pruned: bool = False
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
    # An Optuna storage URL: sqlite:///search.db on one machine, postgresql+psycopg://... for
    # sweepers on several machines sharing one study; null keeps the study in
    # <sweep dir>/optuna.db (SQLite), so the same command with the same hydra.sweep.dir
    # continues it.
    storage: str | None = None
    # The study to create or continue (load_if_exists); null: "nntrain".
    study_name: str | None = None
    # The study's total of finished trials (complete + pruned): a search that was stopped
    # (Ctrl-C, a crash, kill -9, a preempted sweeper) and started again, or several sweepers
    # sharing the study, run only what is missing.
    n_trials: int = 20
    # Trials in flight at once: a new one starts the moment any ends (hydra/launcher=joblib
    # with hydra.launcher.n_jobs=K runs them in parallel, as does hydra/launcher=slurm).
    n_jobs: int = 1
    # Stop the search when more than this share of its trials have failed (checked as each
    # trial ends); 1.0 never stops early. A search whose every trial failed ends with an error.
    max_failure_rate: float = 1.0
    # Seconds between a running trial's heartbeats (recorded by its job and by this sweeper),
    # and how long without one (null: twice that) makes the trial stale: its job or its
    # sweeper died, and the trial runs again with the same parameters from its last.pt.
    heartbeat_interval: int = 60
    grace_period: int | None = None
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
    for name, node in PRUNERS.items():
        store.store(
            group="hydra/sweeper/pruner", name=name, node=node, provider="nntrain_optuna_sweeper"
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
