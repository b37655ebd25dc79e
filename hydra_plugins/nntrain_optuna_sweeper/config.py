"""The sweeper's config schema, registered as `hydra/sweeper=nntrain_optuna`.

configs/hparams_search/optuna.yaml selects it and fills in nntrain's search space; any key can
be changed on the command line (`hydra.sweeper.n_trials=50`).

No `from __future__ import annotations` here: Hydra's plugin scan executes this module before it
is in sys.modules, and dataclasses cannot resolve string annotations then.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


def default_sampler() -> dict[str, Any]:
    return {"_target_": "optuna.samplers.TPESampler", "seed": None}


@dataclass
class NntrainOptunaSweeperConf:
    _target_: str = "hydra_plugins.nntrain_optuna_sweeper.optuna_sweeper.NntrainOptunaSweeper"
    # The sweeper builds the sampler itself: Hydra would build it before the sweeper runs, and
    # without optuna installed that fails with an import error instead of our install hint.
    _recursive_: bool = False

    # Any optuna sampler, built with hydra.utils.instantiate. A seeded sampler gets the seed
    # plus the number of trials already in the study, so a continued study draws new points.
    sampler: Any = field(default_factory=default_sampler)
    # maximize / minimize; `max` / `min` too, so it can follow trainer.early_stopping.mode.
    direction: str = "minimize"
    # An optuna storage URL (sqlite:///search.db) to keep the study; null keeps it in memory.
    storage: str | None = None
    # With a storage, the study to create or continue (load_if_exists).
    study_name: str | None = None
    # Trials this sweep runs; with a stored study, that many more.
    n_trials: int = 20
    # Trials asked at once and launched as one batch (parallel with hydra/launcher=joblib).
    n_jobs: int = 1
    # key: Hydra override value, e.g. `optimizer.lr: tag(log, interval(1e-4, 1e-1))`,
    # `data.batch_size: choice(32, 64, 128)`; a plain value fixes the key for every trial.
    params: dict[str, Any] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="nntrain_optuna",
    node=NntrainOptunaSweeperConf,
    provider="nntrain_optuna_sweeper",
)
