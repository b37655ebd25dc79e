import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nntrain.reporting import figures as plots

REPO = Path(__file__).resolve().parents[1]
TAB_BLUE, TAB_ORANGE, TAB_GREEN, TAB_RED = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
)
TAB20_LIGHT_BLUE = (174, 199, 232)  # tab20's second colour: class 1 beyond 10 classes
BLUES_DARKEST, BLUES_LIGHTEST = (8, 48, 107), (247, 251, 255)


def assert_rgb_image(image: np.ndarray, min_side: int = 150, max_side: int = 1600) -> None:
    assert isinstance(image, np.ndarray)
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert min_side <= image.shape[0] <= max_side and min_side <= image.shape[1] <= max_side
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) >= 10, "the image is (nearly) blank"


def near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> np.ndarray:
    """Mask of the pixels within tolerance of rgb (anti-aliased text rarely hits the colour)."""
    return np.abs(image.astype(int) - np.array(rgb)).max(axis=-1) <= tolerance


def count_near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    return int(near(image, rgb, tolerance).sum())


def luminance(rgb) -> float:
    r, g, b = (float(c) for c in rgb)
    return 0.299 * r + 0.587 * g + 0.114 * b


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# --- confusion matrix ------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [2, 10, 100])
def test_confusion_matrix_renders_for_few_and_many_classes(classes):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 20, (classes, classes))
    matrix[np.arange(classes), np.arange(classes)] += 200
    names = [f"class {i}" for i in range(classes)]
    image = plots.confusion_matrix_image(matrix, names)
    assert_rgb_image(image)
    assert image.shape[0] <= 1300 and image.shape[1] <= 1300  # grows with the classes, capped


def test_confusion_matrix_grows_with_the_number_of_classes():
    def side(n: int) -> tuple[int, int]:
        image = plots.confusion_matrix_image(np.eye(n, dtype=int), [str(i) for i in range(n)])
        return image.shape[:2]

    two, five, ten, thirty = side(2), side(5), side(10), side(30)
    assert two[0] < five[0] < ten[0] < thirty[0]
    assert two[1] < five[1] < ten[1] < thirty[1]


def cell_colours(image: np.ndarray, count: int) -> list[tuple[tuple[int, ...], float, float]]:
    """The count most frequent colours other than the white background (the cells' fills), each
    with the median (row, column) of its pixels: the cell's centre."""
    colours, inverse, counts = np.unique(
        image.reshape(-1, 3), axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(image.shape[:2])
    found = []
    for index in np.argsort(counts)[::-1]:
        colour = tuple(int(c) for c in colours[index])
        if colour == (255, 255, 255):
            continue
        rows, cols = np.nonzero(inverse == index)
        found.append((colour, float(np.median(rows)), float(np.median(cols))))
        if len(found) == count:
            return found
    raise AssertionError(f"fewer than {count} cell colours")


def test_confusion_matrix_cells_darken_with_the_count_rows_true_columns_predicted():
    matrix = np.array([[9, 3], [6, 0]])
    image = plots.confusion_matrix_image(matrix, ["cat", "dog"])
    cells = cell_colours(image, 4)
    by_darkness = sorted(cells, key=lambda cell: luminance(cell[0]))  # darkest (largest) first
    (_, y9, x9), (_, y6, x6), (_, y3, x3), (_, y0, x0) = by_darkness
    assert luminance(by_darkness[0][0]) < luminance(by_darkness[1][0]) - 20
    assert luminance(by_darkness[2][0]) < luminance(by_darkness[3][0]) - 20
    # 9 top left, 3 top right (row 0 = true class 0), 6 bottom left, 0 bottom right
    assert abs(y9 - y3) < 2 and abs(y6 - y0) < 2 and y9 < y6 - 30
    assert abs(x9 - x6) < 2 and abs(x3 - x0) < 2 and x9 < x3 - 30
    # the scale runs from matplotlib's "Blues" white (0) to its dark blue (the largest count)
    assert np.abs(np.array(by_darkness[0][0]) - BLUES_DARKEST).max() <= 2
    assert np.abs(np.array(by_darkness[3][0]) - BLUES_LIGHTEST).max() <= 2

    def centre(y: float, x: float) -> np.ndarray:
        return image[int(y) - 10 : int(y) + 10, int(x) - 10 : int(x) + 10]

    # the count is white on the dark cell and black on the light one (the windows lie inside
    # the cells: mostly the cell's own colour, the rest its text)
    dark, light = centre(y9, x9), centre(y0, x0)
    assert np.all(dark == by_darkness[0][0], axis=-1).mean() > 0.6
    assert np.all(light == by_darkness[3][0], axis=-1).mean() > 0.6
    assert (dark.min(axis=-1) > 200).sum() > 5 and (dark.max(axis=-1) < 60).sum() == 0
    assert (light.max(axis=-1) < 60).sum() > 5


def test_confusion_matrix_has_a_colour_bar_across_the_scale():
    image = plots.confusion_matrix_image(np.array([[5, 1], [2, 4]]), ["a", "b"])
    right = image[:, image.shape[1] * 3 // 4 :]
    columns = [
        near(right[:, c], BLUES_DARKEST, 4).any() and near(right[:, c], BLUES_LIGHTEST, 4).any()
        for c in range(right.shape[1])
    ]
    assert sum(columns) >= 10, "no column in the right quarter runs from dark to light blue"


def test_confusion_matrix_accepts_rates_and_rejects_a_wrong_shape():
    rates = np.array([[0.9, 0.1], [0.25, 0.75]])
    assert_rgb_image(plots.confusion_matrix_image(rates, ["outer", "inner"], title="recall"))
    # whole numbers in a float matrix are counts, drawn as the integer matrix is
    counts = np.array([[3, 1], [0, 2]])
    assert np.array_equal(
        plots.confusion_matrix_image(counts, ["a", "b"]),
        plots.confusion_matrix_image(counts.astype(np.float64), ["a", "b"]),
    )
    with pytest.raises(ValueError, match=r"matrix has shape \(3, 3\), expected \(2, 2\)"):
        plots.confusion_matrix_image(np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        plots.confusion_matrix_image(np.zeros((0, 0)), [])


def test_confusion_matrix_takes_long_class_names():
    names = ["a very long class name indeed", "another long class name", "cat"]
    image = plots.confusion_matrix_image(np.diag([5, 6, 7]), names, title="long names")
    assert_rgb_image(image, max_side=800)


# --- decision boundary -----------------------------------------------------------------------


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
        calls.append((grid.shape, grid.dtype, grid.min(axis=0), grid.max(axis=0)))
        return (grid[:, 0] > 0.5).astype(np.int64)

    image = plots.decision_boundary_image(
        predict, points, labels, ["outer", "inner"], ["f1", "f2"], resolution=50
    )
    assert_rgb_image(image)
    assert len(calls) == 1
    shape, dtype, low, high = calls[0]
    assert shape == (50 * 50, 2) and dtype == np.float32
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


def faded(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(round(0.35 * c + 0.65 * 255) for c in rgb)


def test_decision_boundary_colours_regions_faded_and_points_full():
    points, labels = moons()

    def render(predicted_class: int) -> np.ndarray:
        return plots.decision_boundary_image(
            lambda grid: np.full(len(grid), predicted_class), points, labels, ["outer", "inner"]
        )

    all_outer, all_inner = render(0), render(1)
    # the regions: the predicted class's colour, faded, and nothing of the other class's
    assert count_near(all_outer, faded(TAB_BLUE), 2) > 50_000
    assert count_near(all_outer, faded(TAB_ORANGE), 2) == 0
    assert count_near(all_inner, faded(TAB_ORANGE), 2) > 50_000
    assert count_near(all_inner, faded(TAB_BLUE), 2) == 0
    # the points (and the legend's markers) in both classes' full colours on either background
    for image in (all_outer, all_inner):
        assert count_near(image, TAB_BLUE, 10) > 200
        assert count_near(image, TAB_ORANGE, 10) > 200


def test_decision_boundary_handles_points_on_a_line_and_more_classes():
    points = np.stack([np.arange(30.0), np.zeros(30)], axis=1)  # no spread along y
    labels = np.arange(30) % 3
    image = plots.decision_boundary_image(
        lambda grid: (grid[:, 0] // 10).astype(int) % 3, points, labels, ["a", "b", "c"]
    )
    assert_rgb_image(image)
    # beyond 10 classes the palette is tab20: class 1 is its light blue
    twelve = [f"class {i}" for i in range(12)]
    labels = np.arange(30) % 12
    image = plots.decision_boundary_image(
        lambda grid: np.zeros(len(grid), int), points, labels, twelve
    )
    assert_rgb_image(image)
    assert count_near(image, TAB20_LIGHT_BLUE, 6) > 20
    with pytest.raises(ValueError, match="expected \\(N, 2\\) points and N labels"):
        plots.decision_boundary_image(lambda g: g[:, 0], np.zeros((5, 3)), np.zeros(5), ["a"])


# --- image grid ------------------------------------------------------------------------------


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


def test_image_grid_enlarges_small_images_without_smoothing():
    magenta = np.zeros((1, 3, 8, 8), dtype=np.float32)
    magenta[:, [0, 2]] = 1.0
    image = plots.image_grid(magenta, ["a"], ["a"])
    rows, cols = np.nonzero(np.all(image == (255, 0, 255), axis=-1))
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert height == width >= 64
    assert len(rows) == height * width  # a solid square: nearest neighbour, no blended edge


def test_image_grid_titles_are_green_when_right_and_red_when_wrong():
    grey = np.full((4, 3, 8, 8), 0.5, dtype=np.float32)  # no green or red in the images
    right = plots.image_grid(grey, ["cat"] * 4, ["cat"] * 4)
    wrong = plots.image_grid(grey, ["cat"] * 4, ["dog"] * 4)
    assert count_near(right, TAB_GREEN) > 20 and count_near(right, TAB_RED) == 0
    assert count_near(wrong, TAB_RED) > 20 and count_near(wrong, TAB_GREEN) == 0
    # one right, one wrong side by side: the green title is over the left image, the red right
    mixed = plots.image_grid(grey[:2], ["cat", "cat"], ["cat", "dog"], columns=2)
    middle = mixed.shape[1] // 2
    green, red = near(mixed, TAB_GREEN), near(mixed, TAB_RED)
    assert green[:, :middle].sum() > 20 and green[:, middle:].sum() == 0
    assert red[:, middle:].sum() > 20 and red[:, :middle].sum() == 0
    # the titles lie above the images
    grey_rows = np.nonzero(np.all(mixed == 128, axis=-1).sum(axis=1) > 60)[0]  # not text
    assert np.nonzero(green.any(axis=1))[0].max() < grey_rows.min()


def test_image_grid_shows_at_most_32_images():
    images = np.zeros((50, 1, 8, 8), dtype=np.uint8)
    names = ["a"] * 50
    assert (
        plots.image_grid(images, names, names).shape
        == plots.image_grid(images[:32], names[:32], names[:32]).shape
    )
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plots.image_grid(np.zeros((2, 2, 8, 8)), ["a"] * 2, ["a"] * 2)
    with pytest.raises(ValueError, match="need 2 true and predicted names, got 1, 2"):
        plots.image_grid(np.zeros((2, 1, 8, 8)), ["a"], ["a"] * 2)


def test_save_png_writes_the_same_pixels_and_creates_the_folder(tmp_path):
    image = plots.confusion_matrix_image(np.array([[3, 1], [0, 4]]), ["a", "b"])
    path = plots.save_png(image, tmp_path / "figures" / "nested" / "matrix.png")
    assert path == tmp_path / "figures" / "nested" / "matrix.png" and path.is_file()
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.size == (image.shape[1], image.shape[0])
        assert np.array_equal(np.asarray(saved.convert("RGB")), image)
    with pytest.raises(ValueError, match="uint8"):
        plots.save_png(image.astype(np.float32), tmp_path / "float.png")


def test_drawing_every_figure_never_imports_matplotlib():
    # The figures are drawn with Pillow: importing matplotlib alone cost more than half a second
    # at the end of every training run. Nothing may bring it back, not even indirectly.
    printed = run_python(
        "import sys, numpy as np\n"
        "from nntrain.reporting import figures as plots\n"
        "plots.confusion_matrix_image(np.eye(3, dtype=int), ['a', 'b', 'c'])\n"
        "plots.confusion_matrix_image(np.eye(40), [str(i) for i in range(40)])\n"
        "plots.decision_boundary_image(lambda g: (g[:, 0] > 0).astype(int),\n"
        "    np.array([[-1.0, 0.0], [1.0, 1.0]]), np.array([0, 1]), ['a', 'b'], resolution=20)\n"
        "plots.image_grid(np.zeros((2, 3, 4, 4)), ['a', 'b'], ['a', 'a'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    )
    assert printed == "[]"
