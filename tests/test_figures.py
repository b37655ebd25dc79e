"""The figures (matplotlib, nntrain.reporting.figures / metric_figures): what each one plotted
(read back from the drawn artists), the PNGs a run and nntrain-eval leave (read back), and that
figures never cost a result or start-up time."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nntrain.commands.train import run
from nntrain.errors import UserError
from nntrain.reporting import figures, metric_figures
from nntrain.reporting.figure_style import Picture
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config, read_metrics, run_nntrain

REPO = Path(__file__).resolve().parents[1]
RED, GREEN = (214, 39, 40), (44, 160, 44)  # tab:red and tab:green, the sample titles' colours


def count_near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    return int((np.abs(image.astype(int) - np.array(rgb)).max(axis=-1) <= tolerance).sum())


def assert_png(path: Path, picture: Picture | None = None, min_side: int = 300) -> None:
    """A PNG on disk, RGB, of a readable size, with the picture's pixels if given."""
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert min(image.size) >= min_side and max(image.size) <= 2000
        pixels = np.asarray(image)
    if picture is not None:
        assert np.array_equal(pixels, picture.image)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # not a blank canvas


# --- confusion matrix ------------------------------------------------------------------------


def test_confusion_matrix_is_row_normalised_and_errors_stand_out_in_red(tmp_path):
    counts = np.array([[90, 10, 0], [1, 49, 0], [0, 2, 8]])
    picture = figures.confusion_matrix_figure(counts, ["cat", "dog", "bird"], "confusion (val)")
    assert picture.title == "confusion (val): 13 of 160 wrong"
    np.testing.assert_allclose(picture.data["rates"][0], [0.9, 0.1, 0.0])
    np.testing.assert_allclose(picture.data["rates"][2], [0.0, 0.2, 0.8])
    assert np.array_equal(picture.data["counts"], counts)
    colours = figures.cell_colours(picture.data["rates"])
    red, green, blue = colours[..., 0], colours[..., 1], colours[..., 2]
    diagonal = np.eye(3, dtype=bool)
    assert np.all(blue[diagonal] > red[diagonal] + 0.3)  # right: blue
    errors = ~diagonal & (counts > 0)
    # even the smallest error (1 of 50, 2 %) is clearly red, not near-white
    assert np.all(red[errors] > green[errors] + 0.3) and np.all(green[errors] < 0.75)
    assert np.all(colours[~diagonal & (counts == 0)] == 1.0)  # no error: white
    picture.save(tmp_path / "cm.png")
    assert_png(tmp_path / "cm.png", picture)


def test_confusion_matrix_grows_with_the_classes_and_stays_readable():
    def size(n: int) -> tuple[int, int]:
        names = [f"class {i}" for i in range(n)]
        return figures.confusion_matrix_figure(np.eye(n, dtype=int) * 5, names).image.shape[:2]

    two, ten, thirty, hundred = size(2), size(10), size(30), size(100)
    assert two[0] < ten[0] < thirty[0] and two[1] < ten[1] < thirty[1]
    assert two[0] >= 300 and max(hundred) <= 1400


def test_confusion_matrix_rejects_a_wrong_shape_and_rates():
    with pytest.raises(ValueError, match=r"matrix has shape \(3, 3\), expected \(2, 2\)"):
        figures.confusion_matrix_figure(np.zeros((3, 3), int), ["a", "b"])
    with pytest.raises(ValueError, match="must hold counts"):
        figures.confusion_matrix_figure(np.array([[0.9, 0.1], [0.2, 0.8]]), ["a", "b"])


# --- sample grid -----------------------------------------------------------------------------


def test_sample_order_shows_the_most_confident_mistakes_first_then_right_ones():
    targets = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    predicted = np.array([0, 2, 2, 1, 1, 0, 0, 1])  # wrong at 1, 3, 5
    confidence = np.array([0.9, 0.6, 0.8, 0.95, 0.7, 0.3, 0.5, 0.99])
    assert figures.sample_order(targets, predicted, confidence, count=6).tolist() == [
        3, 1, 5, 0, 2, 4,
    ]  # fmt: skip
    # at most three quarters mistakes: some right ones always show
    assert figures.sample_order(targets, predicted, confidence, count=4).tolist() == [3, 1, 5, 0]
    right = targets.copy()
    assert figures.sample_order(targets, right, confidence, count=3).tolist() == [0, 1, 2]


@pytest.mark.parametrize("channels,dtype", [(1, np.float32), (3, np.uint8)])
def test_sample_grid_titles_mistakes_red_and_right_ones_green(channels, dtype):
    grey = np.full((4, channels, 8, 8), 0.5 if dtype == np.float32 else 128, dtype=dtype)
    picture = figures.sample_grid(grey, ["cat"] * 4, ["dog", "dog", "cat", "cat"], [0.9] * 4)
    assert picture.data == {"shown": 4, "wrong": 2}
    assert "the most confident mistakes first" in picture.title
    image = picture.image
    assert count_near(image, RED) > 50 and count_near(image, GREEN) > 50
    middle = image.shape[1] // 2  # 4 columns: the two mistakes on the left half
    assert count_near(image[:, :middle], GREEN) == 0 and count_near(image[:, middle:], RED) == 0
    with pytest.raises(ValueError, match="C = 1 or 3"):
        figures.sample_grid(np.zeros((2, 2, 8, 8)), ["a"] * 2, ["a"] * 2)
    with pytest.raises(ValueError, match="need 2 true and predicted names, got 1, 2"):
        figures.sample_grid(np.zeros((2, 1, 8, 8)), ["a"], ["a"] * 2)


def test_sample_grid_shrinks_large_images_and_shows_at_most_32():
    photos = np.random.default_rng(0).integers(0, 255, (40, 3, 300, 200), dtype=np.uint8)
    picture = figures.sample_grid(photos, ["a"] * 40, ["a"] * 40)
    assert picture.data["shown"] == 32 and max(picture.image.shape) <= 1200
    # a grid of two still has room for its title: ink in the title band, none at its edges
    two = figures.sample_grid(photos[:2], ["a", "b"], ["b", "b"], title="validation samples")
    band = two.image[:40]
    assert (band.max(axis=-1) < 100).sum() > 100
    assert np.all(band[:, :3] == 255) and np.all(band[:, -3:] == 255)


# --- decision boundary -----------------------------------------------------------------------


def moons(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    angle = np.linspace(0, np.pi, n // 2)
    outer = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    inner = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    points = np.concatenate([outer, inner]) + 0.1 * rng.normal(size=(n, 2))
    return points, np.repeat([0, 1], n // 2)


def test_decision_boundary_covers_the_points_in_raw_units_and_rings_mistakes():
    points, labels = moons()
    calls = []

    def predict(raw: np.ndarray) -> np.ndarray:
        calls.append(raw.copy())
        return (raw[:, 0] > 0.5).astype(np.int64)

    picture = figures.decision_boundary_figure(
        predict, points, labels, ["outer", "inner"], ["f1", "f2"], resolution=50
    )
    assert len(calls) == 1 and calls[0].dtype == np.float32
    grid, scored = calls[0][: 50 * 50], calls[0][50 * 50 :]
    np.testing.assert_allclose(scored, points, rtol=1e-6)  # the points themselves, raw
    span = points.max(axis=0) - points.min(axis=0)
    np.testing.assert_allclose(grid.min(axis=0), points.min(axis=0) - 0.1 * span, atol=1e-5)
    np.testing.assert_allclose(grid.max(axis=0), points.max(axis=0) + 0.1 * span, atol=1e-5)
    # the regions are the predictor's, row 0 the lowest y: class 1 right of x = 0.5
    xs = np.linspace(picture.data["low"][0], picture.data["high"][0], 50)
    assert np.array_equal(picture.data["regions"][7], (xs > 0.5).astype(int))
    wrong = int(((points[:, 0] > 0.5).astype(int) != labels).sum())
    assert picture.data["misclassified"] == wrong > 0
    assert picture.title == f"decision boundary: {wrong} of 200 points misclassified"
    with pytest.raises(ValueError, match=r"expected \(N, 2\) points and N labels"):
        figures.decision_boundary_figure(lambda g: g[:, 0], np.zeros((5, 3)), np.zeros(5), ["a"])


# --- curves, ROC, precision-recall, per class, predicted vs true ------------------------------


def history(epochs: int) -> list[dict]:
    return [
        {"epoch": e, "train/loss": 1 / e, "val/loss": 1.2 / e + 0.01 * e, "train/acc": 1 - 0.5 / e,
         "val/acc": 1 - 0.6 / e, "lr": 1e-3 * 0.5**e, "epoch_time": 1.0}
        for e in range(1, epochs + 1)
    ]  # fmt: skip


def test_training_curves_plot_one_point_per_epoch_and_mark_the_best():
    picture = metric_figures.training_curves(history(6), best_epoch=4, monitor="val/loss")
    assert picture.title == "training curves: best epoch 4 of 6 (val/loss 0.3400)"
    plotted = picture.data
    assert set(plotted) == {
        "loss/train", "loss/val", "loss/best epoch 4", "acc/train", "acc/val", "acc/best epoch 4",
        "lr",
    }  # fmt: skip
    for key in ("loss/train", "loss/val", "acc/train", "acc/val", "lr"):
        assert plotted[key].shape == (6, 2)
        assert plotted[key][:, 0].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(plotted["loss/val"][:, 1], [r["val/loss"] for r in history(6)])
    np.testing.assert_allclose(plotted["lr"][:, 1], [1e-3 * 0.5**e for e in range(1, 7)])
    assert plotted["loss/best epoch 4"].tolist() == [[4, 1.2 / 4 + 0.04]]
    one = metric_figures.training_curves(history(1), best_epoch=1)
    assert one.data["loss/train"].shape == (1, 2)
    with pytest.raises(ValueError, match="no finished epoch"):
        metric_figures.training_curves([], best_epoch=1)


def test_curves_take_a_regression_metric_in_place_of_accuracy():
    rows = [{"epoch": e, "train/loss": 1 / e, "val/loss": 1 / e, "val/mae": 2 / e, "lr": 0.1}
            for e in (1, 2)]  # fmt: skip
    assert metric_figures.curve_metrics(rows) == ["loss", "mae"]
    assert metric_figures.training_curves(rows, 2).data["mae/val"].shape == (2, 2)


def binary_predictions(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, n)
    scores = np.clip(0.35 * truth + 0.65 * rng.random(n), 0, 1)
    return truth, scores


def test_roc_auc_in_the_title_is_scikit_learns_on_the_same_predictions(tmp_path):
    truth, scores = binary_predictions()
    picture = metric_figures.roc_figure(truth, scores, "yes", "ROC curve (val)")
    expected = metrics.roc_auc_score(truth, scores)
    shown = float(re.fullmatch(r"ROC curve \(val\): AUC = ([0-9.]+)", picture.title)[1])
    assert shown == pytest.approx(expected, abs=5e-5) and picture.data["auc"] == expected
    curve = picture.data["roc"]  # the drawn (fpr, tpr) points enclose the same area
    assert metrics.auc(curve[:, 0], curve[:, 1]) == pytest.approx(expected)  # trapezoids
    picture.save(tmp_path / "roc.png")
    assert_png(tmp_path / "roc.png", picture)
    with pytest.raises(ValueError, match="both classes"):
        metric_figures.roc_figure(np.ones(5), np.ones(5))


def test_precision_recall_average_precision_is_scikit_learns():
    truth, scores = binary_predictions()
    picture = metric_figures.pr_figure(truth, scores)
    expected = metrics.average_precision_score(truth, scores)
    assert picture.data["average_precision"] == expected
    assert picture.title.endswith(f"average precision = {expected:.4f}")
    precision, recall, _ = metrics.precision_recall_curve(truth, scores)
    assert np.array_equal(picture.data["precision-recall"], np.column_stack([recall, precision]))


def test_per_class_bars_put_the_worst_class_first_and_stop_at_30_classes():
    per_class = {"class": ["a", "b", "c"], "precision": [0.9, 0.5, 1.0],
                 "recall": [0.8, 0.4, 1.0], "f1": [0.85, 0.44, 1.0], "support": [10, 5, 7]}  # fmt: skip
    picture = metric_figures.per_class_figure(per_class, "per class (test)")
    assert picture.data["classes"] == ["b", "a", "c"]
    assert picture.title == f"per class (test): macro F1 = {np.mean([0.85, 0.44, 1.0]):.4f}"
    many = {key: [0.5] * 31 if key != "class" else [str(i) for i in range(31)] for key in per_class}
    with pytest.raises(ValueError, match="1 to 30 classes, got 31"):
        metric_figures.per_class_figure(many)


def test_predicted_vs_true_reports_scikit_learns_r2_and_plots_the_residuals():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=300)
    predicted = truth + 0.3 * rng.normal(size=300)
    picture = metric_figures.predicted_vs_true(truth, predicted, "price")
    assert picture.data["r2"] == metrics.r2_score(truth, predicted)
    assert picture.data["mae"] == metrics.mean_absolute_error(truth, predicted)
    assert np.array_equal(picture.data["predicted"], np.column_stack([truth, predicted]))
    np.testing.assert_allclose(picture.data["residual"][:, 1], predicted - truth)
    assert picture.data["identity"][0, 0] == picture.data["identity"][0, 1]


# --- cost: no matplotlib at start-up, nothing lost when killed while drawing -------------------


def test_matplotlib_is_imported_only_to_draw_and_leaves_the_callers_style_alone():
    code = (
        "import sys\n"
        "import nntrain.commands.train, nntrain.training.trainer, nntrain.reporting.end_of_run\n"
        "import nntrain.reporting.figures, nntrain.reporting.metric_figures\n"
        "print(any(m.split('.')[0] == 'matplotlib' for m in sys.modules))\n"
        "import matplotlib\n"
        "from nntrain.reporting.figure_style import STYLE\n"
        "before = {key: matplotlib.rcParams[key] for key in STYLE}\n"
        "nntrain.reporting.metric_figures.roc_figure([0, 1, 1], [0.2, 0.6, 0.9])\n"
        "print({key: matplotlib.rcParams[key] for key in STYLE} == before)\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "False"]


def test_a_run_killed_while_drawing_its_figures_keeps_metrics_json(tmp_path):
    command = [
        str(Path(sys.executable).with_name("nntrain")), "trainer=debug", "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
    metrics_json = tmp_path / "metrics.json"
    deadline = time.monotonic() + 120
    while not metrics_json.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)  # metrics.json is written: the figures come next
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert json.loads(metrics_json.read_text())["test/acc"] > 0  # whole, not half-written
    drawn = {path.name for path in tmp_path.glob("*.png")}
    assert drawn < {"curves.png", "confusion_matrix.png", "samples.png"}  # killed mid-way
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written PNG


def test_report_images_must_be_a_boolean_and_false_skips_the_figures(tmp_path):
    with pytest.raises(
        UserError, match=r"^trainer.report_images must be true or false, got 'no'; for example "
        r"trainer.report_images=true\.$"
    ):
        Trainer(device="cpu", report_images="no")
    run(compose_config("trainer=debug", "trainer.report_images=false"), str(tmp_path))
    assert read_metrics(tmp_path)["epochs_run"] == 2
    assert not list(tmp_path.glob("*.png"))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert events.Tags()["images"] == [] and "~hparams/test/acc" in events.Tags()["scalars"]


# --- what runs and nntrain-eval leave ---------------------------------------------------------


def test_a_digits_run_saves_its_figures_and_logs_them_to_tensorboard(tmp_path):
    run(compose_config("trainer=debug"), str(tmp_path))  # two epochs
    for name in ("curves.png", "confusion_matrix.png", "samples.png", "confusion_test.png"):
        assert_png(tmp_path / name)
    assert not (tmp_path / "roc_curve.png").exists()  # ten classes: no ROC curve
    # resumed for a third epoch: the history comes back with the checkpoint, the curves grow
    resumed = run_nntrain(f"resume={tmp_path}", "trainer.max_epochs=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    history = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]  # one point per epoch to draw
    redrawn = metric_figures.training_curves(
        history, read_metrics(tmp_path)["best_epoch"], "val/acc"
    )
    assert redrawn.data["acc/val"][:, 1].tolist() == [row["val/acc"] for row in history]
    with Image.open(tmp_path / "curves.png") as saved:
        drawn = np.asarray(saved)
    # the run drew the same curves, under a caption naming the run (a band of grey text)
    band = drawn.shape[0] - redrawn.image.shape[0]
    assert np.array_equal(drawn[band:], redrawn.image) and 15 < band < 40
    assert len(np.unique(drawn[:band].reshape(-1, 3), axis=0)) > 5  # text, not a blank band
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    images = set(events.Tags()["images"])
    assert {"~figures/curves", "~figures/val_confusion_matrix", "~figures/val_samples"} <= images
    assert "~figures/test_confusion_matrix" in images  # the run was tested: its test figures too
    # TensorBoard gets them narrower (it shows an image about 350 pixels wide): 16 samples in
    # 4 columns, the curves one above the other; the PNGs keep their full size
    with Image.open(tmp_path / "samples.png") as saved:
        assert 300 < events.Images("~figures/val_samples")[0].width < saved.size[0]
    board = events.Images("~figures/curves")[-1]
    assert board.width <= 520 < drawn.shape[1] and board.height > board.width


def test_a_moons_run_and_its_evaluation_draw_roc_and_precision_recall(tmp_path):
    run(compose_config("data=moons", "trainer=debug", "trainer.max_epochs=3"), str(tmp_path))
    for name in ("curves.png", "confusion_matrix.png", "roc_curve.png", "pr_curve.png",
                 "decision_boundary.png", "roc_test.png", "pr_test.png"):  # fmt: skip
        assert_png(tmp_path / name)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"~figures/val_roc_curve", "~figures/val_pr_curve", "~figures/val_decision_boundary",
            "~figures/test_roc_curve", "~figures/test_pr_curve"} <= set(
        events.Tags()["images"]
    )  # fmt: skip
    done = subprocess.run(
        [str(Path(sys.executable).with_name("nntrain-eval")), f"ckpt={tmp_path}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("confusion_test.png", "per_class_test.png", "roc_test.png", "pr_test.png"):
        assert_png(tmp_path / name)
        assert name in done.stdout  # "wrote ..." names it
