"""`pip install .` gives a working nntrain whose configs come from the installed package."""

import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from tests.conftest import run_nntrain, single_run_dir

REPO = Path(__file__).resolve().parents[1]


def test_installed_wheel_runs_from_any_directory_with_its_packaged_configs(tmp_path):
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheel_dir, REPO], check=True
    )
    (wheel,) = wheel_dir.glob("nntrain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in (
        "train.yaml",
        "model/cnn.yaml",
        "__init__.py",  # the options declared by the schema (stored in Hydra's ConfigStore)
        "hydra/job_logging/nntrain.yaml",
    ):
        assert f"nntrain/configs/{config}" in names
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # PYTHONPATH puts the installed copy ahead of the editable source checkout.
    env = {"PYTHONPATH": str(site)}
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.resources, nntrain; print(nntrain.__file__); "
         "print(importlib.resources.files('nntrain.configs'))"],
        cwd=elsewhere, env={**env, "PATH": ""}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    module_file, configs_dir = probe.stdout.split()
    assert Path(module_file).is_relative_to(site) and Path(configs_dir).is_relative_to(site)

    done = run_nntrain("trainer=debug", "data=moons", module=True, cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr
    hydra = yaml.safe_load((single_run_dir(elsewhere) / ".hydra" / "hydra.yaml").read_text())
    sources = {
        s["provider"]: (s["schema"], s["path"]) for s in hydra["hydra"]["runtime"]["config_sources"]
    }
    assert sources["main"] == ("pkg", "nntrain.configs")
