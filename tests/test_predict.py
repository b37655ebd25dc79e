"""nntrain-predict as a user runs it (a subprocess in a fresh directory), on checkpoints of
tiny real runs trained here: digits (1-channel images), subscription (tabular), an image folder
(RGB, resize + centre crop)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nntrain.commands import train as cli
from nntrain.data.image_folder import load_rgb
from nntrain.data.new_inputs import load_image
from nntrain.inference.trained_run import build_model, load_run
from nntrain.instantiate import build
from tests.conftest import compose_config
from tests.test_folder import make_split

HEADER = ["input", "predicted", "probability", "top_k"]
EXTENSIONS = ".jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp"
SUBSCRIPTION_COLUMNS = "age, income, browsing_time, previous_purchases"


def run_predict(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("nntrain-predict")), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    """predictions.csv: HEADER, and a reason column when some rows could not be scored."""
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames in (HEADER, [*HEADER, "reason"])
        return list(reader)


def top_k(row: dict[str, str]) -> list[tuple[str, float]]:
    """The top_k column, name:p;name:p;... as pairs."""
    return [(name, float(p)) for name, p in (pair.split(":") for pair in row["top_k"].split(";"))]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A trainer=debug run of the MLP on digits, and the digits data set of that run."""
    cfg = compose_config("trainer=debug")
    run_dir = tmp_path_factory.mktemp("digits") / "run"
    cli.run(cfg, str(run_dir))
    return run_dir, build(cfg.data, "data")


@pytest.fixture(scope="module")
def subscription(tmp_path_factory) -> Path:
    cfg = compose_config(
        "trainer=debug",
        "data=subscription",
        "trainer.max_epochs=30",
        "trainer.limit_train_batches=1.0",
        "trainer.early_stopping.patience=null",
    )
    run_dir = tmp_path_factory.mktemp("subscription") / "run"
    cli.run(cfg, str(run_dir))
    return run_dir


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    """A small CNN trained on an image folder (train/<class>/), and its data set."""
    root = tmp_path_factory.mktemp("flowers")
    make_split(root / "train", per_class=6)
    cfg = compose_config(
        "trainer=debug",
        "data=imagefolder",
        f"data.root={root}",
        "data.num_workers=0",
        "data.image_size=16",
        "data.batch_size=4",
        "model=cnn",
        "model.channels=[8,8]",
    )
    run_dir = root / "run"
    cli.run(cfg, str(run_dir))
    data = build(cfg.data, "data")
    return run_dir, data


def test_digit_images_get_exactly_the_predictions_of_the_trained_model(digits, tmp_path):
    run_dir, data = digits
    stored = data.splits["test"].inputs  # uint8 1x8x8, scikit-learn's grey levels 0..16
    pixels = (stored.float() * 255 / 16).round().to(torch.uint8)  # as an 8-bit PNG holds them
    folder = tmp_path / "new digits"
    names = []
    for i, image in enumerate(pixels):
        names.append(f"part{i % 2}/{i:03d}.png")  # nested folders are read too
        (folder / names[-1]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / names[-1])
    (folder / "readme.txt").write_text("not an image")

    done = run_predict(f"ckpt={run_dir}", f"inputs={folder}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path)) == ["new digits", "predictions.csv"]  # no outputs/
    rows = read_csv(tmp_path / "predictions.csv")
    assert [row["input"] for row in rows] == sorted(names)
    order = [int(row["input"][-7:-4]) for row in rows]

    # In-process: the model on the PNGs' pixels through the data set's own normalisation, in
    # the command's batches of 64, so that every float is the same and the CSV matches exactly.
    model = build_model(load_run(run_dir))
    from_png = pixels[order].float() * (16 / 255)  # back to the data set's units, 0..16
    with torch.no_grad():
        probs = torch.cat([model(data.transform(x)).softmax(1) for x in from_png.split(64)])
        on_data = model(data.transform(stored[order])).softmax(1)
    for row, p in zip(rows, probs, strict=True):
        values, indices = p.topk(3)
        top = [f"{i}:{v:.4f}" for i, v in zip(indices.tolist(), values.tolist(), strict=True)]
        expected = [str(indices[0].item()), f"{values[0]:.4f}", ";".join(top)]
        assert [row["predicted"], row["probability"], row["top_k"]] == expected
    # On the data set's stored tensors (grey levels the PNGs round to 1/255): the same outputs
    # within 1e-3, so the same class wherever the top two are further apart than that.
    probability = torch.tensor([float(row["probability"]) for row in rows])
    assert torch.allclose(probability, on_data.max(1).values, atol=1e-3)
    top2 = on_data.topk(2).values
    clear = top2[:, 0] - top2[:, 1] > 2e-3
    assert clear.float().mean() > 0.9
    predicted = torch.tensor([int(row["predicted"]) for row in rows])
    assert torch.equal(predicted[clear], on_data.argmax(1)[clear])

    # the terminal names the checkpoint, shows the first 20 rows, the total and the CSV
    assert re.search(
        r"^nntrain-predict with \S+/checkpoints/best\.pt \(epoch \d+\)$", done.stdout, re.M
    )
    assert f"the first 20 of {len(rows)} rows" in done.stdout
    assert rows[19]["input"] in done.stdout and rows[20]["input"] not in done.stdout
    assert done.stdout.rstrip().endswith(f"{len(rows)} predicted; wrote predictions.csv")


def test_one_image_with_top_k_above_the_classes_lists_every_class(digits, tmp_path):
    run_dir, data = digits
    image = (data.splits["test"].inputs[0, 0].float() * 255 / 16).round().to(torch.uint8)
    Image.fromarray(image.numpy(), mode="L").convert("RGB").save(tmp_path / "digit.jpg")
    done = run_predict(
        f"ckpt={run_dir}/checkpoints/best.pt",
        "inputs=digit.jpg",
        "top_k=20",
        "output=results/scored.csv",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (row,) = read_csv(tmp_path / "results" / "scored.csv")
    assert row["input"] == "digit.jpg"
    pairs = top_k(row)
    assert sorted(name for name, _ in pairs) == [str(d) for d in range(10)]  # capped at 10
    assert [p for _, p in pairs] == sorted((p for _, p in pairs), reverse=True)
    assert pairs[0] == (row["predicted"], float(row["probability"]))
    assert sum(p for _, p in pairs) == pytest.approx(1, abs=1e-3)
    assert "1 predicted; wrote results/scored.csv" in done.stdout


NOT_SUBSCRIBING = [("age", 58, 68), ("income", 22_000, 38_000), ("browsing_time", 1, 6)]


def customers(n: int = 50) -> list[dict[str, float]]:
    """Clear-cut customers: half meet the rule with a margin, half break one of its conditions
    by a wide margin."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        row = {
            "customer_id": 1000 + i,
            "previous_purchases": int(rng.poisson(3)),
            "browsing_time": rng.uniform(15, 28),
            "income": rng.uniform(65_000, 115_000),
            "age": rng.uniform(20, 42),
        }
        if i % 2:  # break one condition
            key, low, high = NOT_SUBSCRIBING[i % 3]
            row[key] = rng.uniform(low, high)
        rows.append(row)
    return rows


def subscribes(row: dict[str, float]) -> str:
    """The rule the subscription data set is labelled with."""
    yes = row["income"] > 50_000 and row["browsing_time"] > 10 and row["age"] < 50
    return "yes" if yes else "no"


def test_a_csv_with_its_columns_in_any_order_gets_the_rule_right(subscription, tmp_path):
    rows = customers()
    with (tmp_path / "customers.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))  # other order, an extra column
        writer.writeheader()
        writer.writerows(rows)
    done = run_predict(f"ckpt={subscription}", "inputs=customers.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    predictions = read_csv(tmp_path / "predictions.csv")
    # The file's identifier column names the rows (as for a data=csv model).
    assert [row["input"] for row in predictions] == [str(1000 + i) for i in range(50)]
    for row in predictions:
        pairs = top_k(row)  # top_k=3 is capped at the 2 classes
        assert [name for name, _ in pairs] in (["yes", "no"], ["no", "yes"])
        assert pairs[0] == (row["predicted"], float(row["probability"]))
        assert sum(p for _, p in pairs) <= 1 + 1e-4
    right = sum(p["predicted"] == subscribes(row) for p, row in zip(predictions, rows, strict=True))
    assert right / len(rows) >= 0.9


def test_image_folder_predictions_preprocess_like_evaluation(flowers, tmp_path):
    run_dir, data = flowers
    make_split(tmp_path / "new", per_class=6)
    files = sorted(p for p in (tmp_path / "new").rglob("[0-9]*.*") if p.suffix != ".txt")
    run = load_run(run_dir)
    expected = torch.stack([data.eval_transform(load_rgb(path)) for path in files])
    for path, image in zip(files, expected, strict=True):
        assert torch.allclose(load_image(path, run.inputs), image, atol=1e-5)
    with torch.no_grad():
        probs = build_model(run)(expected).softmax(1)

    done = run_predict(f"ckpt={run_dir}", "inputs=new", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = read_csv(tmp_path / "predictions.csv")
    relative = [path.relative_to(tmp_path / "new").as_posix() for path in files]
    assert [row["input"] for row in rows] == relative
    assert [row["predicted"] for row in rows] == [data.class_names[i] for i in probs.argmax(1)]
    assert [float(row["probability"]) for row in rows] == pytest.approx(
        probs.max(1).values.tolist(), abs=6e-5
    )
    assert all(len(top_k(row)) == 3 for row in rows)

    done = run_predict(f"ckpt={run_dir}", "inputs=new/dog/03.jpg", "top_k=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = read_csv(tmp_path / "predictions.csv")
    jpeg = files.index(tmp_path / "new" / "dog" / "03.jpg")
    best = rows[jpeg]["top_k"].split(";")[0]
    assert row == {**rows[jpeg], "input": "new/dog/03.jpg", "top_k": best}


def bad_input(case: str, folder: Path, digits: Path, subscription: Path) -> tuple[list[str], str]:
    """The command line of a mistake (made in folder) and the sentence it must get."""
    image_model, tabular_model = f"ckpt={digits}", f"ckpt={subscription}"
    if case == "no ckpt":
        return ["inputs=photos"], (
            "ckpt has no value; set it on the command line, e.g. nntrain-predict "
            "ckpt=outputs/2026-11-25/10-00-00-resnet18-imagefolder inputs=~/photos."
        )
    if case == "misspelt key":
        return [image_model, "inputs=x.png", "topk=2"], (
            "topk is not a setting of nntrain-predict; did you mean top_k?"
        )
    if case == "top_k=0":
        return [image_model, "inputs=x.png", "top_k=0"], (
            "top_k must be a positive integer, got 0; for example top_k=3."
        )
    if case == "missing inputs":
        return [image_model, "inputs=photos"], (
            "inputs photos does not exist; give an image file or a folder of images."
        )
    if case == "no images":
        (folder / "photos" / ".cache").mkdir(parents=True)
        (folder / "photos" / "notes.txt").write_text("text")
        Image.new("L", (8, 8)).save(folder / "photos" / ".cache" / "hidden.png")
        return [image_model, "inputs=photos"], (
            f"photos has no images ({EXTENSIONS}); put the images to predict in it, or give an "
            "image file."
        )
    if case == "corrupt image":
        (folder / "photos").mkdir()
        Image.new("L", (8, 8)).save(folder / "photos" / "a.png")
        (folder / "photos" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
        return [image_model, "inputs=photos"], (
            "cannot read the image file photos/b.png; replace or delete it."
        )
    if case == "16-bit image":
        Image.fromarray(np.full((8, 8), 40_000, dtype=np.uint16)).save(folder / "deep.png")
        return [image_model, "inputs=deep.png"], (
            "cannot use the image deep.png: its mode 'I;16' does not convert faithfully to 8-bit "
            "grayscale or RGB; save it as an 8-bit image (one of the modes 1, L, LA, P, RGB, "
            "RGBA, CMYK, YCbCr)."
        )
    if case == "image to a tabular model":
        Image.new("RGB", (8, 8)).save(folder / "photo.png")
        return [tabular_model, "inputs=photo.png"], (
            "the model takes tabular features, so inputs must be a CSV file with the columns "
            f"{SUBSCRIPTION_COLUMNS}; photo.png is an image."
        )
    if case == "csv to an image model":
        (folder / "table.csv").write_text("a,b\n1,2\n")
        return [image_model, "inputs=table.csv"], (
            "the model takes 1-channel images, so inputs must be an image file or a folder of "
            "images; table.csv is a CSV file."
        )
    if case == "missing columns":
        (folder / "table.csv").write_text("age,income,visits\n30,60000,2\n")
        return [tabular_model, "inputs=table.csv"], (
            "table.csv lacks the column(s) browsing_time, previous_purchases; the model expects "
            f"the columns {SUBSCRIPTION_COLUMNS} (in any order; other columns are ignored)."
        )
    assert case == "repeated column"
    (folder / "table.csv").write_text(
        "income,age,browsing_time,previous_purchases,age\n60000,30,12,1,31\n"
    )
    return [tabular_model, "inputs=table.csv"], (
        "table.csv: the header names the column(s) age more than once; give each column its "
        "own name."
    )


@pytest.mark.parametrize(
    "case",
    [
        "no ckpt",
        "misspelt key",
        "top_k=0",
        "missing inputs",
        "no images",
        "corrupt image",
        "16-bit image",
        "image to a tabular model",
        "csv to an image model",
        "missing columns",
        "repeated column",
    ],
)
def test_a_bad_input_is_one_sentence_exit_1_and_no_csv(case, digits, subscription, tmp_path):
    args, message = bad_input(case, tmp_path, digits[0], subscription)
    before = sorted(tmp_path.rglob("*"))
    done = run_predict(*args, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: {message}"
    assert "Traceback" not in done.stdout + done.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no CSV, no temporary file, no outputs/


def test_tilde_in_inputs_and_ckpt_means_the_home_directory(digits, tmp_path):
    run_dir, _ = digits
    done = run_predict(
        f"ckpt={run_dir}", "inputs=~/photos", cwd=tmp_path, env={"HOME": str(tmp_path)}
    )
    assert done.stderr.strip() == (
        f"Error: inputs {tmp_path}/photos does not exist; give an image file or a folder of images."
    )
    done = run_predict("ckpt=~/run", "inputs=x.png", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert done.stderr.strip() == (
        f"Error: checkpoint {tmp_path}/run does not exist; pass the path of a .pt file in a "
        "run's checkpoints/ folder."
    )


def test_output_that_is_an_image_of_the_inputs_folder_is_refused(tmp_path):
    from omegaconf import OmegaConf

    from nntrain.commands.predict import predict
    from nntrain.errors import UserError

    make_split(tmp_path / "photos", per_class=2, colours={"cat": (200, 40, 40)})
    photo = tmp_path / "photos" / "cat" / "00.png"
    before = photo.read_bytes()
    cfg = OmegaConf.create(
        {"ckpt": str(tmp_path / "run"), "inputs": str(tmp_path / "photos"), "output": str(photo)}
        | {"top_k": 3, "batch_size": None, "device": "cpu"}
    )
    with pytest.raises(UserError) as caught:
        predict(cfg)
    assert str(caught.value) == (
        f"output {photo} is one of the images in {tmp_path / 'photos'}; give another file "
        "name, e.g. output=predictions.csv."
    )
    assert photo.read_bytes() == before


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_a_semicolon_or_tab_csv_reads_as_the_comma_one_for_a_tabular_model(separator, tmp_path):
    # data=csv reads these (README: "Your own data"); a built-in tabular model's predict did not
    # and said the file lacked the very columns its header names.
    from nntrain.data.csv_table import prepare_new_rows

    def read_table(path: Path, spec: dict) -> torch.Tensor:
        return prepare_new_rows(str(path), spec).inputs

    spec = {"kind": "tabular", "feature_names": ["age", "income"]} | {
        "mean": [40.0, 5e4],
        "std": [10.0, 2e4],
    }
    (tmp_path / "comma.csv").write_text("income,age,note\n60000.5,30,a\n41000,52,b\n")
    number = "60000.5" if separator == "\t" else "60000,5"  # decimal commas with ; and |
    rows = ["income", "age", "note"], [number, "30", "a"], ["41000", "52", "b"]
    (tmp_path / "other.csv").write_text("".join(separator.join(row) + "\n" for row in rows))
    expected = read_table(tmp_path / "comma.csv", spec)
    assert torch.equal(read_table(tmp_path / "other.csv", spec), expected)
    assert expected[0].tolist() == pytest.approx([-1.0, 0.500025])


def test_photos_are_read_upright_as_their_exif_orientation_says(tmp_path):
    """A phone stores a portrait photo as landscape pixels plus EXIF orientation 6 (turn 90
    degrees clockwise); training and nntrain-predict both see the picture a viewer shows."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high; left half red
    pixels[:, :20, 0] = 255
    stored = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to view
    stored.save(tmp_path / "portrait.jpg", exif=exif.tobytes(), quality=95)
    stored.save(tmp_path / "plain.jpg", quality=95)
    upright = load_rgb(tmp_path / "portrait.jpg")
    assert upright.size == (20, 40)  # now 20 wide, 40 high: the red half on top
    top, bottom = np.asarray(upright)[:20], np.asarray(upright)[20:]
    assert top[..., 0].mean() > 200 and bottom[..., 0].mean() < 50
    assert load_rgb(tmp_path / "plain.jpg").size == (40, 20)  # no tag: as stored
    spec = {"channels": 3, "size": [40, 20], "pixel_max": 255, "mean": [0.0] * 3, "std": [1.0] * 3}
    x = load_image(tmp_path / "portrait.jpg", spec)
    assert x.shape == (3, 40, 20)
    assert torch.equal(x.to(torch.uint8), torch.from_numpy(np.array(upright)).permute(2, 0, 1))


def test_pils_large_image_warning_does_not_reach_the_user(tmp_path, monkeypatch):
    """An image between PIL's pixel limit and twice that is predicted; PIL's warning, raised
    while the file opens, is not printed with its source line."""
    import warnings

    from PIL import Image

    from nntrain.data.new_inputs import load_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("L", (12, 12), 128).save(tmp_path / "large.png")  # 144 pixels: warned, not refused
    spec = {"channels": 1, "size": [8, 8], "pixel_max": 1.0, "mean": [0.5], "std": [0.25]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = load_image(tmp_path / "large.png", spec)
    assert [str(w.message) for w in caught] == []
    assert x.shape == (1, 8, 8)
    assert torch.allclose(x, torch.full_like(x, (128 / 255 - 0.5) / 0.25), atol=0.02)
