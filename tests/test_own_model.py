"""A user's own model class and data class, from a package outside this repository, chosen
through the user's config folder (--config-dir): train, resume, sweep, nntrain-eval and
nntrain-predict, and the one-sentence errors (docs/pages/your-own-model.md, your-own-data.md)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import read_metrics, run_nntrain, single_run_dir

MODEL = '''
import math
from torch import nn


class Net(nn.Module):
    """nntrain passes input_shape and num_classes; width comes from conf/model/mynet.yaml."""

    def __init__(self, input_shape, num_classes, width=32):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), width),
            nn.ReLU(),
            nn.Linear(width, num_classes),
        )

    def forward(self, x):
        return self.layers(x)


class OldNet(nn.Module):
    """Written for another tool: it does not take what nntrain passes."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
'''

DATA = '''
import torch
from nntrain.data.in_memory import InMemoryData


class Rings(InMemoryData):
    """Points in the plane: inside or outside the circle of radius 1."""

    name = "rings"

    def __init__(self, n=600, batch_size=32, val_fraction=0.1, test_fraction=0.2, seed=42):
        super().__init__(batch_size, val_fraction, test_fraction, seed)
        points = 3 * torch.rand(n, 2, generator=torch.Generator().manual_seed(0)) - 1.5
        inside = (points.norm(dim=1) < 1).long()
        self._set_splits(points, inside)
        self.input_shape, self.num_classes = (2,), 2
        self.class_names = ["outside", "inside"]
        self.feature_names = ["x", "y"]
'''


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    """code/ (the user's package, not installed) and conf/ (their config folder)."""
    root = tmp_path_factory.mktemp("user")
    (root / "code").mkdir()
    (root / "code" / "mynet.py").write_text(MODEL)
    (root / "code" / "mydata.py").write_text(DATA)
    (root / "conf" / "model").mkdir(parents=True)
    (root / "conf" / "data").mkdir()
    (root / "conf" / "model" / "mynet.yaml").write_text("_target_: mynet.Net\nwidth: 32\n")
    (root / "conf" / "model" / "oldnet.yaml").write_text(
        "_target_: mynet.OldNet\nin_features: 64\nout_features: 10\n"
    )
    (root / "conf" / "data" / "rings.yaml").write_text(
        "_target_: mydata.Rings\nn: 600\nbatch_size: 32\nseed: ${seed}\n"
    )
    return root


def with_code(root: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(root / "code")}


def command(name: str, *args: str, cwd: Path, env: dict | None = None):
    return subprocess.run(
        [str(Path(sys.executable).with_name(name)), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


TRAIN = (
    "--config-dir",
    "conf",
    "model=mynet",
    "data=rings",
    "trainer.progress=false",
    "optimizer.lr=0.02",
)
NO_EARLY_STOP = "trainer.early_stopping.patience=null"


def test_train_resume_eval_and_predict_with_the_users_model_and_data(user_folder):
    root, env = user_folder, with_code(user_folder)
    done = run_nntrain(*TRAIN, "trainer.max_epochs=3", NO_EARLY_STOP, cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    run_dir = single_run_dir(root)
    assert "Net: 162 trainable" in done.stdout  # (2*32 + 32) + (32*2 + 2)

    # resume: the config folder is found again from the run's record; more epochs
    done = run_nntrain(f"resume={run_dir}", "trainer.max_epochs=25", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    assert "resumed at epoch 4" in done.stdout
    metrics = read_metrics(run_dir)
    assert metrics["epochs_run"] == 25 and metrics["test/acc"] >= 0.9

    done = command("nntrain-eval", f"ckpt={run_dir}", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "eval_test.json").read_text())
    assert results["test/acc"] == metrics["test/acc"]

    with (root / "points.csv").open("w", newline="") as file:
        csv.writer(file).writerows([["y", "x"], [0.1, 0.2], [1.4, -1.4], [-0.3, 0.0]])
    done = command("nntrain-predict", f"ckpt={run_dir}", "inputs=points.csv", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    with (root / "predictions.csv").open() as file:
        predicted = [row["predicted"] for row in csv.DictReader(file)]
    assert predicted == ["inside", "outside", "inside"]

    # Without the user's code on the path: one sentence naming the module.
    done = command("nntrain-predict", f"ckpt={run_dir}", "inputs=points.csv", cwd=root)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: the model class mynet.Net of {run_dir}/checkpoints/best.pt cannot be imported "
        "(No module named 'mynet'); put the folder that holds the module mynet on the Python "
        "path (e.g. PYTHONPATH=/path/to/your/code) or pip install its package."
    )
    done = command("nntrain-eval", f"ckpt={run_dir}", cwd=root)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: the data class mydata.Rings cannot be imported (No module named 'mydata'); put "
        "the folder that holds the module mydata on the Python path (e.g. "
        "PYTHONPATH=/path/to/your/code) or pip install its package."
    )


def test_a_sweep_over_the_users_model(user_folder, tmp_path):
    cwd = tmp_path
    (cwd / "conf").symlink_to(user_folder / "conf")
    done = run_nntrain(
        "-m", *TRAIN, "trainer=debug", "model.width=4,8", cwd=cwd, env=with_code(user_folder)
    )
    assert done.returncode == 0, done.stderr
    summary = next((cwd / "outputs" / "multirun").rglob("summary.csv")).read_text().splitlines()
    assert len(summary) == 3 and all(",ok," in line for line in summary[1:])
    assert "model.width=4" in summary[1] and "model.width=8" in summary[2]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ("model=oldnet",),
            "could not build model from mynet.OldNet: OldNet.__init__() got an unexpected keyword "
            "argument 'input_shape'; a model class must take the keyword arguments input_shape (a "
            "tuple) and num_classes (an int; 1 for regression) plus the keys of its config file "
            "(manual: docs/pages/your-own-model.md).",
        ),
        (
            ("model=mynet", "+model.depth=3"),
            "could not build model from mynet.Net: Net.__init__() got an unexpected keyword "
            "argument 'depth'; check the model.* values (`nntrain --cfg job` shows them).",
        ),
        (
            ("model=theirnet",),
            "model=theirnet is not an option of 'model'; choose one of: cnn, mlp, mynet, "
            "oldnet, resnet18, speedrun, timm, torchvision (e.g. model=cnn).",
        ),
    ],
    ids=["wrong constructor", "a key it does not take", "not in the folder"],
)
def test_model_mistakes_are_one_sentence(user_folder, tmp_path, args, message):
    (tmp_path / "conf").symlink_to(user_folder / "conf")
    done = run_nntrain("--config-dir", "conf", *args, cwd=tmp_path, env=with_code(user_folder))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"Error: {message}"
    assert "Traceback" not in done.stderr


# A user's module that is broken in each way a module can be (issue 27): the sentence says
# what the user's own code did, and where; only a module that cannot be found gets the
# Python-path advice.
BROKEN_MODULES = {
    "zero_net": "import math\nscale = 1\nfactor = scale / 0\n\nclass Net:\n    pass\n",
    "syntax_net": "class Net(:\n    pass\n",
    "typo_net": "from torch import nn\n\nclass Nett(nn.Module):\n    pass\n\ndef make_net():\n    pass\n",
    "needy_net": "import no_such_dependency_xyz\n\nclass Net:\n    pass\n",
}


@pytest.mark.parametrize(
    "target,message",
    [
        (
            "zero_net.Net",
            "model._target_=zero_net.Net: importing zero_net failed: ZeroDivisionError: division "
            "by zero (code/zero_net.py line 3).",
        ),
        (
            "syntax_net.Net",
            "model._target_=syntax_net.Net: importing syntax_net failed: SyntaxError: invalid "
            "syntax (code/syntax_net.py line 1).",
        ),
        (
            "typo_net.Net",
            "model._target_=typo_net.Net: typo_net has no Net; it defines: Nett, make_net.",
        ),
        (
            "needy_net.Net",
            "model._target_=needy_net.Net: importing needy_net failed: ModuleNotFoundError: No "
            "module named 'no_such_dependency_xyz' (code/needy_net.py line 1); install the "
            "package that provides no_such_dependency_xyz (or put the folder that holds it on "
            "the Python path).",
        ),
        (
            "absent_net.Net",
            "the model class absent_net.Net cannot be imported (No module named 'absent_net'); "
            "put the folder that holds the module absent_net on the Python path (e.g. "
            "PYTHONPATH=/path/to/your/code) or pip install its package.",
        ),
    ],
    ids=["raises on import", "syntax error", "no such class", "missing dependency", "not found"],
)
def test_a_model_module_that_does_not_import_says_why(target, message, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from nntrain.errors import UserError
    from nntrain.instantiate import build

    (tmp_path / "code").mkdir()
    for name, source in BROKEN_MODULES.items():
        (tmp_path / "code" / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    with pytest.raises(UserError) as refused:
        build(OmegaConf.create({"_target_": target}), "model", input_shape=(2,), num_classes=2)
    assert str(refused.value) == message


def test_the_users_model_and_data_modules_raising_on_import_are_one_line(user_folder, tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "zero_net.py").write_text(BROKEN_MODULES["zero_net"])
    (tmp_path / "code" / "zero_data.py").write_text(
        "import torch\n\nrows = torch.zeros(3)\nraise RuntimeError('no rows.csv here')\n"
    )
    env = {"PYTHONPATH": f"{user_folder / 'code'}{os.pathsep}{tmp_path / 'code'}"}
    model = run_nntrain(
        "--config-dir", str(user_folder / "conf"), "data=rings", "model._target_=zero_net.Net",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert model.returncode == 1 and "Traceback" not in model.stderr, model.stderr
    assert model.stderr.strip() == (
        "Error: model._target_=zero_net.Net: importing zero_net failed: ZeroDivisionError: "
        "division by zero (code/zero_net.py line 3)."
    )
    data = run_nntrain(
        "--config-dir", str(user_folder / "conf"), "data=rings", "data._target_=zero_data.Rings",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert data.returncode == 1 and "Traceback" not in data.stderr, data.stderr
    assert data.stderr.strip() == (
        "Error: data._target_=zero_data.Rings: importing zero_data failed: RuntimeError: no "
        "rows.csv here (code/zero_data.py line 4)."
    )
