"""The sweeper: ask Optuna for trials, run each as an ordinary Hydra job, tell Optuna the result.

`n_jobs` trials stay in flight, each handed to the configured launcher on its own (in a thread
of its own when the launcher runs jobs elsewhere: joblib's processes, SLURM), and a new one is
asked the moment any ends (in_flight.py: the study's budget, heartbeats, trials run again);
the job's return value is the objective, or, with `metrics`, the named values of its
metrics.json (objectives.py). A job that raised, or returned NaN or another non-finite value,
is told as a failed trial and the search goes on (one bad corner of the search space must not
end a long search) unless more than `max_failure_rate` of its trials failed. An nntrain job
reaches the study itself only to report its epochs, be pruned and beat
(nntrain.launch.search_trial); this process asks and tells.

The objective is named by what the trials return (a regression's nntrain jobs return val/loss,
not the val/acc they monitor by default), and a direction that would seek its worst value is
refused: before any trial where the config says what the trials return, else when the first
one says it (data.task=auto). A Ctrl-C before a trial is launched leaves it waiting in the
study, not failed (interrupts.py); one that cut trials short leaves a copy of each waiting.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hydra.core.utils import JobReturn, configure_log
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .in_flight import (
    ENV_OVERRIDE,
    Heartbeats,
    Launched,
    fail_stale,
    finished,
    has_last_checkpoint,
    retried_number,
    retry_later,
    room_for_another,
    state_counts,
    surplus,
)
from .interrupts import give_back, sigint_held
from .objectives import (
    decides_objective,
    direction_from_mode,
    directions_from,
    first_line,
    followed_objective,
    guessed_direction,
    is_auto,
    job_directory,
    job_status,
    nntrain_returns,
    objective,
    task_in,
    wrong_way,
)
from .samplers import build_sampler, grid_for, grid_size, sampler_settings
from .search_space import (
    SearchSpace,
    composition_shape,
    params_to_overrides,
    parse_search_space,
)

if TYPE_CHECKING:
    from types import ModuleType

    from hydra.plugins.launcher import Launcher
    from optuna import Study
    from optuna.trial import FrozenTrial, Trial

    from nntrain.tasks import Task

__all__ = ["NntrainOptunaSweeper", "direction_from_mode", "import_optuna", "objective"]

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
LINK_VARIABLE = "NNTRAIN_SEARCH_TRIAL"  # nntrain.launch.search_trial.ENVIRONMENT_VARIABLE
# Hydra's own sweepers' flow, for scripts/search_benchmark.py only: n_jobs trials at a time,
# the next ones once all of them have ended.
BATCHES = os.environ.get("NNTRAIN_SEARCH_BATCHES") == "1"
# The study of a search given no hydra.sweeper.storage, in its sweep dir.
STUDY_FILE = "optuna.db"


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


def build_pruner(settings: dict[str, Any] | None) -> Any:
    """The Optuna pruner of hydra.sweeper.pruner (None: none, Optuna's NopPruner)."""
    from hydra.utils import instantiate

    if settings is None:
        settings = {"_target_": "optuna.pruners.NopPruner"}
    try:
        return instantiate(settings)
    except Exception as error:  # a misspelt field, a value Optuna refuses
        cause = error.__cause__ or error
        raise HydraException(
            f"hydra.sweeper.pruner ({settings.get('_target_')}) cannot be built: "
            f"{first_line(f'{type(cause).__name__}: {cause}')}; check its fields against "
            "Optuna's pruner (e.g. hydra.sweeper.pruner.n_warmup_steps=2)."
        ) from None


def load_custom_search_space(path: str | None) -> Callable[[DictConfig, Trial], None] | None:
    from hydra.utils import get_method

    if not path:
        return None
    # get_method also logs the failure (two lines of Hydra's): the error below says it once.
    hydra_utils_log = logging.getLogger("hydra.utils")
    was_disabled, hydra_utils_log.disabled = hydra_utils_log.disabled, True
    try:
        return get_method(path)
    except Exception as error:
        cause = error.__cause__ or error
        raise HydraException(
            f"hydra.sweeper.custom_search_space={path} cannot be loaded "
            f"({first_line(str(cause))}); give it as module.function, a function(cfg, trial) "
            "in a module Python can import (PYTHONPATH=. for one in this directory)."
        ) from None
    finally:
        hydra_utils_log.disabled = was_disabled


def absolute_sqlite(url: str) -> str:
    """A relative SQLite path made absolute: every job opens the same file, wherever it runs."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/") or ":memory:" in url:
        return url
    return prefix + str(Path(url[len(prefix) :]).resolve())


class NntrainOptunaSweeper(Sweeper):
    """hydra/sweeper=nntrain_optuna: Optuna's ask/tell loop over Hydra jobs."""

    def __init__(
        self,
        sampler: DictConfig | None,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
        metrics: list[str] | None = None,
        max_failure_rate: float = 1.0,
        custom_search_space: str | None = None,
        pruner: DictConfig | None = None,
        test_pruned: bool = False,
        heartbeat_interval: int = 60,
        grace_period: int | None = None,
    ) -> None:
        # Checked in sweep(), not here: Hydra would wrap an error raised here in its own text.
        self.sampler_config = sampler
        self.direction_setting = direction  # auto, maximize/minimize, max/min, or a list
        self.directions = ["minimize"]
        # direction=auto without metrics: the jobs say what they return (status.json); until
        # one has, the direction is the monitor's mode, and the study is made again if it was
        # wrong (a regression's val/loss under the default monitor val/acc).
        self.learn_direction = False
        self.followed: tuple[str, str] | None = None  # (metric, direction) a job reported
        # What an nntrain job will return, where its config says so before any trial runs.
        self.expected: str | None = None
        self.task: Task | None = None  # CLASSIFICATION or REGRESSION, where the config says
        # Why the search must stop, said by the first trial's objective (see tell).
        self.refusal: str | None = None
        self.earlier_trials = 0  # trials a stored study held before this sweep
        self.composed_shapes: set[tuple[str, ...]] = set()  # see validate_once
        self.study: Study | None = None
        self.sampling: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)
        self.earlier_complete = 0  # finished trials of a stored study from earlier sweeps
        self.metrics = [str(m) for m in metrics] if metrics else None
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.custom_search_space = custom_search_space
        self.extend_search_space: Callable[[DictConfig, Trial], None] | None = None
        self.params = cast(
            "dict[str, Any]", OmegaConf.to_container(params, resolve=True) if params else {}
        )
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None
        self.pruner_config, self.test_pruned = pruner, bool(test_pruned)
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.storage_url = storage  # storage, or the SQLite file in the sweep dir (sweep)
        self.pruner_settings: dict[str, Any] | None = None
        self.start_progress()

    @property
    def shown_storage(self) -> str:
        """The storage as the user gave it (the study's file in the sweep dir otherwise)."""
        return str(self.storage or self.storage_url)

    def start_progress(self) -> None:
        """What the sweep learns as its trials run."""
        self.launched_any = False  # whether a trial of this sweep has run
        self.next_wait_line = 0.0  # when to say again that other trials are waited for
        self.next_stale_check = 0.0
        # Set when a sampler that enumerates a finite space (grid, brute force) has tried it all.
        self.space_exhausted = False
        self.failures: dict[int, str] = {}  # this sweep's failed trials: number -> why
        self.ended = 0  # trials of this sweep that ended (told), for max_failure_rate

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
    def monitor(self) -> str | None:
        assert self.config is not None
        monitor = OmegaConf.select(self.config, "trainer.early_stopping.monitor")
        return str(monitor) if monitor else None

    @property
    def metric_names(self) -> list[str]:
        """The objectives' names in messages and results: `metrics`, else nntrain's monitored
        metric, else value (value 0, value 1, ... for several)."""
        if self.metrics:
            return self.metrics
        if len(self.directions) == 1:
            return [self.followed[0] if self.followed else self.expected or self.monitor or "value"]
        return [f"value {i}" for i in range(len(self.directions))]

    def known_metric_names(self) -> list[str] | None:
        """The objectives' names once they are certain (for study.set_metric_names): named in
        `metrics`, said by a trial, or told by the config; None before that."""
        if self.metrics:
            return self.metrics
        known = self.followed[0] if self.followed else self.expected
        return [known] if known and len(self.directions) == 1 else None

    def objectives_text(self) -> str:
        pairs = zip(self.directions, self.metric_names, strict=True)
        return ", ".join(f"{direction} {name}" for direction, name in pairs)

    def values_text(self, values: list[float]) -> str:
        pairs = zip(self.metric_names, values, strict=True)
        return ", ".join(f"{name}={value:.6g}" for name, value in pairs)

    def check_settings(self) -> None:
        """The settings that can be wrong before anything runs, each in one sentence."""
        if self.n_trials < 0 or self.n_jobs < 1:
            raise HydraException(
                f"hydra.sweeper.n_trials={self.n_trials}, hydra.sweeper.n_jobs={self.n_jobs}: "
                "n_trials must be 0 or more and n_jobs 1 or more."
            )
        grace = self.grace_period
        if self.heartbeat_interval < 1 or (grace is not None and grace <= self.heartbeat_interval):
            raise HydraException(
                f"hydra.sweeper.heartbeat_interval={self.heartbeat_interval}, "
                f"hydra.sweeper.grace_period={grace}: give whole seconds, the interval 1 or "
                "more and the grace period longer than it (or null: twice the interval)."
            )
        if not 0.0 <= float(self.max_failure_rate) <= 1.0:
            raise HydraException(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} is not a share of "
                "trials; give a number from 0.0 (stop at the first failure) to 1.0 (never stop)."
            )
        self.directions = self.chosen_directions()
        if self.metrics is None and self.monitor == "none":
            # The job would return val/loss (NaN without a validation split): a search that
            # maximizes the loss, or whose every trial fails after it has run.
            raise HydraException(
                "trainer.early_stopping.monitor=none gives the trials no objective; name the "
                "metric to optimize, e.g. hydra.sweeper.metrics=[test/acc] with "
                "hydra.sweeper.direction=maximize."
            )
        count = len(self.directions)
        if self.metrics is not None and len(self.metrics) != count:
            raise HydraException(
                f"hydra.sweeper.metrics names {len(self.metrics)} metrics for {count} "
                f"direction(s) ({', '.join(self.directions)}); give one metric per direction."
            )
        if count > 1 and self.metrics is None and self.monitor is not None:
            raise HydraException(
                f"hydra.sweeper.direction has {count} objectives but an nntrain job returns "
                f"one number ({self.monitor}); name them, e.g. "
                "hydra.sweeper.metrics=[val/acc,train/samples_per_sec]."
            )

    def chosen_directions(self) -> list[str]:
        """The directions asked for; auto: a loss or error named in `metrics` is minimized and
        anything else maximized, and without `metrics` the monitor's mode until the first job
        says what it returned (settle_direction)."""
        if not is_auto(self.direction_setting):
            return directions_from(self.direction_setting)
        if self.metrics:
            return [guessed_direction(metric) for metric in self.metrics]
        assert self.config is not None
        mode = OmegaConf.select(self.config, "trainer.early_stopping.mode")
        self.learn_direction = True
        return [direction_from_mode(mode) if mode else "minimize"]

    def checked_pruner(self) -> dict[str, Any] | None:
        """The pruner's settings (None: no pruning), built once here so that a wrong field is
        one sentence before any trial; a pruner needs one objective that the trials have at
        every epoch's end."""
        settings = sampler_settings(self.pruner_config)
        if settings is None or str(settings.get("_target_", "")).endswith("NopPruner"):
            return None
        build_pruner(settings)
        if len(self.directions) > 1:
            raise HydraException(
                f"hydra.sweeper.pruner ({settings['_target_']}) works on one objective and this "
                f"search has {len(self.directions)}; drop the pruner (hydra/sweeper/pruner=nop) "
                "or search one objective."
            )
        per_epoch = ("val/", "train/")
        if self.metrics and not self.metrics[0].startswith(per_epoch):
            raise HydraException(
                f"hydra.sweeper.pruner needs a figure the trials have at every epoch's end, and "
                f"hydra.sweeper.metrics names {self.metrics[0]}; search a val/ or train/ figure "
                "(e.g. val/acc, val/loss) or drop the pruner (hydra/sweeper/pruner=nop)."
            )
        return settings

    def check_objective(self, space: SearchSpace) -> None:
        """Before any trial: what the trials return, where the config says (data.task, one of
        nntrain's own data sets, a metric named in `metrics`), and a refusal of a direction that
        would seek its worst value, e.g. maximize a regression's val/loss. Unknown here
        (data.task=auto, a searched data or monitor), the first trial says it (tell)."""
        auto = is_auto(self.direction_setting)
        if self.metrics:
            for index, metric in enumerate(self.metrics):
                refusal = None if auto else self.wrong_way(index, metric)
                if refusal is not None:
                    raise HydraException(refusal)
            return
        # params' fixed values are not in the sweeper's config; a custom search space may draw
        # any key.
        searched = [*space.distributions, *self.params]
        if (
            len(self.directions) != 1
            or self.custom_search_space
            or any(decides_objective(key) for key in searched)
        ):
            return
        self.task = task_in(self.config)
        self.expected = nntrain_returns(self.monitor, self.task)
        if self.expected is None:
            return
        if auto and self.expected != self.monitor:  # a regression's val/loss: min (train.py)
            self.directions = ["minimize"]
        # The config says what the trials return: no trial has to run alone to tell it.
        self.learn_direction = False
        refusal = None if auto else self.wrong_way(0, self.expected)
        if refusal is not None:
            raise HydraException(refusal)

    def wrong_way(self, index: int, metric: str) -> str | None:
        """The sentence refusing hydra.sweeper.direction for objective `index`, if it would seek
        the worst value of `metric`."""
        if self.metrics:
            source = "hydra.sweeper.metrics names"
        elif (self.task is not None and not self.task.has_classes) or (
            metric != self.monitor and metric == "val/loss"
        ):
            source = "a regression's trials return"  # its monitor had no accuracy to follow
        else:
            source = "the trials return"
        return wrong_way(self.direction_setting, self.directions, index, metric, source)

    def sweep(self, arguments: list[str]) -> None:
        """Run n_trials trials, n_jobs at a time; then write and log the best one(s)."""
        assert self.config is not None and self.hydra_context is not None
        self.check_settings()
        optuna = import_optuna()
        # Our own log lines say what happens; Optuna's INFO lines would repeat them.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = parse_search_space(
            params_to_overrides(self.params) + list(arguments), self.hydra_context.config_loader
        )
        self.check_objective(space)
        self.extend_search_space = load_custom_search_space(self.custom_search_space)
        if not space.distributions and self.extend_search_space is None:
            log.warning("the search space is empty: every trial runs the same config")
        settings = sampler_settings(self.sampler_config)
        grid = grid_for(settings, space)
        if grid is not None and grid_size(grid) < self.n_trials:
            log.info(f"the grid has {grid_size(grid)} points: running that many trials")
            self.n_trials = grid_size(grid)
        self.sampling = (settings, grid)
        self.pruner_settings = self.checked_pruner()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if self.storage is None:  # the study lives with its sweep: the same command continues it
            self.storage_url = f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"
            self.study_name = self.study_name or "nntrain"
        self.study = self.open_study(optuna, settings, grid)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.write_search_file(sweep_dir)

        new_trials: list[int] = []
        try:
            self.run_trials(space, sweep_dir, new_trials)
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C (a job ends with SystemExit): the trials that ran are results all the
            # same, and an in-memory study is gone once this process ends.
            if new_trials:
                # The interrupted job configured logging for its own log file; back to Hydra's.
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                self.report(self.study, sweep_dir, new_trials)
            raise
        study = self.study
        if new_trials and len(self.failures) == len(new_trials):
            self.stop(
                study,
                sweep_dir,
                new_trials,
                f"all {len(new_trials)} trials of the search failed, so it found nothing; "
                "the trials' logs say why.",
            )
        self.report(study, sweep_dir, new_trials)

    def run_trials(self, space: SearchSpace, sweep_dir: Path, new_trials: list[int]) -> None:
        """Keep n_jobs trials in flight until the study has n_trials finished ones: a new trial
        starts the moment any ends (no batches), unless the sampler has tried every point or
        too many failed. Trials of other sweepers of the study, or stale ones, count too."""
        assert self.study is not None and self.launcher is not None
        parallel = self.n_jobs > 1 and type(self.launcher).__name__ != "BasicLauncher"
        pool = ThreadPoolExecutor(self.n_jobs, "trial") if parallel else None
        flying: dict[Future[JobReturn], Launched] = {}
        with Heartbeats(self.study._storage, self.heartbeat_interval) as beats:
            try:
                while True:
                    self.revive_stale()
                    self.fill(space, sweep_dir, new_trials, flying, pool, beats)
                    if not flying:
                        if not self.others_running():
                            return
                        time.sleep(min(5.0, self.heartbeat_interval))
                        continue
                    done, _ = wait(list(flying), timeout=1.0, return_when=FIRST_COMPLETED)
                    for future in done:
                        self.end_trial(flying.pop(future), future, beats, sweep_dir, new_trials)
            except (KeyboardInterrupt, SystemExit):
                self.cut_short(flying, beats, interrupted=True)
                raise
            except BaseException:
                self.cut_short(flying, beats, interrupted=False)
                raise
            finally:
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)

    def fill(
        self,
        space: SearchSpace,
        sweep_dir: Path,
        new_trials: list[int],
        flying: dict[Future[JobReturn], Launched],
        pool: ThreadPoolExecutor | None,
        beats: Heartbeats,
    ) -> None:
        """Start trials while fewer than n_jobs are in flight (one until direction=auto has
        learnt what the trials return) and the study has room for them."""
        limit = 1 if self.learn_direction else self.n_jobs
        if BATCHES and flying:  # (scripts/search_benchmark.py: the batched flow, to compare)
            return
        while len(flying) < limit and not self.space_exhausted and self.room():
            launched = self.start_trial(space, sweep_dir, new_trials, beats)
            if launched is None:
                return
            if pool is not None:
                flying[pool.submit(self.launch_one, launched)] = launched
                continue
            future: Future[JobReturn] = Future()
            flying[future] = launched
            try:  # in this process: it runs now, and its end is read as a thread's would be
                future.set_result(self.launch_one(launched))
            except BaseException as error:  # Ctrl-C included: told in end_trial
                future.set_exception(error)
            return

    def room(self) -> bool:
        assert self.study is not None
        return room_for_another(self.study, self.n_trials)

    def others_running(self) -> bool:
        """Trials of the study still running (another sweeper's, or one whose sweeper died and
        that is not stale yet): this sweeper waits for them, in case one must run again."""
        assert self.study is not None
        running = state_counts(self.study).get("RUNNING", 0)
        if running and finished(self.study) < self.n_trials:
            if time.monotonic() >= self.next_wait_line:
                log.info(
                    f"waiting for {running} running trial(s) of the study (another sweeper's, or stale after hydra.sweeper.grace_period)"
                )
                self.next_wait_line = time.monotonic() + 60
            return True
        return False

    def revive_stale(self) -> None:
        """Trials whose heartbeat stopped are failed and queued to run again (in_flight.py)."""
        assert self.study is not None
        if time.monotonic() < self.next_stale_check:
            return
        self.next_stale_check = time.monotonic() + min(5.0, self.heartbeat_interval)
        stale = fail_stale(self.study)
        if stale:
            log.warning(
                f"trials {stale} stopped beating (their job or sweeper died): they run again with the same parameters, from their last.pt"
            )

    def start_trial(
        self, space: SearchSpace, sweep_dir: Path, new_trials: list[int], beats: Heartbeats
    ) -> Launched | None:
        """Ask for a trial, note its job's directory and overrides in the study, and give its
        job the link to the study; None when another sweeper took the last place."""
        assert self.study is not None
        study = self.study
        trials: list[Trial] = []
        try:
            self.ask(study, space, 1, trials)
            (trial,) = trials
            beats.add(trial._trial_id)
            if surplus(study, trial, self.n_trials):
                beats.remove(trial._trial_id)
                give_back(study, [trial])
                return None
            overrides = space.overrides(trial.params)
            self.validate_once(overrides)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C before the launch: it waits
            self.given_back(study, trials)
            raise
        except BaseException:  # a config error: not run, and failed
            for asked in trials:
                self.fail(study, asked)
            raise
        finally:
            for asked in trials:
                beats.remove(asked._trial_id)
        beats.add(trial._trial_id)
        launched = self.launched(trial, overrides, sweep_dir)
        new_trials.append(trial.number)
        return launched

    def validate_once(self, overrides: list[str]) -> None:
        """A search space that does not compose is the user's mistake, not a failed trial: it
        stops the sweep with Hydra's message. Composing costs ~0.2 s of the sweeper's CPU while
        a worker waits for its next trial, so it is done once per composition_shape."""
        shape = composition_shape(overrides)
        if shape not in self.composed_shapes:
            self.validate_batch_is_legal([overrides])
            self.composed_shapes.add(shape)

    def launched(self, trial: Trial, overrides: list[str], sweep_dir: Path) -> Launched:
        """The trial as its job: in its own directory (its number), or, for a trial that runs a
        stale or interrupted one again, in that one's directory, resumed from its last.pt."""
        from nntrain.launch.resume_command_line import quoted

        number, resumed_from = trial.number, retried_number(trial)
        if resumed_from is not None:
            number = int(trial.user_attrs.get("job_number", resumed_from))
            job_dir = sweep_dir / str(number)
            if has_last_checkpoint(job_dir):
                overrides = [*overrides, f"resume={quoted(job_dir / 'checkpoints' / 'last.pt')}"]
            log.info(f"trial {trial.number} runs trial {resumed_from} again (job {number})")
        trial.set_user_attr("job_number", number)
        trial.set_user_attr("job_dir", str(sweep_dir / str(number)))
        trial.set_user_attr("overrides", [o for o in overrides if not o.startswith("resume=")])
        extra = [f"+{ENV_OVERRIDE}.{LINK_VARIABLE}={trial._trial_id}"]
        return Launched(trial, number, overrides, resumed_from, extra)

    def write_search_file(self, sweep_dir: Path) -> None:
        """What the trials' jobs need to reach the study (nntrain.launch.search_trial)."""
        from nntrain.launch.search_trial import write_search_file

        assert self.study is not None
        write_search_file(
            sweep_dir,
            {
                "storage": self.storage_url,
                "study": self.study.study_name,
                "pruner": self.pruner_settings,
                "metric": self.metrics[0] if self.metrics else None,
                "heartbeat_s": self.heartbeat_interval,
                "grace_s": self.grace_period,
                "test_pruned": self.test_pruned,
            },
        )

    def launch_one(self, launched: Launched) -> JobReturn:
        """The launcher's result for one trial's job (in a thread of its own when parallel)."""
        assert self.launcher is not None
        returns = self.launcher.launch(
            [[*launched.overrides, *launched.extra]], initial_job_idx=launched.number
        )
        (job,) = returns
        return job

    def end_trial(
        self,
        launched: Launched,
        future: Future[JobReturn],
        beats: Heartbeats,
        sweep_dir: Path,
        new_trials: list[int],
    ) -> None:
        """Tell the study how the trial ended; then the checks that may stop the search."""
        assert self.study is not None and self.config is not None
        beats.remove(launched.trial._trial_id)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        try:
            job = future.result()
        except (KeyboardInterrupt, SystemExit):  # stopped (its last.pt saved): it runs again
            self.fail(self.study, launched.trial, "interrupted")
            retry_later(self.study, launched.trial)
            raise
        except Exception as error:
            # A launcher raises for a job it lost (a joblib worker killed for memory). Before
            # any trial ran, it is the launcher's setup that is wrong: the user must hear it.
            if not self.launched_any:
                self.fail(self.study, launched.trial)
                raise
            reason = first_line(f"{type(error).__name__}: {error}")
            log.error(f"the launcher lost trial {launched.trial.number}: {reason}")
            self.fail(self.study, launched.trial, reason)
        else:
            self.launched_any = True
            self.tell(self.study, launched.trial, launched.overrides, job)
        self.ended += 1
        self.after_trial(sweep_dir, new_trials)

    def after_trial(self, sweep_dir: Path, new_trials: list[int]) -> None:
        assert self.study is not None
        if self.refusal is not None:
            self.refuse(self.study, self.refusal)
        if self.learn_direction and self.followed is not None:
            self.settle_direction()
        if self.ended and len(self.failures) / self.ended > self.max_failure_rate:
            last = max(self.failures)
            self.stop(
                self.study,
                sweep_dir,
                new_trials,
                f"the search stopped: {len(self.failures)} of its {self.ended} trials "
                f"failed, more than hydra.sweeper.max_failure_rate={self.max_failure_rate} "
                f"allows (trial {last}: {self.failures[last]}).",
            )

    def cut_short(
        self, flying: dict[Future[JobReturn], Launched], beats: Heartbeats, interrupted: bool
    ) -> None:
        """The search stops with trials in flight: those that ended are told; on Ctrl-C the
        others were stopped (each job saved its last.pt): they fail, and a copy of each waits
        in the study, so that running the command again resumes them first (a SLURM launcher
        cancels its jobs). On an error the others fail."""
        assert self.study is not None
        cancel = getattr(self.launcher, "cancel_waiting", None)
        if callable(cancel) and flying:
            cancel()
        if flying:
            wait(list(flying), timeout=60)
        for future, launched in flying.items():
            beats.remove(launched.trial._trial_id)
            job = None
            if future.done() and not future.cancelled() and future.exception() is None:
                job = future.result()
            if job is not None and job_status(job).get("status") != "interrupted":
                self.tell(self.study, launched.trial, launched.overrides, job)  # it ended
                continue
            if not interrupted:
                self.fail(self.study, launched.trial, "the search stopped")
                continue
            self.fail(self.study, launched.trial, "interrupted")
            retry_later(self.study, launched.trial)

    def settle_direction(self) -> None:
        """direction=auto: the first job that succeeded said what it returned; a study made to
        go the other way is made again (this sweep's trials copied into it), unless trials of
        earlier sweeps were scored in it."""
        assert self.followed is not None and self.study is not None
        self.learn_direction = False
        metric, direction = self.followed
        if direction == self.directions[0]:
            self.name_objectives(self.study)
            return
        log.info(
            f"the trials return {metric}: the search will {direction} it (hydra.sweeper."
            "direction=auto follows the figure the runs keep as best)"
        )
        optuna = import_optuna()
        trials = self.study.get_trials(deepcopy=True)
        name, storage = self.study.study_name, self.study._storage
        optuna.delete_study(study_name=name, storage=storage)
        self.directions = [direction]
        self.study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=build_sampler(self.sampling[0], len(trials), self.sampling[1]),
            pruner=self.study.pruner,
            directions=self.directions,
        )
        self.study.add_trials(trials)
        self.name_objectives(self.study)

    def refuse(self, study: Study, message: str) -> None:
        """End the search with `message` (the first trial said what the trials return, and this
        search goes the wrong way for it). A stored study that this sweep created holds only
        that refused batch: it is deleted, so the corrected command starts it afresh."""
        if not self.earlier_trials:
            import_optuna().delete_study(study_name=study.study_name, storage=study._storage)
        raise HydraException(message)

    def name_objectives(self, study: Study) -> None:
        """Record the objectives' names in the study (Optuna's dashboard, trials_dataframe and
        plots show them) once they are known."""
        names = self.known_metric_names()
        if names is None:
            return
        from optuna.exceptions import ExperimentalWarning

        with warnings.catch_warnings():  # set_metric_names is marked experimental (Optuna 3.2)
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names(names)

    def direction_conflict(self, study: Study) -> str | None:
        """Why a stored study cannot take what the trials return: it was made (and scored by
        earlier sweeps) to go the other way."""
        if self.followed is None:  # not an nntrain job, or one that did not say
            return None
        metric, direction = self.followed
        if direction == self.directions[0] or not self.earlier_complete:
            return None
        return self.conflict(study, self.directions[0], metric, direction)

    def conflict(self, study: Study, stored: str, metric: str, direction: str) -> str:
        return (
            f"study {study.study_name!r} in {self.shown_storage} was created to "
            f"{stored} its objective, and the trials return {metric}, which is to "
            f"{direction}; continue it with the same trainer.early_stopping.monitor and mode, or "
            "start a new study with hydra.sweeper.study_name=NAME."
        )

    def stop(self, study: Study, sweep_dir: Path, new_trials: list[int], message: str) -> None:
        """End the sweep with an error, after its results and the end-of-sweep callbacks (the
        sweep summary) that Hydra runs only after a sweep that returned."""
        assert self.hydra_context is not None and self.config is not None
        self.report(study, sweep_dir, new_trials)
        self.hydra_context.callbacks.on_multirun_end(config=self.config)
        raise HydraException(message)

    def check_stored_directions(self, study: Study, stored: list[str]) -> None:
        """A continued study's directions against this search's; direction=auto with nothing
        scored yet adopts them until the first trial says what it returns."""
        config_said = is_auto(self.direction_setting) and self.expected is not None
        if config_said and stored != self.directions:
            if self.earlier_complete:  # scored the other way: refused before any trial
                raise HydraException(
                    self.conflict(study, stored[0], str(self.expected), self.directions[0])
                )
            self.learn_direction = True  # nothing scored yet: made again (settle_direction)
        if self.learn_direction:
            self.directions = stored  # checked against the first job's objective
        if stored != self.directions:
            raise HydraException(
                f"study {study.study_name!r} in {self.shown_storage} was created to "
                f"{' and '.join(stored)} its objective(s), this search would "
                f"{' and '.join(self.directions)}; continue it with the same directions "
                "(trainer.early_stopping.mode), or start a new study with "
                "hydra.sweeper.study_name=NAME."
            )

    def open_study(
        self, optuna: ModuleType, settings: dict[str, Any] | None, grid: dict[str, Any] | None
    ) -> Study:
        """Create the study, or continue the stored one of the same name."""
        from nntrain.launch.search_trial import open_storage

        sampler = build_sampler(settings, 0, grid)
        self.storage_url = absolute_sqlite(str(self.storage_url))
        try:
            study = optuna.create_study(
                study_name=self.study_name,
                storage=open_storage(self.storage_url, self.heartbeat_interval, self.grace_period),
                sampler=sampler,
                pruner=build_pruner(self.pruner_settings),
                directions=self.directions,
                load_if_exists=True,
            )
        except Exception as error:  # SQLAlchemy's: a folder that does not exist, a bad URL
            raise HydraException(
                f"hydra.sweeper.storage={self.shown_storage} cannot be opened "
                f"({first_line(f'{type(error).__name__}: {error}')}); give an Optuna storage "
                "URL in a folder that exists, e.g. hydra.sweeper.storage=sqlite:///search.db "
                "(relative to where you run nntrain)."
            ) from None
        stored = [d.name.lower() for d in study.directions]
        earlier_trials = study.get_trials(deepcopy=False)
        self.earlier_complete = sum(t.state.name == "COMPLETE" for t in earlier_trials)
        self.check_stored_directions(study, stored)
        earlier = self.earlier_trials = len(earlier_trials)
        if earlier:
            # A seeded sampler built afresh would draw the first run's points again.
            study.sampler = build_sampler(settings, earlier, grid)
        self.name_objectives(study)
        tentative = ""
        if self.learn_direction:
            tentative = " (auto: until the first trial says what it returns)"
        elif self.known_metric_names() is None and self.monitor:
            tentative = " (or val/loss, if the first trial says the data is a regression)"
        pruner = type(study.pruner).__name__
        log.info(
            f"Optuna study {study.study_name!r} ({self.shown_storage}, "
            f"{type(study.sampler).__name__}, {pruner}): {self.objectives_text()}{tentative}; "
            f"{finished(study)} of {self.n_trials} trials finished, {self.n_jobs} at a time"
        )
        return study

    def ask(self, study: Study, space: SearchSpace, count: int, trials: list[Trial]) -> None:
        """Append count new trials to `trials`, their params drawn (and extended by
        custom_search_space). The caller's list: whatever ends this, it holds every trial the
        study made (Ctrl-C waits until study.ask has returned its trial)."""
        try:
            with sigint_held(), warnings.catch_warnings():
                # study.ask with a storage that keeps heartbeats says they are for
                # study.optimize: this sweeper records them itself (in_flight.Heartbeats).
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
                for _ in range(count):
                    trials.append(study.ask(space.distributions))
                    self.extend(trials[-1], space)
        except ValueError as error:  # a stored study whose parameters had another kind
            raise HydraException(
                f"the search space does not fit study {study.study_name!r}: {error} Start a "
                "new study with hydra.sweeper.study_name=NAME."
            ) from None

    def extend(self, trial: Trial, space: SearchSpace) -> None:
        """Let custom_search_space add parameters that depend on those drawn."""
        assert self.config is not None
        if self.extend_search_space is None:
            return
        try:
            self.extend_search_space(self.config, trial)
        except Exception as error:
            raise HydraException(
                f"hydra.sweeper.custom_search_space={self.custom_search_space} raised "
                f"{first_line(f'{type(error).__name__}: {error}')}."
            ) from None
        fixed = sorted(space.fixed_keys.intersection(trial.params))
        if fixed:
            raise HydraException(
                f"hydra.sweeper.custom_search_space={self.custom_search_space} draws {fixed[0]}, "
                "which the search fixes to one value; drop one of the two."
            )

    def given_back(self, study: Study, trials: list[Trial]) -> None:
        """Trials asked for but not launched (Ctrl-C first) go back to the study's queue."""
        numbers = give_back(study, trials)
        if numbers:
            again = "; running the same command again runs them first"
            if self.storage is None and self.config is not None:
                again += f" (with hydra.sweep.dir={self.config.hydra.sweep.dir})"
            log.info(f"trials {numbers} were not launched: they wait in the study{again}")

    def fail(self, study: Study, trial: Trial, reason: str | None = None) -> None:
        """Tell the study a trial failed (unless it was told already)."""
        from optuna.trial import TrialState

        if reason is not None:
            trial.set_user_attr("error", reason)
            self.failures[trial.number] = reason
        self.tell_study(study, trial, state=TrialState.FAIL, skip_if_finished=True)

    def tell(self, study: Study, trial: Trial, overrides: list[str], job: JobReturn) -> None:
        """Record the job's directory and overrides with the trial, then its values or failure."""
        job_dir = job_directory(job)
        trial.set_user_attr("overrides", list(overrides))
        if job_dir is not None:
            trial.set_user_attr("job_dir", str(job_dir))
        values, error = objective(job, len(self.directions), self.metrics)
        job_name = f" (job {job_dir.name})" if job_dir is not None else ""
        if values is not None and self.refusal is None and self.followed is None:
            self.refusal = self.first_objective(study, job)
        if self.refusal is not None:  # told as failed: its value is not this study's objective
            self.fail(study, trial, self.refusal)
            return
        if values is not None and job_status(job).get("status") == "pruned":
            from optuna.trial import TrialState

            epoch = job_status(job).get("pruned_epoch") or "?"
            log.info(f"trial {trial.number}{job_name}: pruned after epoch {epoch}")
            self.tell_study(study, trial, state=TrialState.PRUNED)
        elif values is not None:
            shown = self.values_text(values)
            log.info(f"trial {trial.number}{job_name}: {shown}")
            self.tell_study(study, trial, values=values)
        else:
            log.warning(f"trial {trial.number}{job_name} failed: {error}")
            self.fail(study, trial, error)

    def first_objective(self, study: Study, job: JobReturn) -> str | None:
        """The first trial that scored says what the trials return (status.json): the
        objective is named by it, and a search that would seek its worst value (maximize a
        regression's val/loss where data.task=auto hid the task) is refused: why, or None."""
        if self.metrics is not None or len(self.directions) != 1:
            return None
        self.followed = followed_objective(job)
        if self.followed is None:  # not an nntrain job, or one that did not say
            return None
        if self.learn_direction:
            return self.direction_conflict(study)  # named once settled (settle_direction)
        refusal = self.wrong_way(0, self.followed[0])
        if refusal is None:
            self.name_objectives(study)
        return refusal

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
        """Write <sweep dir>/optimization_results.yaml and log the best trial(s) of the study."""
        from optuna.trial import TrialState

        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        n_failed = sum(t.state == TrialState.FAIL for t in finished)
        n_pruned = sum(t.state == TrialState.PRUNED for t in finished)
        complete = any(t.state == TrialState.COMPLETE for t in finished)
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "storage": self.storage_url,
        }
        if len(self.directions) == 1:
            results.update(self.best_results(study.best_trial if complete else None))
        else:
            results.update(self.pareto_results(study.best_trials if complete else []))
        # The study's trials, this sweep's and those of earlier runs of a stored study.
        results.update(
            n_trials=len(finished), n_failed=n_failed, n_pruned=n_pruned, new_trials=new_trials
        )
        path = sweep_dir / RESULTS_FILE
        OmegaConf.save(OmegaConf.create(results), path)
        counts = f"{len(finished)} trials, {n_pruned} pruned, {n_failed} failed"
        if not complete:
            log.warning(f"no trial of study {study.study_name!r} completed ({counts}); see {path}")
            return
        log.info(f"{counts}; results: {path}")

    def best_results(self, best: FrozenTrial | None) -> dict[str, Any]:
        if best is not None:
            log.info(f"Best trial {best.number}: {self.metric_names[0]}={best.value:.6g}")
            log.info(f"Best overrides: {' '.join(best.user_attrs.get('overrides') or [])}")
        return {
            "direction": self.directions[0],
            "metric": self.metric_names[0],
            "best_trial": best.number if best else None,
            "best_value": best.value if best else None,
            "best_params": dict(best.params) if best else None,
            "best_overrides": best.user_attrs.get("overrides") if best else None,
            "best_job_dir": best.user_attrs.get("job_dir") if best else None,
        }

    def pareto_results(self, front: list[FrozenTrial]) -> dict[str, Any]:
        """The trials no other trial beats on every objective (Optuna's best_trials)."""
        if front:
            log.info(f"Pareto front ({', '.join(self.metric_names)}): {len(front)} trials")
        solutions = []
        for trial in sorted(front, key=lambda t: t.number):
            assert trial.values is not None
            shown = self.values_text(trial.values)
            log.info(f"  trial {trial.number}: {shown}")
            solutions.append(
                {
                    "trial": trial.number,
                    "values": list(trial.values),
                    "params": dict(trial.params),
                    "overrides": trial.user_attrs.get("overrides"),
                    "job_dir": trial.user_attrs.get("job_dir"),
                }
            )
        return {"directions": self.directions, "metrics": self.metric_names, "solutions": solutions}
