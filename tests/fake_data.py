"""Tiny data sets written in the exact on-disk formats torchvision reads, so its real loading
code runs offline: idx files for the MNIST family, pickled batches for CIFAR-10/100."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """idx3-ubyte: magic 0x00000803, count, rows, cols (big-endian int32), then the pixels."""
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">4i", 0x803, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """idx1-ubyte: magic 0x00000801, count, then one byte per label."""
    path.write_bytes(struct.pack(">2i", 0x801, len(labels)) + labels.astype(np.uint8).tobytes())


def labelled_images(
    n: int, shape: tuple[int, ...], classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images whose brightness depends on the label (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    noise = rng.integers(0, 80, size=(n, *shape))
    base = (labels * (170 // max(1, classes - 1))).reshape(-1, *[1] * len(shape))
    return (noise + base).clip(0, 255).astype(np.uint8), labels


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20) -> dict:
    """<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, as torchvision unpacks them."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    written = {}
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = labelled_images(n, (28, 28), 10, seed)
        write_idx_images(raw / f"{split}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{split}-labels-idx1-ubyte", labels)
        written[split] = (images, labels)
    return written


def write_cifar(root: Path, classes: int = 10, per_batch: int = 20, n_test: int = 20) -> dict:
    """CIFAR's python version: pickled dicts with 'data' (N x 3072 uint8, channel-major rows)
    and 'labels' (CIFAR-10) or 'fine_labels' (CIFAR-100), plus the metadata file."""
    if classes == 10:
        folder, label_key = root / "cifar-10-batches-py", "labels"
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_file, meta_file, meta = (
            "test_batch",
            "batches.meta",
            {"label_names": [f"class{i}" for i in range(10)]},
        )
    else:
        folder, label_key = root / "cifar-100-python", "fine_labels"
        train_files, test_file, meta_file = ["train"], "test", "meta"
        meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": []}
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate([*train_files, test_file]):
        n = n_test if name == test_file else per_batch * (5 if classes == 100 else 1)
        images, labels = labelled_images(n, (3, 32, 32), classes, seed=10 + i)
        entry = {"data": images.reshape(n, 3072), label_key: labels.tolist(), "batch_label": name}
        (folder / name).write_bytes(pickle.dumps(entry))
        written[name] = (images, labels)
    (folder / meta_file).write_bytes(pickle.dumps(meta))
    return written
