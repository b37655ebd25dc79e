"""The sweeper: ask Optuna for trials, run each as an ordinary Hydra job, tell Optuna the result.

Each batch of `n_jobs` trials is asked at once and handed to the configured launcher as one
batch (so hydra/launcher=joblib runs them in parallel); the job's return value is the
objective. A job that raised, or returned NaN or another non-finite value, is told as a failed
trial and the search goes on: one bad corner of the search space must not end a long search.
Only this process touches the study's storage; jobs know nothing of Optuna.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, configure_log
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .search_space import SearchSpace, params_to_overrides, parse_search_space

if TYPE_CHECKING:
    from types import ModuleType

    from hydra.plugins.launcher import Launcher
    from optuna import Study
    from optuna.samplers import BaseSampler
    from optuna.trial import Trial

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
# trainer.early_stopping.mode says max/min; Optuna says maximize/minimize. Both are accepted.
DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}


def direction_from_mode(mode: str) -> str:
    """Optuna's direction for a metric mode (max -> maximize, min -> minimize)."""
    direction = DIRECTIONS.get(str(mode).strip().lower())
    if direction is None:
        raise HydraException(
            f"hydra.sweeper.direction={mode} is not a direction; use maximize or minimize "
            "(max and min work too)."
        )
    return direction


def import_optuna() -> ModuleType:
    """Optuna is an optional dependency (the `sweep` extra): say how to get it."""
    try:
        import optuna
    except ImportError:
        raise HydraException(
            "the Optuna sweeper needs optuna, which is not installed; install it with "
            "pip install 'nntrain[sweep]'."
        ) from None
    return optuna


class NntrainOptunaSweeper(Sweeper):
    """hydra/sweeper=nntrain_optuna: Optuna's ask/tell loop over Hydra jobs."""

    def __init__(
        self,
        sampler: DictConfig | None,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
    ) -> None:
        # Checked in sweep(), not here: Hydra would wrap an error raised here in its own text.
        self.sampler_config = sampler
        self.direction_setting = direction  # maximize/minimize or max/min
        self.direction = "minimize"
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = OmegaConf.to_container(params, resolve=True) if params else {}
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None
        self.next_job_idx = 0
        self.launched = False  # whether a batch of this sweep has run
        # Set when a sampler that enumerates a finite space (BruteForceSampler) has tried it all.
        self.space_exhausted = False

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    @property
    def metric(self) -> str:
        """The objective's name in messages: nntrain's monitored metric, if there is one."""
        assert self.config is not None
        return str(OmegaConf.select(self.config, "trainer.early_stopping.monitor") or "value")

    def sweep(self, arguments: list[str]) -> None:
        """Run n_trials trials, n_jobs at a time; then write and log the best one."""
        assert self.config is not None and self.hydra_context is not None
        if self.n_trials < 0 or self.n_jobs < 1:
            raise HydraException(
                f"hydra.sweeper.n_trials={self.n_trials}, hydra.sweeper.n_jobs={self.n_jobs}: "
                "n_trials must be 0 or more and n_jobs 1 or more."
            )
        self.direction = direction_from_mode(self.direction_setting)
        optuna = import_optuna()
        # Our own log lines say what happens; Optuna's INFO lines would repeat them.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = parse_search_space(
            params_to_overrides(self.params) + list(arguments), self.hydra_context.config_loader
        )
        if not space.distributions:
            raise HydraException(
                "the Optuna sweeper has nothing to search: set hydra.sweeper.params (as "
                "hparams_search=optuna does) or give a sweep such as "
                "'optimizer.lr=tag(log, interval(1e-4, 1e-1))'."
            )
        study = self.open_study(optuna)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        new_trials: list[int] = []
        while len(new_trials) < self.n_trials and not self.space_exhausted:
            trials = self.ask(study, space, min(self.n_jobs, self.n_trials - len(new_trials)))
            new_trials += [trial.number for trial in trials]
            self.run_batch(study, trials, space)
        self.report(study, sweep_dir, new_trials)

    def open_study(self, optuna: ModuleType) -> Study:
        """Create the study, or continue the stored one of the same name."""
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.build_sampler(0),
            direction=self.direction,
            load_if_exists=True,
        )
        stored_direction = study.direction.name.lower()
        if stored_direction != self.direction:
            raise HydraException(
                f"study {study.study_name!r} in {self.storage} was created to "
                f"{stored_direction} its objective, this search would {self.direction} it; "
                "continue it with the same trainer.early_stopping.mode, or start a new study "
                "with hydra.sweeper.study_name=NAME."
            )
        earlier = len(study.get_trials(deepcopy=False))
        if earlier:
            # A seeded sampler built afresh would draw the first run's points again.
            study.sampler = self.build_sampler(earlier)
        log.info(
            f"Optuna study {study.study_name!r} ({self.storage or 'in memory'}): "
            f"{self.direction} {self.metric}; {earlier} earlier trials, {self.n_trials} to run, "
            f"{self.n_jobs} at a time"
        )
        return study

    def build_sampler(self, seed_offset: int) -> BaseSampler | None:
        """The configured sampler (None: Optuna's default); its seed moved on by seed_offset."""
        from hydra.utils import instantiate

        if self.sampler_config is None:
            return None
        seed = self.sampler_config.get("seed")
        if seed is not None and seed_offset:
            return instantiate(self.sampler_config, seed=int(seed) + seed_offset)
        return instantiate(self.sampler_config)

    def ask(self, study: Study, space: SearchSpace, count: int) -> list[Trial]:
        try:
            return [study.ask(space.distributions) for _ in range(count)]
        except ValueError as error:  # a stored study whose parameters had another kind
            raise HydraException(
                f"the search space does not fit study {study.study_name!r}: {error} Start a "
                "new study with hydra.sweeper.study_name=NAME."
            ) from None

    def run_batch(self, study: Study, trials: list[Trial], space: SearchSpace) -> None:
        """Launch one job per trial, as one batch, and tell the study each job's outcome."""
        assert self.config is not None and self.launcher is not None
        batch = [space.overrides(trial.params) for trial in trials]
        try:
            # A search space that does not compose is the user's mistake, not a failed trial:
            # it stops the sweep with Hydra's message before any job starts.
            self.validate_batch_is_legal(batch)
            try:
                returns = self.launcher.launch(batch, initial_job_idx=self.job_idx(trials))
            except Exception as error:
                # A launcher raises for a job it lost (a joblib worker killed for memory, a
                # SLURM time limit): those trials failed. Before any batch ran, it is the
                # launcher's setup that is wrong, and the user must hear of it.
                if not self.launched:
                    raise
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                reason = first_line(f"{type(error).__name__}: {error}")
                log.error(f"the launcher lost trials {[t.number for t in trials]}: {reason}")
                for trial, overrides in zip(trials, batch, strict=True):
                    trial.set_user_attr("overrides", overrides)
                    trial.set_user_attr("error", reason)
                    self.fail(study, trial)
                return
            self.launched = True
            # Each job configured logging for its own log file; back to Hydra's console.
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            for trial, overrides, job in zip(trials, batch, returns, strict=True):
                self.tell(study, trial, overrides, job)
        except BaseException:
            # Ctrl-C or a config error: no trial may stay RUNNING in a stored study.
            for trial in trials:
                self.fail(study, trial)
            raise

    def fail(self, study: Study, trial: Trial) -> None:
        """Tell the study a trial failed (unless it was told already)."""
        from optuna.trial import TrialState

        self.tell_study(study, trial, state=TrialState.FAIL, skip_if_finished=True)

    def job_idx(self, trials: list[Trial]) -> int:
        """The first job number of a batch: the trial number when the batch's trials are
        numbered in a row (job dir 7 is trial 7, also when a stored study continues), else
        the next unused number of this sweep (another process is asking the same study)."""
        first = trials[0].number
        in_a_row = [trial.number for trial in trials] == list(range(first, first + len(trials)))
        start = first if in_a_row and first >= self.next_job_idx else self.next_job_idx
        self.next_job_idx = start + len(trials)
        return start

    def tell(self, study: Study, trial: Trial, overrides: list[str], job: JobReturn) -> None:
        """Record the job's directory and overrides with the trial, then its value or failure."""
        job_dir = job_directory(job)
        trial.set_user_attr("overrides", list(overrides))
        if job_dir is not None:
            trial.set_user_attr("job_dir", str(job_dir))
        value, error = objective(job)
        job_name = f" (job {job_dir.name})" if job_dir is not None else ""
        if error is None:
            log.info(f"trial {trial.number}{job_name}: {self.metric}={value:.6g}")
            self.tell_study(study, trial, values=value)
        else:
            log.warning(f"trial {trial.number}{job_name} failed: {error}")
            trial.set_user_attr("error", error)
            self.fail(study, trial)

    def tell_study(self, study: Study, trial: Trial, **outcome: Any) -> None:
        """study.tell, where a sampler that has tried every point asks the study to stop.

        It calls study.stop(), which only works inside study.optimize and raises here; Optuna
        stores the trial before that, so the search simply ends after this batch.
        """
        try:
            study.tell(trial, **outcome)
        except RuntimeError as error:
            if "Study.stop" not in str(error):
                raise
            if not self.space_exhausted:
                log.info("the sampler has tried every point of the search space; stopping")
            self.space_exhausted = True

    def report(self, study: Study, sweep_dir: Path, new_trials: list[int]) -> None:
        """Write <sweep dir>/optimization_results.yaml and log the best trial of the study."""
        from optuna.trial import TrialState

        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        n_failed = sum(t.state == TrialState.FAIL for t in finished)
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        best = study.best_trial if complete else None
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "storage": self.storage,
            "direction": self.direction,
            "metric": self.metric,
            "best_trial": best.number if best else None,
            "best_value": best.value if best else None,
            "best_params": dict(best.params) if best else None,
            "best_overrides": best.user_attrs.get("overrides") if best else None,
            "best_job_dir": best.user_attrs.get("job_dir") if best else None,
            # The study's trials, this sweep's and those of earlier runs of a stored study.
            "n_trials": len(finished),
            "n_failed": n_failed,
            "new_trials": new_trials,
        }
        path = sweep_dir / RESULTS_FILE
        OmegaConf.save(OmegaConf.create(results), path)
        if best is None:
            log.warning(f"no trial of study {study.study_name!r} succeeded; see {path}")
            return
        log.info(
            f"Best trial {best.number} of {len(finished)} ({n_failed} failed): "
            f"{self.metric}={best.value:.6g}"
        )
        log.info(f"Best overrides: {' '.join(results['best_overrides'] or [])}")
        log.info(f"Results: {path}")


def job_directory(job: JobReturn) -> Path | None:
    """The job's output directory, whichever launcher ran it (JobReturn carries its config)."""
    output_dir = (
        OmegaConf.select(job.hydra_cfg, "hydra.runtime.output_dir") if job.hydra_cfg else None
    )
    return Path(output_dir) if output_dir else None


def objective(job: JobReturn) -> tuple[float | None, str | None]:
    """(value, None) for a job that returned a finite number, else (None, why it failed)."""
    try:
        returned = job.return_value  # re-raises the job's exception when it failed
    except Exception as error:
        return None, first_line(f"{type(error).__name__}: {error}")
    try:
        value = float(returned)
    except (TypeError, ValueError):
        return None, f"the job returned {returned!r}, not a number"
    if math.isfinite(value):
        return value, None
    # nntrain's jobs record why in status.json (a diverged loss returns NaN, not an exception).
    return None, job_error(job) or f"the job returned {value}"


def job_error(job: JobReturn) -> str | None:
    job_dir = job_directory(job)
    status_file = job_dir / "status.json" if job_dir is not None else None
    if status_file is None or not status_file.is_file():
        return None
    try:
        error = json.loads(status_file.read_text()).get("error")
    except (OSError, ValueError, AttributeError):
        return None
    return first_line(str(error)) if error else None


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
