"""Hostile inputs to fine-tuning resnet18 on an image folder: weights files in the shapes users
really have, and image folders as users really keep them."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from nntrain.data.image_folder import ImageFolderData
from nntrain.errors import UserError
from nntrain.models.resnet import ResNet18
from tests.conftest import run_nntrain


@pytest.fixture
def resnet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    return torchvision.models.resnet18(weights=None, num_classes=5).state_dict()


def loaded_from(path: Path) -> ResNet18:
    return ResNet18((3, 64, 64), num_classes=3, weights_path=str(path))


def assert_backbone_is(model: ResNet18, state: dict[str, torch.Tensor]) -> None:
    loaded = model.backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda s: {f"module.{k}": v for k, v in s.items()}, id="DataParallel"),
        pytest.param(lambda s: {f"_orig_mod.{k}": v for k, v in s.items()}, id="torch.compile"),
        pytest.param(lambda s: {"state_dict": s, "epoch": 3}, id="state_dict-container"),
        pytest.param(
            lambda s: {"model": {f"module.{k}": v for k, v in s.items()}}, id="model-of-DDP"
        ),
    ],
)
def test_wrapped_resnet18_weights_load_into_the_backbone(tmp_path, resnet_state, wrap):
    torch.save(wrap(resnet_state), tmp_path / "w.pth")
    assert_backbone_is(loaded_from(tmp_path / "w.pth"), resnet_state)


def test_an_nntrain_checkpoint_gives_its_backbone_not_its_head(tmp_path, resnet_state):
    earlier = ResNet18((3, 64, 64), num_classes=4, weights_path=None)
    earlier.backbone.load_state_dict(
        {k: v for k, v in resnet_state.items() if not k.startswith("fc.")}, strict=False
    )
    torch.save({"format_version": 1, "model": earlier.state_dict(), "epoch": 2}, tmp_path / "b.pt")
    assert_backbone_is(loaded_from(tmp_path / "b.pt"), resnet_state)


def test_resnet50_weights_are_one_sentence_naming_a_wrong_shape(tmp_path):
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(UserError) as error:
        loaded_from(tmp_path / "r50.pth")
    assert str(error.value) == (
        f"the weights from {tmp_path / 'r50.pth'} do not fit torchvision's resnet18 (23 tensors "
        "of another shape, such as layer1.0.conv1.weight is [64, 64, 1, 1], not [64, 64, 3, 3]); "
        "pass a resnet18 state dict."
    )


def test_resnet34_weights_name_only_the_unexpected_keys(tmp_path):
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(UserError) as error:
        loaded_from(tmp_path / "r34.pth")
    assert str(error.value) == (
        f"the weights from {tmp_path / 'r34.pth'} do not fit torchvision's resnet18 (96 "
        "unexpected keys such as ['layer1.2.conv1.weight', 'layer1.2.bn1.weight']); "
        "pass a resnet18 state dict."
    )


def test_a_folder_as_weights_path_is_called_a_folder(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(UserError) as error:
        loaded_from(tmp_path / "weights")
    assert str(error.value) == (
        f"model.weights_path {tmp_path / 'weights'} is a folder, not a file; pass the file of a "
        "saved resnet18 state dict."
    )


def test_a_run_folder_as_weights_path_points_at_its_best_checkpoint(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(b"")
    with pytest.raises(UserError) as error:
        loaded_from(tmp_path / "run")
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    assert str(error.value) == (
        f"model.weights_path {tmp_path / 'run'} is a folder, not a file (for that run's weights: "
        f"model.weights_path={best}); pass the file of a saved resnet18 state dict."
    )


def write_pngs(folder: Path, count: int, size: tuple[int, int] = (16, 16), mode: str = "RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new(mode, size, 90 + 10 * i if mode == "L" else (90 + 10 * i, 40, 200)).save(
            folder / f"{i:02d}.png"
        )


def test_a_class_whose_only_image_the_split_takes_is_refused(tmp_path):
    write_pngs(tmp_path / "pets" / "train" / "cat", 8)
    write_pngs(tmp_path / "pets" / "train" / "emu", 1)  # the fixed test split draws it
    result = run_nntrain(
        "model=resnet18",
        "data=imagefolder",
        f"data.root={tmp_path / 'pets'}",
        "data.num_workers=0",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    train = tmp_path / "pets" / "train"
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: the class folder emu of {train} would have no training images: the validation "
        "and test images split off train/ took all of them; add images to it, or put val/ and "
        "test/ folders beside train/."
    )
    assert not (tmp_path / "run").exists()
    for split in ("val", "test"):  # with its own val/ and test/, emu trains
        write_pngs(tmp_path / "pets" / split / "cat", 1)
        write_pngs(tmp_path / "pets" / split / "emu", 1)
    data = ImageFolderData(root=str(tmp_path / "pets"), image_size=16, num_workers=0)
    assert [p.name for p, t in data.samples["train"] if t == 1] == ["00.png"]


def test_files_training_does_not_read_are_named_in_a_warning(tmp_path, caplog):
    train = tmp_path / "pets" / "train"
    for name in ("cat", "dog"):
        write_pngs(train / name, 4)
    write_pngs(train / "cat" / "2024" / "may", 1)  # nested: read
    Image.new("RGB", (16, 16)).save(train / "cat" / "party.gif")
    Image.new("RGB", (16, 16)).save(train / "stray.jpg")  # beside the class folders
    (train / "dog" / ".DS_Store").write_bytes(b"hidden: not mentioned")
    with caplog.at_level(logging.WARNING, logger="nntrain"):
        data = ImageFolderData(root=str(tmp_path / "pets"), image_size=16, num_workers=0)
    assert sum(len(samples) for samples in data.samples.values()) == 9
    assert caplog.messages == [
        f"{train}: 2 files not used, outside the class folders or not of a type nntrain reads "
        "(.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp): cat/party.gif, stray.jpg"
    ]


def test_pils_size_and_palette_warnings_do_not_reach_the_user(tmp_path, monkeypatch):
    train = tmp_path / "pets" / "train"
    write_pngs(train / "cat", 4, size=(16, 24))  # 384 pixels: over the limit, under twice it
    write_pngs(train / "dog", 4, size=(16, 24))
    palette = Image.new("RGB", (16, 16), (200, 30, 30)).convert("P")
    palette.save(train / "dog" / "p.png", transparency=bytes([0, 128] + [255] * 254))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = ImageFolderData(root=str(tmp_path / "pets"), image_size=16, num_workers=0)
        data.setup(torch.device("cpu"))
        batches = [len(y) for _, y in data.train_loader()]
    assert batches == [7] and [str(w.message) for w in caught] == []


def test_a_no_for_freeze_backbone_is_refused_not_read_as_true(tmp_path):
    key = "freeze_backbone"
    write_pngs(tmp_path / "pets" / "train" / "cat", 4)
    write_pngs(tmp_path / "pets" / "train" / "dog", 4)
    result = run_nntrain(
        "model=resnet18",
        "data=imagefolder",
        f"data.root={tmp_path / 'pets'}",
        f"model.{key}=no",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: model.{key} must be true or false, got 'no'; e.g. model.{key}=true."
    )
    assert not (tmp_path / "run").exists()


def test_a_string_for_pretrained_is_refused_before_any_download():
    with pytest.raises(UserError) as error:
        ResNet18((1, 8, 8), num_classes=3, pretrained="no")  # type: ignore[arg-type]
    assert str(error.value) == (
        "model.pretrained must be true or false, got 'no'; e.g. model.pretrained=true."
    )


@pytest.mark.parametrize(
    ("overrides", "imagenet"),
    [
        ((), False),
        (("model.pretrained=true",), True),
        (("model.weights_path=resnet18.pth",), True),  # torchvision's weights, from a file
        (("model.pretrained=no",), False),  # the model refuses it under its own name
        (("model.weights_path=resnet18.pth", "data.imagenet_normalization=false"), False),
    ],
)
def test_imagenet_normalization_follows_pretrained_weights_downloaded_or_from_a_file(
    overrides, imagenet
):
    import nntrain.commands.train  # noqa: F401  (registers the config's resolvers)
    from tests.conftest import compose_config

    for data in ("data=imagefolder", "data=cifar10"):
        cfg = compose_config("model=resnet18", data, "data.root=photos", *overrides)
        assert cfg.data.imagenet_normalization is imagenet, data


def test_a_frozen_backbone_that_learns_nothing_useful_is_said(tmp_path):
    """No pretrained weights under a frozen backbone, or an unfreeze after the last epoch."""
    for name, color in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (tmp_path / "photos" / "train" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), color).save(
                tmp_path / "photos" / "train" / name / f"{i}.png"
            )
    done = run_nntrain(
        "model=resnet18", "data=imagefolder", "data.root=photos", "data.image_size=16",
        "model.freeze_backbone=true", "model.unfreeze_at_epoch=3", "trainer=debug",
        "trainer.max_epochs=1", "data.num_workers=0", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert (
        "model.freeze_backbone=true without pretrained weights (model.pretrained=true or "
        "model.weights_path): only the head trains, on a randomly initialised backbone" in output
    )
    assert (
        "model.unfreeze_at_epoch=3 comes after the last epoch (trainer.max_epochs=1): the "
        "backbone stays frozen for the whole run" in output
    )
