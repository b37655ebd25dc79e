"""torchvision data sets through the real loading code, on fake files in the real formats."""

import os

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar

from nntrain.commands.train import run
from nntrain.data import torchvision_sets as vision
from nntrain.data.augment import CropFlip, random_crop, random_flip
from nntrain.data.in_memory import TensorLoader
from nntrain.data.torchvision_sets import TorchvisionData
from nntrain.errors import UserError
from tests.conftest import compose_config
from tests.fake_data import write_cifar, write_mnist


@pytest.fixture
def skip_cifar_md5(monkeypatch):
    """Fake CIFAR files cannot match torchvision's md5 sums: replace only that check by an
    existence check (the unpickling and decoding code stays torchvision's)."""
    monkeypatch.setattr(
        torchvision.datasets.cifar,
        "check_integrity",
        lambda path, md5=None: os.path.isfile(path),
    )


@pytest.mark.parametrize("dataset,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_loads_idx_files_into_uint8_tensors(dataset, folder, tmp_path):
    written = write_mnist(tmp_path, folder=folder, n_train=60, n_test=20)
    data = TorchvisionData(
        dataset, root=str(tmp_path), download=False, batch_size=16, val_fraction=0.25
    )
    assert data.split_sizes() == {"train": 45, "val": 15, "test": 20}
    test = data.splits["test"]
    # the official test split, in file order, exactly as written
    assert test.inputs.dtype == torch.uint8 and test.inputs.shape == (20, 1, 28, 28)
    assert torch.equal(test.inputs[:, 0], torch.from_numpy(written["t10k"][0]))
    assert torch.equal(test.targets, torch.from_numpy(written["t10k"][1]).long())
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert data.augment is None  # no augmentation by default for digits and clothes
    x, y = next(iter(data.val_loader()))
    assert x.dtype == torch.float32 and x.shape == (15, 1, 28, 28) and y.dtype == torch.long
    mean, std = vision.SPECS[dataset].mean[0], vision.SPECS[dataset].std[0]
    raw = data.splits["val"].inputs[:15].float() / 255
    assert torch.allclose(x, (raw - mean) / std, atol=1e-5)


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_loads_pickled_batches_channel_first(classes, tmp_path, skip_cifar_md5):
    written = write_cifar(tmp_path, classes=classes, per_batch=20, n_test=20)
    name = "cifar10" if classes == 10 else "cifar100"
    data = TorchvisionData(name, root=str(tmp_path), download=False, val_fraction=0.1, batch_size=8)
    assert data.split_sizes() == {"train": 90, "val": 10, "test": 20}
    images, labels = written["test_batch" if classes == 10 else "test"]
    assert torch.equal(data.splits["test"].inputs, torch.from_numpy(images))  # N x 3 x 32 x 32
    assert torch.equal(data.splits["test"].targets, torch.from_numpy(labels).long())
    assert data.class_names[:2] == (["class0", "class1"] if classes == 10 else ["fine0", "fine1"])
    assert data.num_classes == classes and data.input_shape == (3, 32, 32)
    assert isinstance(data.augment, CropFlip)


def test_validation_split_follows_the_seed_and_test_split_does_not(tmp_path):
    write_mnist(tmp_path)
    a = TorchvisionData("mnist", root=str(tmp_path), download=False, seed=1)
    b = TorchvisionData("mnist", root=str(tmp_path), download=False, seed=2)
    assert not torch.equal(a.splits["val"].inputs, b.splits["val"].inputs)
    assert torch.equal(a.splits["test"].inputs, b.splits["test"].inputs)


def test_imagenet_statistics_and_resize_for_pretrained_models(tmp_path):
    write_mnist(tmp_path)
    data = TorchvisionData(
        "mnist", root=str(tmp_path), download=False, imagenet_normalization=True, resize=56
    )
    assert data.input_shape == (1, 56, 56)
    x, _ = next(iter(data.test_loader()))
    assert x.shape[1:] == (1, 56, 56)
    white = data.transform(torch.full((1, 1, 28, 28), 255, dtype=torch.uint8))
    assert torch.allclose(white, torch.full_like(white, (1 - 0.449) / 0.226), atol=1e-4)
    cfg = compose_config("model=resnet18", "model.pretrained=true", "data=cifar10")
    assert cfg.data.imagenet_normalization is True
    assert compose_config("data=cifar10").data.imagenet_normalization is False


def test_missing_data_without_download_names_the_files_and_the_folder(tmp_path):
    with pytest.raises(UserError) as error:
        TorchvisionData("cifar10", root=str(tmp_path), download=False)
    assert str(error.value) == (
        f"CIFAR-10 was not found in {tmp_path}; download cifar-10-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/ into {tmp_path} (nntrain checks and unpacks them), "
        "or set data.download=true to fetch it."
    )


def test_offline_download_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(vision, "unreachable_reason", lambda url: "cannot reach the host: offline")
    with pytest.raises(UserError) as error:
        TorchvisionData("mnist", root=str(tmp_path))
    assert str(error.value) == (
        f"MNIST is not in {tmp_path} and could not be downloaded (cannot reach the host: offline); "
        "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz from https://ossci-datasets.s3.amazonaws.com/mnist/ into "
        f"{tmp_path}/MNIST/raw (nntrain checks and unpacks them), or set data.root to a folder that has them."
    )


def test_default_root_is_a_per_user_cache_overridable_by_environment(monkeypatch):
    monkeypatch.delenv("NNTRAIN_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert vision.default_root() == "~/.cache/nntrain/data"
    monkeypatch.setenv("NNTRAIN_DATA_DIR", "/data/sets")
    assert vision.default_root() == "/data/sets"


def checkerboard_batch(n: int = 64) -> torch.Tensor:
    image = (torch.arange(3 * 8 * 8).view(3, 8, 8) % 251 + 1).to(
        torch.uint8
    )  # no zeros, asymmetric
    return image.expand(n, 3, 8, 8).clone()


def test_random_crop_shifts_each_image_within_the_padding():
    images = checkerboard_batch()
    out = random_crop(images, 2, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    allowed = set(images.unique().tolist()) | {0}  # padding is zeros
    assert set(out.unique().tolist()) <= allowed
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 10  # different offsets across the batch
    padded = torch.nn.functional.pad(images[0], (2, 2, 2, 2))
    windows = {
        tuple(padded[:, dy : dy + 8, dx : dx + 8].flatten().tolist())
        for dy in range(5)
        for dx in range(5)
    }
    assert distinct <= windows  # every output is one of the 25 shifted windows


def test_random_flip_mirrors_about_half_the_images():
    images = checkerboard_batch(200)
    out = random_flip(images, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, images[0].flip(2)) for o in out]
    kept = [torch.equal(o, images[0]) for o in out]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 60 < sum(flipped) < 140


def test_augmentation_is_reproducible_per_seed_epoch_and_batch():
    images, targets = checkerboard_batch(32), torch.zeros(32, dtype=torch.long)

    def batches(epoch: int) -> list[torch.Tensor]:
        loader = TensorLoader(
            images, targets, 8, shuffle=True, seed=3, drop_last=True, augment=CropFlip(2)
        )
        loader.set_epoch(epoch)
        return [x for x, _ in loader]

    first, again, other = batches(0), batches(0), batches(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_cifar10_trains_end_to_end_from_the_cli_config(model, tmp_path, skip_cifar_md5):
    write_cifar(tmp_path / "data", classes=10, per_batch=40)
    cfg = compose_config(
        f"model={model}",
        "data=cifar10",
        f"data.root={tmp_path / 'data'}",
        "data.batch_size=16",
        "trainer=debug",
    )
    result = run(cfg, str(tmp_path / "run"))
    assert result["epochs_run"] == 2 and np.isfinite(result["test/loss"])
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
