"""data=imagefolder on tiny PNG folders made here: layout, splits, batches, order, errors, a run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nntrain.commands import train as cli
from nntrain.data.image_folder import ImageFolderData, list_images, load_rgb
from nntrain.data.settings import ImageFolderSettings
from nntrain.errors import UserError
from nntrain.schema import checked
from tests.conftest import compose_config

COLOURS = {"cat": (220, 40, 40), "dog": (40, 200, 60), "emu": (30, 60, 210)}
CPU = torch.device("cpu")


def make_split(folder: Path, per_class: int = 8, colours: dict | None = None) -> None:
    """per_class 20x24 images per class, one colour per class (slightly varied): two grayscale
    PNGs, one JPEG (when per_class > 3), RGB PNGs; a text file and a hidden ._ file sit beside
    them (both must be ignored)."""
    for name, colour in (colours or COLOURS).items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            if i < 2:
                image = Image.new("L", (20, 24), sum(colour) // 3 + 5 * i)
            else:
                image = Image.new("RGB", (20, 24), tuple(c + 3 * i for c in colour))
            suffix = ".jpg" if i == 3 else ".png"
            image.save(folder / name / f"{i:02d}{suffix}")
        (folder / name / "notes.txt").write_text("not an image")
        (folder / name / "._00.png").write_bytes(b"macOS metadata")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_split(tmp_path / "flowers" / "train")
    return tmp_path / "flowers"


def folder_data(root: Path, **kwargs) -> ImageFolderData:
    options = {"image_size": 16, "batch_size": 4, "num_workers": 0, "seed": 1, **kwargs}
    data = ImageFolderData(root=str(root), **options)
    data.setup(CPU)
    return data


def files(data: ImageFolderData, split: str) -> list[Path]:
    return [path for path, _ in data.samples[split]]


def test_classes_shape_and_splits_of_train_only(root):
    data = folder_data(root)
    assert data.name == "imagefolder"
    assert data.class_names == ["cat", "dog", "emu"] and data.num_classes == 3
    assert data.input_shape == (3, 16, 16)
    # 24 images: round(2.4) = 2 for test, 2 for val, the rest for training
    assert data.split_sizes() == {"train": 20, "val": 2, "test": 2}
    every = files(data, "train") + files(data, "val") + files(data, "test")
    assert sorted(every) == sorted((root / "train").glob("*/[0-9]*"))
    other_seed = folder_data(root, seed=2)
    assert files(other_seed, "test") == files(data, "test")
    assert files(other_seed, "val") != files(data, "val")


def test_existing_val_and_test_folders_are_used_as_they_are(root):
    make_split(root / "val", per_class=2)
    make_split(root / "test", per_class=3)
    data = folder_data(root)
    assert data.split_sizes() == {"train": 24, "val": 6, "test": 9}
    assert all(root / "val" in path.parents for path in files(data, "val"))
    assert all(root / "test" in path.parents for path in files(data, "test"))
    # only val/ present: the test split still comes from train/, fixed
    (root / "test").rename(root / "old-test")
    data = folder_data(root)
    assert data.split_sizes() == {"train": 22, "val": 6, "test": 2}
    assert files(data, "test") == files(folder_data(root, seed=7), "test")


def test_batches_are_normalised_float_images_with_int64_targets(root):
    data = folder_data(root, batch_size=8)
    train = data.train_loader()
    assert len(train) == 2  # 20 samples: the partial batch of 4 is dropped
    batches = list(train)
    assert len(batches) == 2
    x, y = batches[0]
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    # evaluation keeps every sample, in file order
    val = data.val_loader()
    assert len(val) == 1
    assert torch.cat([y for _, y in val]).tolist() == [t for _, t in data.samples["val"]]
    # without ImageNet statistics, the training images are standardised by their own
    whole = torch.stack([data.eval_transform(load_rgb(path)) for path in files(data, "train")])
    assert torch.allclose(whole.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(whole.std((0, 2, 3)), torch.ones(3), atol=1e-2)
    # a training set smaller than one batch is one partial batch, not nothing
    assert [len(y) for _, y in folder_data(root, batch_size=32).train_loader()] == [20]


def test_imagenet_normalization_of_white_images(root):
    make_split(root / "val", per_class=2, colours=dict.fromkeys(COLOURS, (255, 255, 255)))
    for path in (root / "val").glob("*/0[01].png"):  # the grayscale ones: white as well
        Image.new("L", (20, 24), 255).save(path)
    data = folder_data(root, imagenet_normalization=True)
    assert data.mean == (0.485, 0.456, 0.406) and data.std == (0.229, 0.224, 0.225)
    x, _ = next(iter(data.val_loader()))
    expected = torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    assert torch.allclose(x.mean((0, 2, 3)), expected, atol=1e-5)


def epoch_inputs(data: ImageFolderData, epoch: int, start_batch: int = 0) -> torch.Tensor:
    loader = data.train_loader()
    loader.set_epoch(epoch, start_batch=start_batch)
    return torch.cat([x for x, _ in loader])


def test_training_order_and_crops_follow_seed_and_epoch_only(root):
    data = folder_data(root)
    torch.manual_seed(0)
    first = epoch_inputs(data, 3)
    # loading leaves the global generator (dropout, ...) where it was
    after_loading = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_loading, torch.rand(3))
    assert torch.equal(epoch_inputs(data, 3), first)
    assert not torch.equal(epoch_inputs(data, 4), first)
    assert not torch.equal(epoch_inputs(folder_data(root, seed=2), 3), first)
    # the same batches with two worker processes
    assert torch.equal(epoch_inputs(folder_data(root, num_workers=2), 3), first)
    # a run resumed after batch 1 of the epoch gets exactly the remaining batches
    batch = data.batch_size
    assert torch.equal(epoch_inputs(data, 3, start_batch=1), first[batch:])


def error_of(root: Path, **kwargs) -> str:
    with pytest.raises(UserError) as caught:
        folder_data(root, **kwargs)
    return str(caught.value)


def test_missing_root_no_train_folder_and_no_classes(tmp_path):
    missing = tmp_path / "nope"
    assert error_of(missing) == (
        f"data.root {missing} does not exist; set data.root to a folder laid out as "
        "train/<class>/<image> (val/ and test/ optional, with the same class folders), "
        "e.g. data.root=$HOME/flowers."
    )
    missing.mkdir()
    assert error_of(missing) == (
        f"{missing} has no train/ folder; put the training images in {missing}/train/<class>/, "
        "one sub-folder per class."
    )
    make_split(tmp_path / "flowers" / "train", per_class=1)
    assert error_of(root := tmp_path / "flowers" / "train") == (  # a common slip
        f"data.root {root} is a train/ folder; set data.root to the folder that holds it, "
        f"data.root={tmp_path}/flowers."
    )
    (missing / "train" / ".ipynb_checkpoints").mkdir(parents=True)
    assert error_of(missing) == (
        f"{missing}/train has no class folders; put each class's images in a sub-folder named "
        f"after the class, e.g. {missing}/train/cats/001.jpg."
    )


def test_empty_class_folder_and_bad_settings(root):
    (root / "train" / "fox").mkdir()
    (root / "train" / "fox" / "readme.txt").write_text("todo")
    assert error_of(root) == (
        f"class folder {root}/train/fox has no images (.jpg .jpeg .png .ppm .bmp .pgm .tif "
        ".tiff .webp); add images to it or remove it."
    )
    with pytest.raises(UserError) as caught:
        checked(ImageFolderSettings, {"root": str(root), "num_workers": -1})
    assert str(caught.value) == (
        "data.num_workers must be auto or an integer >= 0, got -1; for example data.num_workers=4."
    )


def test_a_corrupt_file_stops_construction(root):
    bad = root / "train" / "dog" / "bad.png"
    bad.write_bytes(random.Random(0).randbytes(300))
    assert error_of(root) == f"cannot read the image file {bad}; replace or delete it."


@pytest.mark.parametrize("usable_cpus,workers", [(1, 1), (2, 2), (16, 4)])
def test_auto_workers_are_four_or_one_per_usable_cpu(root, monkeypatch, usable_cpus, workers):
    # More decoding processes than usable cores only compete for them (and torch warns).
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(usable_cpus)))
    assert folder_data(root, num_workers="auto").num_workers == workers


@pytest.mark.parametrize("workers", [0, 2])
def test_a_truncated_file_stops_with_one_sentence(root, workers):
    truncated = root / "train" / "cat" / "02.png"
    truncated.write_bytes(truncated.read_bytes()[:60])  # the header is intact
    message = f"cannot read the image file {truncated}; replace or delete it."
    # measuring the normalisation statistics decodes it already
    assert error_of(root, num_workers=workers) == message
    # with ImageNet statistics, the first training epoch meets it
    data = folder_data(root, num_workers=workers, batch_size=32, imagenet_normalization=True)
    with pytest.raises(UserError) as caught:
        list(data.train_loader())
    assert str(caught.value) == message


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_16_bit_and_float_images_stop_the_run_before_training(root, mode):
    # PIL's convert("RGB") clips them to white: the model would train on blank images.
    deep = root / "train" / "dog" / ("deep.png" if mode == "I;16" else "deep.tif")
    pixels = np.full((24, 20), 40_000, dtype=np.uint16 if mode == "I;16" else np.float32)
    Image.fromarray(pixels).save(deep)
    assert error_of(root) == (
        f"cannot use the image {deep}: its mode {mode!r} does not convert faithfully to 8-bit "
        "grayscale or RGB; save it as an 8-bit image (one of the modes 1, L, LA, P, RGB, "
        "RGBA, CMYK, YCbCr)."
    )


def test_an_image_over_pils_pixel_limit_is_named_in_one_sentence(root, monkeypatch):
    # 20 x 24 = 480 pixels; PIL refuses an image over twice MAX_IMAGE_PIXELS.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    first = root / "train" / "cat" / "00.png"
    assert error_of(root) == (
        f"the image {first} has more than the 400 pixels PIL opens (its guard against "
        "decompression bombs); downscale it or delete it."
    )
    with pytest.raises(UserError, match=r"^the image .*00\.png has more than the 400 pixels"):
        load_rgb(first)


def test_linked_folders_are_followed_and_a_link_loop_lists_each_image_once(root, tmp_path):
    cat = root / "train" / "cat"
    before = list_images(cat)
    assert len(before) == 8
    (cat / "again").symlink_to(cat)  # a loop: cat/again/again/... is cat
    make_split(tmp_path / "more", per_class=2, colours={"cats": (200, 40, 40)})
    (cat / "more").symlink_to(tmp_path / "more" / "cats")  # a real folder elsewhere: followed
    assert list_images(cat) == sorted([*before, cat / "more" / "00.png", cat / "more" / "01.png"])


def test_an_empty_class_folder_of_test_gets_advice_that_leads_to_a_run(root):
    # "remove it" would only make test/ lack a class of train/.
    make_split(root / "test", per_class=1, colours={"cat": (1, 2, 3), "dog": (4, 5, 6)})
    (root / "test" / "emu").mkdir()
    assert error_of(root) == (
        f"class folder {root}/test/emu has no images (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff "
        f".webp); add images to it, or remove {root}/test to split test images off train/."
    )


def test_val_classes_must_match_train(root):
    make_split(
        root / "val", per_class=1, colours={"cat": (1, 2, 3), "dog": (4, 5, 6), "fox": (7, 8, 9)}
    )
    assert error_of(root) == (
        f"{root}/val must have the same class folders as {root}/train, but it lacks emu and "
        f"has fox, which {root}/train does not; add, rename or remove class folders so that "
        "they match."
    )


def test_nntrain_trains_on_an_image_folder(root, tmp_path):
    cfg = compose_config(
        "data=imagefolder",
        f"data.root={root}",
        "data.image_size=16",
        "data.num_workers=0",
        "data.batch_size=4",
        "trainer=debug",
    )
    assert cfg.data.imagenet_normalization is False  # the MLP has no pretrained weights
    result = cli.run(cfg, str(tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert isinstance(metrics["test/acc"], float) and 0 <= metrics["test/acc"] <= 1
    assert metrics == pytest.approx(result)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_ranks_take_disjoint_shards_of_the_folder(root):
    from nntrain.data.image_folder import EpochSampler

    data = folder_data(root)
    n = data.split_sizes()["train"]
    picked = [[i for i, _ in EpochSampler(n, seed=1, epoch=2, rank=r, world=2)] for r in range(2)]
    assert len(picked[0]) == len(picked[1]) == n // 2
    assert not set(picked[0]) & set(picked[1])
    loaders = [data.train_loader() for _ in range(2)]
    for rank, loader in enumerate(loaders):
        loader.shard(rank, 2)
    assert len(loaders[0]) == len(loaders[1]) == (n // 2) // data.batch_size
