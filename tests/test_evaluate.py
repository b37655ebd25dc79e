"""nntrain-eval, the metrics behind it, and what a finished run leaves in TensorBoard."""

import json
import math
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nntrain.commands.train import run
from nntrain.inference.metrics import classification_report
from tests.conftest import compose_config, read_metrics


def run_eval(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("nntrain-eval")), *args]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("digits") / "run"
    run(compose_config("trainer.max_epochs=4"), str(run_dir))
    return run_dir


def eval_matching_the_run(
    run_dir: Path, ckpt: str, cwd: Path
) -> tuple[dict, subprocess.CompletedProcess]:
    """nntrain-eval's test results for ckpt (and its process), after checking that they equal
    the run's own test score."""
    done = run_eval(f"ckpt={ckpt}", cwd=cwd)
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "eval_test.json").read_text())
    metrics = read_metrics(run_dir)
    assert results["test/acc"] == metrics["test/acc"]
    assert results["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)
    return results, done


def test_eval_of_the_best_checkpoint_equals_the_runs_test_accuracy(digits_run, tmp_path):
    ckpt = f"{digits_run}/checkpoints/best.pt"
    results, done = eval_matching_the_run(digits_run, ckpt, tmp_path)
    assert results["test/count"] == 359 and 0 < results["test/top5"] <= 1
    assert results["test/per_class"]["class"] == [str(d) for d in range(10)]
    assert sum(results["test/per_class"]["support"]) == 359
    matrix = results["test/confusion_matrix"]
    assert sum(map(sum, matrix)) == 359
    assert sum(matrix[i][i] for i in range(10)) == round(results["test/acc"] * 359)
    with Image.open(digits_run / "confusion_test.png") as image:
        assert image.format == "PNG" and image.mode == "RGB" and min(image.size) >= 300
    assert "per class" in done.stdout and "weighted avg" in done.stdout
    assert done.stdout.startswith(f"{digits_run}/checkpoints/best.pt (epoch ")  # names the run
    assert done.stdout.splitlines()[0].endswith(") on the test split")
    assert not (tmp_path / "outputs").exists()  # eval writes next to the checkpoint only

    val = run_eval(f"ckpt={digits_run}", "split=val", cwd=tmp_path)  # a run dir means best.pt
    assert val.returncode == 0, val.stderr
    assert json.loads((digits_run / "eval_val.json").read_text())["val/acc"] == pytest.approx(
        read_metrics(digits_run)["val/acc"]
    )


def test_eval_mistakes_are_one_sentence(digits_run, tmp_path):
    done = run_eval(f"ckpt={tmp_path}/nothing.pt", cwd=tmp_path)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == f"Error: checkpoint {tmp_path}/nothing.pt does not exist; pass the path of a .pt file in a run's checkpoints/ folder."
    )
    done = run_eval(f"ckpt={digits_run}", "split=holdout", cwd=tmp_path)
    assert done.stderr.strip() == (
        "Error: split must be one of test, val, train, got 'holdout'; for example split=test."
    )
    done = run_eval(cwd=tmp_path)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "Error: ckpt has no value; set it on the command line, e.g. ckpt=outputs/2026-11-25/10-00-00-mlp-digits/checkpoints/best.pt."
    )


def test_report_matches_hand_computed_metrics():
    # 3 classes, 6 samples; predictions: 0,0,1,1,2,0 ; truth: 0,1,1,1,2,2
    predicted = torch.tensor([0, 0, 1, 1, 2, 0])
    truth = torch.tensor([0, 1, 1, 1, 2, 2])
    logits = torch.nn.functional.one_hot(predicted, 3).float() * 4
    report = classification_report(logits, truth, ["a", "b", "c"])
    assert report["acc"] == pytest.approx(4 / 6)
    per_class = report["per_class"]
    # a: predicted 3 times, right once; b: predicted twice, both right, 3 true; c: 1/1 right of 2
    assert per_class["precision"] == pytest.approx([1 / 3, 1.0, 1.0])
    assert per_class["recall"] == pytest.approx([1.0, 2 / 3, 1 / 2])
    f1 = [
        2 * p * r / (p + r)
        for p, r in zip(per_class["precision"], per_class["recall"], strict=True)
    ]
    assert per_class["f1"] == pytest.approx(f1)
    assert per_class["support"] == [1, 3, 2]
    assert report["macro"]["f1"] == pytest.approx(sum(f1) / 3)
    assert report["weighted"]["recall"] == pytest.approx((1 * 1 + 3 * 2 / 3 + 2 * 1 / 2) / 6)
    assert report["confusion_matrix"] == [[1, 0, 0], [1, 2, 0], [1, 0, 1]]
    assert "top5" not in report and "auroc" not in report


def test_binary_auroc_and_average_precision_match_their_definitions():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.65, 0.2, 0.9, 0.55])
    truth = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    logits = torch.stack([torch.zeros(8), torch.logit(scores)], dim=1)  # softmax[:, 1] == scores
    report = classification_report(logits, truth, ["no", "yes"])
    positives, negatives = scores[truth == 1], scores[truth == 0]
    # AUROC: the probability that a random positive scores above a random negative
    pairs = [(p > n).float() + 0.5 * (p == n).float() for p in positives for n in negatives]
    assert report["auroc"] == pytest.approx(float(sum(pairs) / len(pairs)))
    # AP: mean precision at the rank of each positive, scores sorted high to low
    order = scores.argsort(descending=True)
    hits = truth[order].float()
    precision_at = hits.cumsum(0) / torch.arange(1, 9)
    assert report["average_precision"] == pytest.approx(
        float((precision_at * hits).sum() / hits.sum())
    )


def test_top5_with_more_than_five_classes():
    logits = torch.tensor([[6.0, 5, 4, 3, 2, 1, 0], [0.0, 1, 2, 3, 4, 5, 6]])
    report = classification_report(logits, torch.tensor([4, 0]), [str(i) for i in range(7)])
    assert report["top5"] == 0.5 and report["acc"] == 0.0


def test_tensorboard_has_scalars_images_and_hparams(digits_run):
    events = EventAccumulator(str(digits_run))  # a single run's events are in its run dir
    events.Reload()
    tags = events.Tags()
    expected = {"train/loss", "train/acc", "val/loss", "val/acc", "~optimizer/grad_norm",
                "~optimizer/lr", "~optimizer/lr_decay", "~optimizer/lr_no_decay",
                "~speed/samples_per_sec", "~speed/epoch_time", "~hparams/val/acc",
                "~hparams/val/loss", "~hparams/test/acc", "~hparams/test/loss",
                "~hparams/best_epoch"}  # fmt: skip
    assert set(tags["scalars"]) == expected
    # TensorBoard opens the first groups (ASCII order): the task's curves, train/* and val/*
    groups = sorted({tag.split("/")[0] for tag in tags["scalars"]})
    assert groups == ["train", "val", "~hparams", "~optimizer", "~speed"]
    assert {"~figures/val_confusion_matrix", "~figures/val_samples"} <= set(tags["images"])
    assert "~figures/test_confusion_matrix" in tags["images"]
    image = events.Images("~figures/val_samples")[0]
    assert image.width > 100 and image.height > 100
    assert events.Scalars("~hparams/test/acc")[0].value == pytest.approx(
        read_metrics(digits_run)["test/acc"]
    )
    # the Custom Scalars tab opens on train and val curves together; the rest is closed
    from tensorboard.plugins.custom_scalar import layout_pb2

    written = events.Tensors("custom_scalars__config__")[-1]
    layout = layout_pb2.Layout.FromString(written.tensor_proto.string_val[0])
    curves, more = layout.category
    charts = {c.title: list(c.multiline.tag) for c in curves.chart}
    assert charts == {
        "loss (train, val)": ["^(train|val)/loss$"],
        "accuracy (train, val)": ["^(train|val)/acc$"],
        "learning rate": ["^~optimizer/lr$"],
    }
    assert not curves.closed and more.closed
    hparams = events.PluginTagToContent("hparams")
    assert set(hparams) == {
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    }
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["model"].string_value == "MLP"
    assert start.hparams["data"].string_value == "digits"
    assert start.hparams["optimizer"].string_value == "AdamW"
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(1e-3)
    assert start.hparams["status"].string_value == "ok"
    # whole numbers as text (the tab shows a number as 64.000)
    assert start.hparams["data.batch_size"].string_value == "64"
    assert start.hparams["seed"].string_value == "42"
    assert start.hparams["trainer.max_epochs"].string_value == "4"
    # the Trial ID: the run directory's name (short: the tab's column shows about 17 characters)
    assert start.group_name == digits_run.name
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/experiment"]
    ).experiment
    # what the user set leads the list, marked as differing (TensorBoard ticks those first)
    infos = experiment.hparam_infos
    assert infos[0].name == "trainer.max_epochs" and infos[0].differs
    assert not any(info.differs for info in infos[1:])
    # a classification's figures first (TensorBoard shows five), a regression's after them
    assert [(m.name.tag, m.display_name) for m in experiment.metric_infos][:5] == [
        ("~hparams/val/acc", "val/acc"),
        ("~hparams/val/loss", "val/loss"),
        ("~hparams/test/acc", "test/acc"),
        ("~hparams/test/loss", "test/loss"),
        ("~hparams/best_epoch", "best_epoch"),
    ]
    assert {"val/rmse", "val/r2"} <= {m.display_name for m in experiment.metric_infos}


def test_moons_run_draws_its_decision_boundary(tmp_path):
    run(compose_config("data=moons", "trainer.max_epochs=5"), str(tmp_path))
    with Image.open(tmp_path / "decision_boundary.png") as image:
        assert image.format == "PNG" and image.size[0] > 300
        colours = len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0))
    assert colours > 20  # regions, points and text, not a blank canvas
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert "~figures/val_decision_boundary" in events.Tags()["images"]


def test_subscription_importance_ranks_previous_purchases_last(tmp_path):
    overrides = [
        "data=subscription",
        "trainer.max_epochs=40",
        "trainer.early_stopping.patience=null",
    ]
    run(compose_config(*overrides), str(tmp_path / "run"))
    done = run_eval(f"ckpt={tmp_path / 'run'}", "split=val", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    importance = json.loads((tmp_path / "run" / "eval_val.json").read_text())["val/importance"]
    permutation = importance["permutation"]
    assert min(permutation, key=permutation.get) == "previous_purchases"
    assert permutation["income"] > 0.05 and math.isfinite(permutation["previous_purchases"])
    assert set(importance["first_layer_weight"]) == {
        "age",
        "income",
        "browsing_time",
        "previous_purchases",
    }
    assert "feature importance" in done.stdout and "auroc" in done.stdout


def test_eval_scores_with_the_runs_test_time_augmentation(tmp_path):
    run_dir = tmp_path / "run"
    overrides = ("model=cnn", "trainer=debug", "trainer.test_time_augmentation=flip_translate")
    run(compose_config(*overrides), str(run_dir))
    eval_matching_the_run(run_dir, str(run_dir), tmp_path)


def test_a_run_without_a_validation_split_is_evaluated_and_an_empty_split_named(tmp_path):
    """data.val_fraction=0 is a supported run (README, "Offline sets"): nntrain-eval scores its
    test split without the permutation importance (measured on the validation split; it was a
    torch.cat traceback), and a split the data left empty is one sentence (an AssertionError)."""
    from omegaconf import OmegaConf

    from nntrain.commands.evaluate import evaluate_checkpoint
    from nntrain.errors import UserError

    overrides = [
        "data=moons",
        "trainer=debug",
        "data.val_fraction=0",
        "trainer.report_images=false",
    ]
    run_dir = tmp_path / "run"
    run(compose_config(*overrides, "trainer.early_stopping.monitor=none"), str(run_dir))
    eval_config = {"ckpt": str(run_dir), "split": "test", "device": "cpu", "batch_size": None}
    results, _, _ = evaluate_checkpoint(OmegaConf.create({**eval_config, "data": {}}))
    assert results["test/acc"] == read_metrics(run_dir)["test/acc"]
    assert "test/importance" not in results
    for split, empty in (("val", {}), ("test", {"test_fraction": 0})):
        with pytest.raises(UserError) as error:
            evaluate_checkpoint(OmegaConf.create({**eval_config, "split": split, "data": empty}))
        others = " or ".join(f"split={s}" for s in ("test", "val", "train") if s != split)
        assert str(error.value) == (
            f"split={split} has no samples: the run's data has no {split} split "
            f"(data.{split}_fraction=0); evaluate {others} instead."
        )


def test_ckpt_of_a_sweep_or_of_a_run_that_saved_nothing_says_so(tmp_path):
    """Both named a checkpoints/best.pt that never was: the sweep's own (its jobs hold theirs),
    or that of a job that failed before its first checkpoint."""
    from nntrain.errors import UserError
    from nntrain.inference.trained_run import load_run

    sweep = tmp_path / "sweep"
    (sweep / "0" / "checkpoints").mkdir(parents=True)
    (sweep / "0" / "checkpoints" / "best.pt").write_bytes(b"x")
    (sweep / "1").mkdir()
    status = {"status": "failed", "error": "NonFiniteLoss: the training loss became nan."}
    (sweep / "1" / "status.json").write_text(json.dumps(status))
    with pytest.raises(UserError) as error:
        load_run(sweep)
    assert str(error.value) == (
        f"ckpt={sweep} is a sweep directory; give one of its jobs, e.g. ckpt={sweep / '0'} (its "
        "summary.csv lists every job with its score)."
    )
    with pytest.raises(UserError) as error:
        load_run(sweep / "1")
    assert str(error.value) == (
        f"ckpt={sweep / '1'} holds no checkpoint: the run failed before it saved one "
        "(NonFiniteLoss: the training loss became nan); fix that and train it again."
    )


def test_a_run_shorter_than_a_log_window_still_has_its_train_curves(tmp_path):
    """4 optimizer steps an epoch, a log step every 10: each epoch's last step logs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nntrain.optim.schedules import constant
    from nntrain.training.trainer import Trainer
    from tests.helpers import BlobData

    trainer = Trainer(device="cpu", max_epochs=2, progress=False, log_every_n_steps=10)
    trainer.fit(
        torch.nn.Linear(4, 3), BlobData(n=120, batch_size=16), partial(torch.optim.SGD, lr=0.1),
        partial(constant), run_dir=tmp_path,
    )  # fmt: skip
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    for tag in ("train/loss", "train/acc", "~optimizer/grad_norm", "~optimizer/lr", "val/acc"):
        assert [e.step for e in events.Scalars(tag)] == [4, 8], tag
