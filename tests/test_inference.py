"""One inference path: a run's test score, nntrain-eval's and nntrain-predict's predictions come
from the same function, so they agree to the last digit, under bf16 autocast too."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nntrain.commands.train import run
from nntrain.devices import Compute
from nntrain.inference.logits import probabilities, score
from nntrain.inference.trained_run import build_model, load_run, run_compute
from nntrain.instantiate import build
from tests.conftest import compose_config, read_metrics
from tests.test_evaluate import run_eval
from tests.test_predict import run_predict

CLASSES = {"ant": 90, "bee": 120, "cat": 150}  # mean grey levels: close, so the model errs


def noisy_folder(folder: Path, per_class: int, seed: int) -> None:
    """RGB PNGs of noise around each class's grey level: a task the model gets partly wrong,
    with logits close enough that precision matters."""
    generator = np.random.default_rng(seed)
    for name, level in CLASSES.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(generator.normal(level, 60, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i:02d}.png")


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("photos")
    noisy_folder(root / "train", per_class=16, seed=0)
    noisy_folder(root / "test", per_class=10, seed=1)
    cfg = compose_config(
        "trainer=debug",
        "trainer.precision=bf16",
        "trainer.test_time_augmentation=flip",
        "data=imagefolder",
        f"data.root={root}",
        "data.num_workers=0",
        "data.image_size=12",
        "data.batch_size=7",  # the last test batch is a partial one
        "model=cnn",
        "model.channels=[8,8]",
    )
    run_dir = root / "run"
    run(cfg, str(run_dir))
    return root, run_dir


def test_eval_and_predict_reproduce_the_runs_test_score_to_the_last_digit(bf16_run, tmp_path):
    root, run_dir = bf16_run
    metrics = read_metrics(run_dir)
    assert 0 < metrics["test/acc"] < 1  # some right, some wrong: agreement means something

    done = run_eval(f"ckpt={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "eval_test.json").read_text())
    assert results["test/acc"] == metrics["test/acc"]
    assert results["test/loss"] == metrics["test/loss"]  # summed batch by batch, as the run did

    done = run_predict(f"ckpt={run_dir}", f"inputs={root / 'test'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "predictions.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 30
    right = sum(row["predicted"] == row["input"].split("/")[0] for row in rows)
    assert right / len(rows) == metrics["test/acc"]


def test_predict_runs_the_runs_precision_and_it_matters(bf16_run, tmp_path):
    root, run_dir = bf16_run
    trained = load_run(run_dir)
    model = build_model(trained, "cpu")
    compute = run_compute(trained, torch.device("cpu"), model)
    assert compute.autocast_dtype is torch.bfloat16 and compute.channels_last
    # The test loader's own batches, through the one path, in bf16 and in fp32.
    data = build(trained.config.data, "data")
    data.setup(torch.device("cpu"))
    inputs = torch.cat([x for x, _ in data.test_loader()])
    assert len(inputs) == 30
    bf16 = probabilities(model, inputs.split(7), compute, trained.test_time_augmentation)
    fp32 = probabilities(model, inputs.split(7), Compute(torch.device("cpu")), "flip")
    assert not torch.equal(bf16, fp32)  # bf16 autocast really ran

    done = run_predict(f"ckpt={run_dir}", f"inputs={root / 'test'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "predictions.csv").open() as file:
        shown = [float(row["probability"]) for row in csv.DictReader(file)]
    assert shown == [round(p, 4) for p in bf16.max(dim=1).values.tolist()]

    scores = score(model, data.test_loader(), compute, "flip")
    assert scores.acc == read_metrics(run_dir)["test/acc"]
