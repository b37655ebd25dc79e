"""Configs written for hydra-optuna-sweeper run on nntrain's sweeper (hydra_plugins/nntrain_optuna_sweeper).

Most checks use a tiny Hydra app written into tmp_path (a sphere function: seconds per search,
no training); the nntrain runs train the MLP on moons with trainer=debug. A plain Hydra app
prints Hydra's short traceback with an error; nntrain's commands print the one sentence.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from hydra_plugins.nntrain_optuna_sweeper.config import SAMPLERS
from hydra_plugins.nntrain_optuna_sweeper.samplers import build_sampler, sampler_settings
from tests.conftest import run_nntrain

APP = """
import hydra

@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    if cfg.get("error"):
        raise RuntimeError("cfg.error is True")
    numbers = [v for k, v in cfg.items() if k in "wxyz" and isinstance(v, (int, float))]
    if cfg.get("two"):
        return cfg.x ** 2 + cfg.y ** 2, (cfg.x - 2) ** 2 + (cfg.y - 1) ** 2
    return sum(v ** 2 for v in numbers)

if __name__ == "__main__":
    main()
"""

CONFIG = """
defaults:
  - override hydra/sweeper: optuna
x: 1
y: 1
hydra:
  sweeper:
    n_trials: 4
    n_jobs: 1
    params:
      x: interval(-2, 2)
      y: choice(-1, 0, 1)
"""


def write_app(tmp_path: Path, config: str = CONFIG) -> Path:
    (tmp_path / "conf").mkdir(exist_ok=True)
    (tmp_path / "conf" / "config.yaml").write_text(textwrap.dedent(config))
    (tmp_path / "app.py").write_text(APP)
    return tmp_path / "conf"


def run_app(tmp_path: Path, *args: str, config: str = CONFIG) -> subprocess.CompletedProcess:
    write_app(tmp_path, config)
    return subprocess.run(
        [sys.executable, "app.py", "-m", "hydra.sweep.dir=sweep", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def results(tmp_path: Path, sweep: str = "sweep") -> dict:
    return yaml.safe_load((tmp_path / sweep / "optimization_results.yaml").read_text())


def job_overrides(sweep_dir: Path) -> list[list[str]]:
    job_dirs = (d for d in sweep_dir.iterdir() if (d / ".hydra").is_dir())  # not the events' folders
    jobs = sorted(job_dirs, key=lambda d: int(d.name))
    return [yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()) for d in jobs]


def as_dict(overrides: list[str]) -> dict[str, float | str]:
    pairs = (o.split("=", 1) for o in overrides)
    return {k: (float(v) if v.lstrip("-").replace(".", "").isdigit() else v) for k, v in pairs}


# --- the sampler group -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sampler_class", "field", "attribute"),
    [
        ("tpe", optuna.samplers.TPESampler, "n_startup_trials=3", "_n_startup_trials"),
        ("random", optuna.samplers.RandomSampler, None, None),
        ("nsgaii", optuna.samplers.NSGAIISampler, "population_size=6", "_population_size"),
        ("qmc", optuna.samplers.QMCSampler, "qmc_type=halton", "_qmc_type"),
        ("gp", optuna.samplers.GPSampler, "n_startup_trials=3", "_n_startup_trials"),
        ("grid", optuna.samplers.GridSampler, None, None),
        ("bruteforce", optuna.samplers.BruteForceSampler, None, None),
    ],
)
def test_each_sampler_of_the_group_is_built_with_its_fields(
    tmp_path, name, sampler_class, field, attribute
):
    overrides = [f"hydra/sweeper/sampler={name}", "hydra.sweeper.sampler.seed=3"]
    if field:  # a field of the sampler's schema: no `+` needed
        overrides.append(f"hydra.sweeper.sampler.{field}")
    with initialize_config_dir(config_dir=str(write_app(tmp_path)), version_base=None):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    settings = sampler_settings(cfg.hydra.sweeper.sampler)
    assert settings is not None and settings["seed"] == 3
    sampler = build_sampler(settings, 0, {"x": [1, 2]} if name == "grid" else None)
    assert type(sampler) is sampler_class
    if attribute:
        expected = field.split("=")[1]
        assert str(getattr(sampler, attribute)) == expected
    assert set(SAMPLERS) >= {"tpe", "random", "grid", "cmaes", "nsgaii", "qmc"}


def test_the_cmaes_sampler_without_cmaes_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cmaes", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(HydraException) as raised:
        build_sampler({"_target_": "optuna.samplers.CmaEsSampler", "seed": 1}, 0, None)
    assert str(raised.value) == (
        "the CmaEsSampler sampler needs the cmaes package, which is not installed; install it "
        "with pip install cmaes."
    )


def test_a_sampler_chosen_on_the_command_line_runs_the_search(tmp_path):
    args = ("hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=123")
    first = run_app(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert "RandomSampler" in first.stdout
    drawn = job_overrides(tmp_path / "sweep")
    assert len(drawn) == 4
    # the same seed draws the same trials again
    second = run_app(tmp_path, *args, "hydra.sweep.dir=again")
    assert second.returncode == 0, second.stderr
    assert job_overrides(tmp_path / "again") == drawn
    assert results(tmp_path)["best_value"] == results(tmp_path, "again")["best_value"]


def test_the_grid_sampler_builds_its_grid_from_params(tmp_path):
    config = (
        CONFIG.replace(
            "      x: interval(-2, 2)\n      y: choice(-1, 0, 1)\n",
            "      x: choice(-1, 1)\n      y: range(-1.0, 1.0, step=1)\n      z: choice(foo, bar)\n",
        )
        + "z: foo\n"
    )
    done = run_app(
        tmp_path, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=20", config=config
    )
    assert done.returncode == 0, done.stderr
    assert "the grid has 8 points" in done.stdout
    points = {tuple(sorted(as_dict(o).items())) for o in job_overrides(tmp_path / "sweep")}
    assert len(points) == 8  # every point once: x in {-1, 1}, y in {-1, 0} (stop excluded), z
    assert {dict(p)["y"] for p in points} == {-1.0, 0.0}
    found = results(tmp_path)
    assert found["best_value"] == 1.0 and found["best_params"]["y"] == 0.0


def test_a_grid_over_a_continuous_interval_is_one_clear_error(tmp_path):
    done = run_app(tmp_path, "hydra/sweeper/sampler=grid")
    assert done.returncode != 0
    assert "the grid sampler needs a finite set of values for x" in done.stderr


# --- several objectives ------------------------------------------------------------------


def dominated(values: list[float], others: list[list[float]]) -> bool:
    return any(
        all(o <= v for o, v in zip(other, values, strict=True)) and other != values
        for other in others
    )


def test_several_objectives_write_the_pareto_front(tmp_path):
    done = run_app(
        tmp_path,
        "+two=true",
        "hydra.sweeper.direction=[minimize,minimize]",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=1",
        "hydra.sweeper.n_trials=10",
        "hydra.sweeper.storage=sqlite:///study.db",
        "hydra.sweeper.study_name=two",
    )
    assert done.returncode == 0, done.stderr
    found = results(tmp_path)
    assert found["name"] == "optuna" and found["directions"] == ["minimize", "minimize"]
    study = optuna.load_study(study_name="two", storage=f"sqlite:///{tmp_path / 'study.db'}")
    every = [list(t.values) for t in study.trials]
    front = [s["values"] for s in found["solutions"]]
    # exactly the trials that no other trial beats on both objectives
    assert sorted(front) == sorted(v for v in every if not dominated(v, every))
    for solution in found["solutions"]:
        x, y = solution["params"]["x"], solution["params"]["y"]
        assert solution["values"] == pytest.approx([x**2 + y**2, (x - 2) ** 2 + (y - 1) ** 2])


def test_nntrain_objectives_are_metrics_the_user_names(tmp_path):
    done = run_nntrain(
        "-m",
        "hparams_search=optuna",
        "trainer=debug",
        "data=moons",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.direction=[maximize,maximize]",
        "hydra.sweeper.metrics=[val/acc,train/samples_per_sec]",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    found = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert found["metrics"] == ["val/acc", "train/samples_per_sec"]
    assert 1 <= len(found["solutions"]) <= 2
    for solution in found["solutions"]:
        written = json.loads((Path(solution["job_dir"]) / "metrics.json").read_text())
        assert solution["values"] == [written["val/acc"], written["train/samples_per_sec"]]
    assert "Pareto front (val/acc, train/samples_per_sec)" in done.stdout


def test_several_objectives_without_their_metrics_is_one_clear_error(tmp_path):
    done = run_nntrain(
        "-m", "hparams_search=optuna", "hydra.sweeper.direction=[maximize,minimize]", cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: hydra.sweeper.direction has 2 objectives but an nntrain job returns one number "
        "(val/acc); name them, e.g. hydra.sweeper.metrics=[val/acc,train/samples_per_sec]."
    )


# --- custom search space -----------------------------------------------------------------

SPACE = """
def configure(cfg, trial):
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)  # w is not in the config: a new key
"""


def test_a_custom_search_space_adds_parameters_that_depend_on_the_drawn_ones(tmp_path):
    (tmp_path / "space.py").write_text(SPACE)
    config = CONFIG + "    custom_search_space: space.configure\nz: 100\n"
    config += "max_z_difference_from_x: 0.3\n"
    done = run_app(tmp_path, "hydra.sweeper.n_trials=6", config=config)
    assert done.returncode == 0, done.stderr
    for overrides in job_overrides(tmp_path / "sweep"):
        drawn = as_dict(overrides)
        assert abs(float(drawn["x"]) - float(drawn["z"])) <= 0.3 + 1e-9
        assert 0.0 <= float(drawn["+w"]) <= 1.0
    best = results(tmp_path)["best_params"]
    assert set(best) == {"x", "y", "z", "+w"}
    assert results(tmp_path)["best_value"] == pytest.approx(
        best["x"] ** 2 + best["y"] ** 2 + best["z"] ** 2 + best["+w"] ** 2
    )


def test_a_custom_search_space_that_cannot_be_imported_is_one_clear_error(tmp_path):
    done = run_app(tmp_path, "+hydra.sweeper.custom_search_space=nowhere.configure")
    assert done.returncode != 0
    assert "hydra.sweeper.custom_search_space=nowhere.configure cannot be loaded" in done.stderr


def test_a_custom_search_space_that_cannot_be_loaded_is_said_once(caplog):
    """Hydra's get_method logged its own two lines before the sweeper's one sentence."""
    from hydra.errors import HydraException

    from hydra_plugins.nntrain_optuna_sweeper.optuna_sweeper import load_custom_search_space

    with pytest.raises(HydraException) as error:
        load_custom_search_space("nowhere.configure")
    assert str(error.value).startswith(
        "hydra.sweeper.custom_search_space=nowhere.configure cannot be loaded (No module named "
        "'nowhere'); give it as module.function"
    )
    assert caplog.records == []


# --- failures ----------------------------------------------------------------------------


def test_the_search_stops_when_more_than_max_failure_rate_of_its_trials_failed(tmp_path):
    done = run_app(
        tmp_path, "+error=true", "hydra.sweeper.n_jobs=2", "hydra.sweeper.max_failure_rate=0.5"
    )
    assert done.returncode != 0
    # checked as each trial ends (no batches): the first failure is already more than half
    assert (
        "the search stopped: 1 of its 1 trials failed, more than "
        "hydra.sweeper.max_failure_rate=0.5 allows (trial 0: RuntimeError: cfg.error is True)."
    ) in done.stderr
    assert len(job_overrides(tmp_path / "sweep")) == 1  # of 4 trials
    assert results(tmp_path)["n_failed"] == 1


def test_a_search_whose_every_trial_failed_exits_non_zero(tmp_path):
    done = run_app(tmp_path, "+error=true")  # max_failure_rate 1.0: every trial runs
    assert done.returncode != 0
    assert "all 4 trials of the search failed, so it found nothing" in done.stderr
    assert len(job_overrides(tmp_path / "sweep")) == 4
    found = results(tmp_path)
    assert found["n_failed"] == 4 and found["best_value"] is None


def test_an_nntrain_search_whose_every_trial_failed_is_one_sentence_after_the_summary(tmp_path):
    done = run_nntrain(
        "-m",
        "hparams_search=optuna",
        "trainer=debug",
        "data=moons",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.params=null",
        "optimizer.lr=1e12",
        "trainer.grad_clip=null",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: all 2 trials of the search failed, so it found nothing; the trials' logs say why."
    )
    assert "sweep summary" in done.stdout  # still printed, and summary.csv written
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    rows = (sweep_dir / "summary.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all(",failed," in row for row in rows)


# --- search-space meaning ----------------------------------------------------------------


def test_int_interval_draws_whole_numbers_and_shuffle_range_is_a_choice(tmp_path):
    config = CONFIG.replace(
        "      x: interval(-2, 2)\n      y: choice(-1, 0, 1)\n",
        "      x: int(interval(1, 5))\n      y: shuffle(range(1, 3))\n",
    )
    done = run_app(tmp_path, "hydra.sweeper.n_trials=6", config=config)
    assert done.returncode == 0, done.stderr
    for overrides in job_overrides(tmp_path / "sweep"):
        x, y = (o.split("=")[1] for o in overrides)
        assert x.isdigit() and 1 <= int(x) <= 5
        assert y in {"1", "2"}


def test_an_empty_search_space_runs_its_trials(tmp_path):
    config = CONFIG.replace(
        "    params:\n      x: interval(-2, 2)\n      y: choice(-1, 0, 1)\n", ""
    )
    done = run_app(tmp_path, "hydra.sweeper.n_trials=3", config=config)
    assert done.returncode == 0, done.stderr
    assert job_overrides(tmp_path / "sweep") == [[], [], []]
    found = results(tmp_path)
    assert found["best_value"] == 2.0 and found["best_params"] == {} and found["n_trials"] == 3


# --- the sweeper's name ------------------------------------------------------------------

UPSTREAM_CONFIG = """
from hydra.core.config_store import ConfigStore
ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node={"marker": "upstream"})
"""

PROBE = """
from hydra.core.plugins import Plugins
from hydra.core.config_store import ConfigStore
from hydra_plugins.nntrain_optuna_sweeper import config
Plugins.instance()
from hydra_plugins.nntrain_optuna_sweeper.upstream_target import UPSTREAM_CLASS, UpstreamOptunaTarget
config.register()  # again, after every plugin was scanned: it must still leave `optuna` alone
UpstreamOptunaTarget().manipulate_search_path(None)  # as Hydra calls it when loading a config
store = ConfigStore.instance()
print(store.load("hydra/sweeper/optuna.yaml").node.get("marker"))
print(store.load("hydra/sweeper/nntrain_optuna.yaml").node._target_.rsplit(".", 1)[-1])
found = Plugins.instance().class_name_to_class.get(UPSTREAM_CLASS)
print(found.__name__ if found else None)  # what hydra-optuna-sweeper's _target_ makes
"""


def test_with_hydra_optuna_sweeper_installed_its_names_stay_its_own(tmp_path):
    upstream = tmp_path / "site" / "hydra_plugins" / "hydra_optuna_sweeper"
    upstream.mkdir(parents=True)
    (upstream / "__init__.py").write_text("")
    (upstream / "config.py").write_text(UPSTREAM_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    probe = [sys.executable, "-c", PROBE]
    done = subprocess.run(probe, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["upstream", "NntrainOptunaSweeper", "None"]
    # without it, `optuna` and hydra-optuna-sweeper's _target_ are nntrain's sweeper
    done = subprocess.run(probe, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "NntrainOptunaSweeper", "NntrainOptunaSweeper"]


# lightning-hydra-template's configs/hparams_search/mnist_optuna.yaml (ashleve/lightning-hydra-
# template), its comments left out and its params renamed to nntrain's keys; nothing else changed.
TEMPLATE = """
# @package _global_
defaults:
  - override /hydra/sweeper: optuna

optimized_metric: "val/acc_best"

hydra:
  mode: "MULTIRUN"
  sweeper:
    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper
    storage: null
    study_name: null
    n_jobs: 1
    direction: maximize
    n_trials: 20
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: 1234
      n_startup_trials: 10
    params:
      optimizer.lr: interval(0.0001, 0.1)
      data.batch_size: choice(32, 64, 128, 256)
      model.dropout: choice(0.0, 0.1, 0.2)
      optimizer.weight_decay: choice(0.0, 0.01, 0.1)
"""


def test_lightning_hydra_templates_optuna_config_runs(tmp_path):
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "mnist_optuna.yaml").write_text(TEMPLATE)
    done = run_nntrain(
        "--config-dir=conf",
        "hparams_search=mnist_optuna",  # no -m: the config sets hydra.mode
        "hydra.sweeper.n_trials=2",
        "trainer=debug",
        "data=moons",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "TPESampler" in done.stdout
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    found = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert found["direction"] == "maximize" and found["metric"] == "val/acc"
    assert found["n_trials"] == 2 and found["n_failed"] == 0
    best = found["best_params"]
    assert 1e-4 <= best["optimizer.lr"] <= 0.1 and best["data.batch_size"] in (32, 64, 128, 256)
    assert set(best) == {
        "optimizer.lr",
        "data.batch_size",
        "model.dropout",
        "optimizer.weight_decay",
    }
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["multirun"]  # no single run


def test_a_composed_sampler_config_pickles_as_its_named_class():
    """A SLURM job's saved state pickles the composed config, which names each structured
    config's dataclass: the sampler configs, made from one table, must be found by name."""
    import pickle

    from omegaconf import OmegaConf

    from hydra_plugins.nntrain_optuna_sweeper import config

    # (Hydra's plugin scan may run the module again: its classes are read from this copy.)
    for name, conf in config.SAMPLERS.items():
        node = pickle.loads(pickle.dumps(OmegaConf.structured(conf)))
        assert OmegaConf.get_type(node) is getattr(config, conf.__name__), name
    assert config.TPESamplerConf is config.SAMPLERS["tpe"]
    assert config.MOTPESamplerConf is config.SAMPLERS["motpe"]
