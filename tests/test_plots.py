import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nntrain import plots

REPO = Path(__file__).resolve().parents[1]
TAB_GREEN, TAB_RED, TAB_BLUE = (44, 160, 44), (214, 39, 40), (31, 119, 180)


def assert_rgb_image(image: np.ndarray, min_side: int = 150, max_side: int = 1600) -> None:
    assert isinstance(image, np.ndarray)
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert min_side <= image.shape[0] <= max_side and min_side <= image.shape[1] <= max_side
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) >= 10, "the image is (nearly) blank"


def count_near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    """Pixels within tolerance of rgb (anti-aliased text rarely hits the exact colour)."""
    distance = np.abs(image.astype(int) - np.array(rgb)).max(axis=-1)
    return int((distance <= tolerance).sum())


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("classes", [2, 10, 100])
def test_confusion_matrix_renders_for_few_and_many_classes(classes):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 20, (classes, classes))
    matrix[np.arange(classes), np.arange(classes)] += 200
    names = [f"class {i}" for i in range(classes)]
    image = plots.confusion_matrix_image(matrix, names)
    assert_rgb_image(image)
    # the figure grows with the class count, but stays capped
    assert image.shape[0] <= 1300
    if classes == 100:
        small = plots.confusion_matrix_image(matrix[:2, :2], names[:2])
        assert image.shape[0] > small.shape[0]


def test_confusion_matrix_accepts_rates_and_rejects_a_wrong_shape():
    rates = np.array([[0.9, 0.1], [0.25, 0.75]])
    assert_rgb_image(plots.confusion_matrix_image(rates, ["outer", "inner"], title="recall"))
    with pytest.raises(ValueError, match="shape"):
        plots.confusion_matrix_image(np.zeros((3, 3)), ["a", "b"])


def moons(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    angle = np.linspace(0, np.pi, n // 2)
    outer = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    inner = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    points = np.concatenate([outer, inner]) + 0.1 * rng.normal(size=(n, 2))
    return points, np.repeat([0, 1], n // 2)


def test_decision_boundary_evaluates_predict_on_a_grid_covering_the_points():
    points, labels = moons()
    calls = []

    def predict(grid: np.ndarray) -> np.ndarray:
        calls.append((grid.shape, grid.min(axis=0), grid.max(axis=0)))
        return (grid[:, 0] > 0.5).astype(np.int64)

    image = plots.decision_boundary_image(
        predict, points, labels, ["outer", "inner"], ["f1", "f2"], resolution=50
    )
    assert_rgb_image(image)
    assert len(calls) == 1
    shape, low, high = calls[0]
    assert shape == (50 * 50, 2)
    span = points.max(axis=0) - points.min(axis=0)
    # the whole range of the points plus a 10 % margin on each side
    np.testing.assert_allclose(low, points.min(axis=0) - 0.1 * span, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(high, points.max(axis=0) + 0.1 * span, rtol=1e-5, atol=1e-5)


def test_decision_boundary_regions_follow_the_predictor():
    points, labels = moons()

    def render(predict):
        return plots.decision_boundary_image(
            predict, points, labels, ["outer", "inner"], resolution=40
        )

    by_x = render(lambda grid: (grid[:, 0] > 0.5).astype(int))
    by_y = render(lambda grid: (grid[:, 1] > 0.25).astype(int))
    again_by_x = render(lambda grid: (grid[:, 0] > 0.5).astype(int))
    assert by_x.shape == by_y.shape
    assert np.array_equal(by_x, again_by_x)  # deterministic
    differing = np.any(by_x != by_y, axis=-1).mean()
    assert differing > 0.1, f"only {differing:.1%} of the pixels changed with the predictor"


def test_decision_boundary_handles_points_on_a_line_and_more_classes():
    points = np.stack([np.arange(30.0), np.zeros(30)], axis=1)  # no spread along y
    labels = np.arange(30) % 3
    image = plots.decision_boundary_image(
        lambda grid: (grid[:, 0] // 10).astype(int) % 3, points, labels, ["a", "b", "c"]
    )
    assert_rgb_image(image)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_image_grid_takes_grey_and_colour_uint8_and_float_images(channels, dtype):
    rng = np.random.default_rng(0)
    images = rng.random((12, channels, 16, 16))
    images = (images * 255).astype(np.uint8) if dtype == np.uint8 else images.astype(dtype)
    names = [str(i % 10) for i in range(12)]
    image = plots.image_grid(images, names, names[::-1], columns=4)
    assert_rgb_image(image)
    assert image.shape[1] > image.shape[0]  # 4 columns, 3 rows


def test_image_grid_titles_are_green_when_right_and_red_when_wrong():
    grey = np.full((4, 3, 8, 8), 0.5, dtype=np.float32)  # no green or red in the images
    right = plots.image_grid(grey, ["cat"] * 4, ["cat"] * 4)
    wrong = plots.image_grid(grey, ["cat"] * 4, ["dog"] * 4)
    assert count_near(right, TAB_GREEN) > 20 and count_near(right, TAB_RED) == 0
    assert count_near(wrong, TAB_RED) > 20 and count_near(wrong, TAB_GREEN) == 0


def test_image_grid_shows_at_most_32_images():
    images = np.zeros((50, 1, 8, 8), dtype=np.uint8)
    names = ["a"] * 50
    assert (
        plots.image_grid(images, names, names).shape
        == plots.image_grid(images[:32], names[:32], names[:32]).shape
    )
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plots.image_grid(np.zeros((2, 2, 8, 8)), ["a"] * 2, ["a"] * 2)


def test_bar_chart_puts_the_largest_value_on_top():
    image = plots.bar_chart_image({"small": 1.0, "large": 3.0, "middle": 2.0}, "importance", "drop")
    assert_rgb_image(image)
    blue = np.all(image == TAB_BLUE, axis=-1)
    rows = np.flatnonzero(blue.any(axis=1))
    # contiguous runs of rows with blue pixels are the bars, top to bottom
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    widths = [int(blue[run].sum(axis=1).max()) for run in runs]
    assert len(widths) == 3
    assert widths[0] > widths[1] > widths[2]


def test_bar_chart_keeps_the_largest_bars_when_there_are_many():
    values = {f"pixel {i}": float(i) for i in range(200)}
    image = plots.bar_chart_image(values, "importance", "drop", max_bars=20)
    assert_rgb_image(image, max_side=1200)
    with pytest.raises(ValueError):
        plots.bar_chart_image({}, "importance", "drop")


def test_save_png_writes_the_same_pixels_and_creates_the_folder(tmp_path):
    image = plots.bar_chart_image({"a": 1.0, "b": 0.5}, "t", "x")
    path = plots.save_png(image, tmp_path / "figures" / "nested" / "bars.png")
    assert path.is_file()
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.size == (image.shape[1], image.shape[0])
        assert np.array_equal(np.asarray(saved.convert("RGB")), image)
    with pytest.raises(ValueError, match="uint8"):
        plots.save_png(image.astype(np.float32), tmp_path / "float.png")


def test_importing_plots_does_not_import_matplotlib():
    printed = run_python("import nntrain.plots, sys; print('matplotlib' in sys.modules)")
    assert printed == "False"


def test_rendering_never_touches_pyplot():
    # pyplot keeps every figure it creates alive until closed: not importing it at all is the
    # strongest guarantee that no figure leaks in a long training run.
    printed = run_python(
        "import sys, numpy as np\n"
        "from nntrain import plots\n"
        "plots.confusion_matrix_image(np.eye(3, dtype=int), ['a', 'b', 'c'])\n"
        "plots.decision_boundary_image(lambda g: (g[:, 0] > 0).astype(int),\n"
        "    np.array([[-1.0, 0.0], [1.0, 1.0]]), np.array([0, 1]), ['a', 'b'], resolution=20)\n"
        "plots.image_grid(np.zeros((2, 3, 4, 4)), ['a', 'b'], ['a', 'a'])\n"
        "plots.bar_chart_image({'a': 1.0}, 't', 'x')\n"
        "print('matplotlib' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    )
    assert printed == "True False"
