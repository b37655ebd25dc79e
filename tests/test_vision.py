"""torchvision data sets through the real loading code, on fake files in the real formats."""

import gzip
import hashlib
import os
import tarfile

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
from tests.fake_data import write_cifar, write_idx_images, write_idx_labels, write_mnist


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
    (tmp_path / "cifar").write_text("a file, not a folder")
    with pytest.raises(UserError) as error:
        TorchvisionData("cifar10", root=str(tmp_path / "cifar"), download=True)
    assert str(error.value) == (
        f"data.root {tmp_path}/cifar is a file, not a folder; set data.root (or NNTRAIN_DATA_DIR) "
        "to the folder that holds the data sets, e.g. data.root=~/data."
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


def gzip_mnist(root, monkeypatch, md5_of_fakes: bool = True) -> dict:
    """The four idx files gzipped as downloaded (the unpacked ones deleted); md5_of_fakes: make
    torchvision's md5 sums those of these fake archives."""
    written = write_mnist(root)
    raw = root / "MNIST" / "raw"
    for name, _md5 in torchvision.datasets.MNIST.resources:
        unpacked = raw / name.removesuffix(".gz")
        (raw / name).write_bytes(gzip.compress(unpacked.read_bytes()))
        unpacked.unlink()
    if md5_of_fakes:
        sums = [(n, hashlib.md5((raw / n).read_bytes()).hexdigest()) for n, _ in MNIST_FILES]
        monkeypatch.setattr(torchvision.datasets.MNIST, "resources", sums)
    return written


MNIST_FILES = torchvision.datasets.MNIST.resources
MNIST_NAMES = ", ".join(name for name, _md5 in MNIST_FILES)
MNIST_SOURCE = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def test_archives_placed_by_hand_are_checked_and_unpacked_without_download(tmp_path, monkeypatch):
    # data.download=false must not refuse the archives its own message asks to place there.
    written = gzip_mnist(tmp_path, monkeypatch)
    data = TorchvisionData("mnist", root=str(tmp_path), download=False)
    assert torch.equal(data.splits["test"].inputs[:, 0], torch.from_numpy(written["t10k"][0]))
    assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_cifar_archive_placed_by_hand_is_unpacked_without_download(tmp_path, monkeypatch):
    written = write_cifar(tmp_path / "made")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "made" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    unpacked = tmp_path / "cifar-10-batches-py"
    for key in ("train_list", "test_list"):  # the md5 sums of the fake files inside
        sums = [
            [n, hashlib.md5((tmp_path / "made" / unpacked.name / n).read_bytes()).hexdigest()]
            for n, _md5 in getattr(cifar, key)
        ]
        monkeypatch.setattr(cifar, key, sums)
    meta = hashlib.md5((tmp_path / "made" / unpacked.name / "batches.meta").read_bytes())
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": meta.hexdigest()})
    data = TorchvisionData("cifar10", root=str(tmp_path), download=False)
    assert torch.equal(data.splits["test"].inputs, torch.from_numpy(written["test_batch"][0]))


def test_an_archive_that_fails_its_md5_check_is_named(tmp_path, monkeypatch):
    gzip_mnist(tmp_path, monkeypatch, md5_of_fakes=False)  # torchvision's real sums
    raw = tmp_path / "MNIST" / "raw"
    with pytest.raises(UserError) as error:
        TorchvisionData("mnist", root=str(tmp_path), download=False)
    assert str(error.value) == (
        f"MNIST in {tmp_path} cannot be used: {MNIST_NAMES} are in {raw} but fail the md5 check; "
        f"download {MNIST_NAMES} from {MNIST_SOURCE} into {raw} (nntrain checks and unpacks "
        "them), or set data.download=true to fetch it."
    )


def damage(raw, case: str) -> str:
    """Spoil the unpacked MNIST files in raw/ as case says; returns what the message must say."""
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    if case == "truncated":
        images.write_bytes(images.read_bytes()[:1000])
        return f"its files in {raw} could not be read (shape '[60, 28, 28]' is invalid for input of size 984)"
    if case == "not idx":
        images.write_bytes(b"<html>404 Not Found</html>" * 10)
        return f"its files in {raw} could not be read (AssertionError)"
    if case == "missing":
        labels.unlink()
        return f"{raw} is incomplete: train-labels-idx1-ubyte is missing"
    if case == "fewer labels":
        write_idx_labels(labels, np.arange(50) % 10)
        return "its training split has 60 images but 50 labels"
    assert case == "labels out of range"
    write_idx_labels(labels, np.arange(60) % 13)
    return "its training labels run from 0 to 12, but it has 10 classes (labels 0 to 9)"


@pytest.mark.parametrize(
    "case", ["truncated", "not idx", "missing", "fewer labels", "labels out of range"]
)
def test_damaged_or_foreign_files_are_one_sentence_before_training(case, tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    problem = damage(raw, case)
    with pytest.raises(UserError) as error:
        TorchvisionData("mnist", root=str(tmp_path), download=False)
    assert str(error.value) == (
        f"MNIST in {tmp_path} cannot be used: {problem}; download {MNIST_NAMES} from "
        f"{MNIST_SOURCE} into {raw} (nntrain checks and unpacks them), or set "
        "data.download=true to fetch it."
    )


def test_training_and_test_images_of_different_sizes_are_refused(tmp_path):
    write_mnist(tmp_path)
    write_idx_images(tmp_path / "MNIST/raw/t10k-images-idx3-ubyte", np.zeros((20, 32, 32)))
    with pytest.raises(UserError) as error:
        TorchvisionData("mnist", root=str(tmp_path), download=False)
    assert str(error.value) == (
        f"MNIST in {tmp_path} cannot be used: its training images are (28, 28) but its test "
        "images (32, 32), so one of its files is another data set's; replace the files with the "
        "original ones, or set data.root to a folder that has them."
    )


def test_archives_in_a_folder_that_cannot_be_written_are_one_sentence(tmp_path, monkeypatch):
    gzip_mnist(tmp_path, monkeypatch)

    def read_only(from_path, to_path, remove_finished=False):
        raise PermissionError(
            13, "Permission denied"
        )  # as on a read-only mount (tests run as root)

    monkeypatch.setattr(torchvision.datasets.utils, "extract_archive", read_only)
    raw = tmp_path / "MNIST" / "raw"
    with pytest.raises(UserError) as error:
        TorchvisionData("mnist", root=str(tmp_path), download=False)
    assert str(error.value) == (
        f"cannot unpack {raw}/train-images-idx3-ubyte.gz into {raw} (Permission denied); make "
        "that folder writable, or set data.root to a writable folder with the archive."
    )
