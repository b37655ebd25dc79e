"""data.mixup_alpha / data.cutmix_alpha: MixUp and CutMix of training batches on the device."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nntrain.data.mixing import Mixing, dominant_labels
from nntrain.errors import UserError
from nntrain.optim.schedules import constant
from tests.conftest import run_nntrain
from tests.helpers import BlobData, ImageBlobData
from tests.resume_helpers import assert_equal, assert_resume_is_exact, fit

CLASSES = 4


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with the value i: a pixel tells which image it came from."""
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 16, 16).clone()
    return images, torch.arange(n) % CLASSES


def test_mixup_blends_each_image_with_its_partner_by_the_seeded_lam():
    images, targets = batch()
    mixed, soft = Mixing(mixup_alpha=0.4, seed=3).mix(images, targets, CLASSES, (1, 5, 0))
    draws = np.random.default_rng([3, 1, 5, 0])  # (seed, epoch, batch index, rank)
    assert draws.random() < 1.0  # mix_prob=1: every batch is mixed
    lam = draws.beta(0.4, 0.4)
    partner = images.flip(0)  # image i is blended with image n-1-i
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * partner)
    one_hot = F.one_hot(targets, CLASSES).float()
    torch.testing.assert_close(soft, lam * one_hot + (1 - lam) * one_hot.flip(0))
    torch.testing.assert_close(soft.sum(1), torch.ones(8))
    again = Mixing(mixup_alpha=0.4, seed=3).mix(images, targets, CLASSES, (1, 5, 0))
    assert torch.equal(again[0], mixed)  # seeded: the same batch mixes the same way
    other = Mixing(mixup_alpha=0.4, seed=3).mix(images, targets, CLASSES, (1, 6, 0))
    assert not torch.equal(other[0], mixed)


def test_cutmix_pastes_a_box_of_the_partner_and_lam_is_the_area_kept():
    images, targets = batch()
    one_hot = F.one_hot(targets, CLASSES).float()
    shares = []
    for index in range(20):
        mixed, soft = Mixing(cutmix_alpha=1.0).mix(images, targets, CLASSES, (0, index, 0))
        from_partner = mixed != images  # image i's own pixels have the value i
        assert torch.equal(mixed[from_partner], images.flip(0)[from_partner])
        share = from_partner.float().mean((1, 2, 3))
        assert torch.equal(share, share[:1].expand(8))  # one box for the whole batch
        lam = 1 - float(share[0])
        torch.testing.assert_close(soft, lam * one_hot + (1 - lam) * one_hot.flip(0))
        shares.append(float(share[0]))
    assert sum(0 < share < 1 for share in shares) >= 15  # boxes of all sizes, mostly not empty


def test_switch_prob_and_mix_prob_choose_per_batch():
    images, targets = batch()
    both = Mixing(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5)
    kinds = {"cutmix": 0, "mixup": 0}
    for index in range(200):
        mixed, _ = both.mix(images, targets, CLASSES, (0, index, 0))
        box = ((mixed == images) | (mixed == images.flip(0))).all()  # whole pixels only
        kinds["cutmix" if box else "mixup"] += 1
    assert 70 < kinds["cutmix"] < 130  # about half of 200
    rarely = Mixing(mixup_alpha=1.0, prob=0.25)
    unmixed = sum(
        rarely.mix(images, targets, CLASSES, (0, index, 0))[1].dim() == 1 for index in range(200)
    )
    assert 120 < unmixed < 180  # about 3/4 of the batches keep their labels


def test_the_soft_loss_with_label_smoothing_equals_timms_mixup_target():
    torch.manual_seed(0)
    logits, targets = torch.randn(8, CLASSES), torch.arange(8) % CLASSES
    lam, smoothing = 0.7, 0.1
    one_hot = F.one_hot(targets, CLASSES).float()
    soft = lam * one_hot + (1 - lam) * one_hot.flip(0)
    ours = F.cross_entropy(logits, soft, label_smoothing=smoothing)
    # timm.data.mixup.mixup_target: smoothed one-hots (off = s/C, on = 1 - s + off), then mixed
    off, on = smoothing / CLASSES, 1 - smoothing + smoothing / CLASSES
    smoothed = one_hot * (on - off) + off
    target = lam * smoothed + (1 - lam) * smoothed.flip(0)
    timm = torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    torch.testing.assert_close(ours, timm)


def test_train_accuracy_counts_the_dominant_label():
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.45, 0.55], [0.5, 0.0, 0.5]])
    assert dominant_labels(soft).tolist() == [0, 2, 0]  # a tie goes to the lower index
    assert dominant_labels(torch.tensor([2, 1])).tolist() == [2, 1]  # unmixed labels


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 4),
    )  # fmt: skip


def mixed_images(**mixing: float):
    def make() -> ImageBlobData:
        data = ImageBlobData()  # 32 training images, 4 batches of 8
        data.mixing = Mixing(**mixing, seed=data.seed)
        return data

    return make


MIXED_RUN = {
    "make_model": tiny_cnn,
    "make_data": mixed_images(mixup_alpha=0.4, cutmix_alpha=1.0),
    "optimizer": partial(torch.optim.SGD, lr=0.1, momentum=0.9),
    "scheduler": partial(constant),
    "max_epochs": 3,
    "early_stopping": {"patience": None},
    "label_smoothing": 0.1,
}


def test_a_mixed_run_is_seeded_and_resumes_bitwise(tmp_path):
    mixed = assert_resume_is_exact(tmp_path / "mixed", stop_at=6, **MIXED_RUN)  # mid-epoch 2
    plain = {**MIXED_RUN, "make_data": mixed_images()}
    fit(tmp_path / "plain", **plain)  # type: ignore[arg-type]
    unmixed = torch.load(tmp_path / "plain" / "checkpoints" / "last.pt", weights_only=True)
    with pytest.raises(AssertionError):  # the mixing changed the training
        assert_equal(mixed["model"], unmixed["model"], "model")


def test_mixing_tabular_data_is_refused_in_one_sentence(tmp_path):
    def blobs() -> BlobData:
        data = BlobData()
        data.mixing = Mixing(mixup_alpha=0.2)
        return data

    with pytest.raises(UserError) as error:
        fit(tmp_path, nn.Flatten, blobs, partial(torch.optim.SGD, lr=0.1), partial(constant))
    assert str(error.value) == (
        "data.mixup_alpha and data.cutmix_alpha mix images of a classification, and this data "
        "has 1-D inputs (4,) (classification); set both to 0."
    )
    moons = run_nntrain("data=moons", "data.mixup_alpha=0.2", cwd=tmp_path)
    assert moons.returncode == 1 and "Traceback" not in moons.stderr
    assert moons.stderr.strip() == (
        "Error: data.mixup_alpha is a key of the image data (data=digits, mnist, fashion_mnist, "
        "cifar10, cifar100, imagefolder) only: MixUp and CutMix mix images; leave it out for "
        "table data."
    )
    negative = run_nntrain("trainer=debug", "data.cutmix_alpha=-1", cwd=tmp_path)
    assert negative.returncode == 1
    assert negative.stderr.strip() == (

            "Error: data.cutmix_alpha must be a number >= 0 (0 = off; 1.0 is usual), got -1; for "
            "example data.cutmix_alpha=0.0."

    )


def test_a_run_saved_before_the_mix_keys_existed_resumes_as_the_same_run():
    from omegaconf import OmegaConf

    from nntrain.launch.resume import config_differences
    from tests.conftest import compose_config

    current = OmegaConf.to_container(compose_config(), resolve=True)
    assert isinstance(current, dict)
    saved = {**current, "data": dict(current["data"])}
    for key in ("mixup_alpha", "cutmix_alpha", "mix_switch_prob", "mix_prob"):
        del saved["data"][key]
    assert config_differences(saved, current) == []
    current["data"]["mixup_alpha"] = 0.2  # turning MixUp on is another run
    assert config_differences(saved, current) == ["data.mixup_alpha (run: absent, now: 0.2)"]
