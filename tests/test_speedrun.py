"""The CIFAR-10 speedrun recipe and the trainer features it brings: the airbench-style network,
lookahead, label smoothing, test-time augmentation, the triangular schedule, reflected
translation and torch.compile."""

import logging
import math
import os
import signal
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.cifar
from torch import nn

from nntrain.checkpoint import load_checkpoint
from nntrain.commands.train import run
from nntrain.data.augment import random_crop
from nntrain.data.settings import Cifar10Settings
from nntrain.errors import UserError
from nntrain.inference.tta import tta_logits
from nntrain.models.speedrun import SpeedrunNet
from nntrain.optim.schedules import constant, triangle
from nntrain.schema import checked
from nntrain.training.lookahead import Lookahead
from nntrain.training.signals import TrainingInterrupted
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config
from tests.fake_data import write_cifar
from tests.helpers import BlobData, ImageBlobData


def test_the_preset_composes_to_the_airbench_recipe():
    cfg = compose_config("experiment=cifar10_speedrun")
    assert cfg.model._target_ == "nntrain.models.speedrun.SpeedrunNet"
    assert cfg.data.dataset == "cifar10" and cfg.data.batch_size == 1024
    assert (cfg.data.crop_padding, cfg.data.padding_mode) == (2, "reflect")
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.momentum == 0.85
    assert cfg.scheduler._target_ == "nntrain.optim.schedules.triangle"
    trainer = cfg.trainer
    assert (trainer.precision, trainer.compile, trainer.label_smoothing) == ("bf16", True, 0.2)
    assert trainer.channels_last is True
    # As airbench: all 50,000 training images train and the final weights are tested.
    assert cfg.data.val_fraction == 0 and trainer.early_stopping.monitor == "none"
    assert trainer.lookahead.every_n_steps == 5 and trainer.lookahead.start_epoch == 3
    assert trainer.test_time_augmentation == "flip_translate"


def test_the_preset_trains_a_few_steps_on_fake_cifar(tmp_path, monkeypatch):
    # Fake CIFAR files cannot match torchvision's md5 sums; everything else is the real loader.
    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path)
    )
    write_cifar(tmp_path / "data", per_batch=200, n_test=200)
    cfg = compose_config(
        "experiment=cifar10_speedrun",
        f"data.root={tmp_path / 'data'}",
        "data.download=false",
        "data.batch_size=64",
        "model.init_samples=300",
        # The preset's network at a CPU's width: at 64/256/256 each step took ~3 s here.
        "model.widths=[16,32,32]",
        "trainer.device=cpu",
        # bf16 convolutions on a CPU without bf16 units run 7x slower than fp32 (the test took
        # two minutes); bf16 training is tested on its own (test_trainer.py).
        "trainer.precision=32",
        "trainer.compile=false",  # compiling takes a minute on a CPU; tested below on an MLP
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=4",
        "trainer.lookahead.start_epoch=1",
        "trainer.lookahead.every_n_steps=2",
    )
    result = run(cfg, str(tmp_path / "run"))
    assert result["epochs_run"] == 4 and math.isfinite(result["test/loss"])
    assert result["test/acc"] > 0.2  # ten classes: 0.1 by chance
    # No validation split: every training image trains, the final weights are tested.
    assert math.isnan(result["val/acc"]) and "none" not in result
    assert result["best_epoch"] == 4
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["epoch"] == state["epoch"] == 4
    assert all(torch.equal(best["model"][k], v) for k, v in state["model"].items())
    whitening = state["model"]["whiten.weight"]
    assert whitening.shape == (24, 3, 2, 2) and whitening.abs().sum() > 0  # set from the data
    assert state["lookahead"]["slow"] is not None


def test_whitening_filters_decorrelate_the_patches_they_were_set_from():
    torch.manual_seed(0)
    mixing = torch.randn(12, 12)
    patches = torch.randn(4000, 12) @ mixing  # strongly correlated 3x2x2 patches
    images = patches.view(4000, 3, 2, 2)  # each image is one 2x2 patch
    model = SpeedrunNet((3, 32, 32), 10)
    model.initialize_from_data(images, eps=0.0)
    outputs = model.whiten(images).flatten(1)[:, :12]  # the positive half of the filters
    covariance = outputs.T @ outputs / len(outputs)
    torch.testing.assert_close(covariance, torch.eye(12), atol=1e-3, rtol=0)
    assert torch.equal(model.whiten.weight[12:], -model.whiten.weight[:12])


def test_speedrun_net_starts_with_identity_convs_and_shift_only_batchnorm():
    model = SpeedrunNet((3, 32, 32), 10)
    conv = model.body[2][0]  # the second group's first conv: 64 -> 256 channels
    expected = torch.zeros(3, 3)
    expected[1, 1] = 1
    assert torch.equal(conv.weight[5, 5], expected) and conv.weight[5, 6].abs().sum() == 0
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and all(not m.weight.requires_grad for m in norms)
    assert all(m.bias.requires_grad for m in norms)
    assert not model.whiten.weight.requires_grad
    model.on_epoch_start(2)
    assert model.whiten.bias.requires_grad
    model.on_epoch_start(3)
    assert not model.whiten.bias.requires_grad
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_speedrun_net_refuses_tabular_data():
    with pytest.raises(UserError) as error:
        SpeedrunNet((4,), 3)
    assert str(error.value) == (
        "model=speedrun needs images (C, H, W) of at least 16 pixels a side, got input shape "
        "(4,); use data=cifar10 (or another image set)."
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"whitening_bias_epochs": "3"}, "model.whitening_bias_epochs must be an integer >= 0, got '3'."),
        ({"logit_scale": 0}, "model.logit_scale must be a number > 0, got 0."),
        ({"widths": [64, 256]}, "model.widths must be three positive integers, got [64, 256]; e.g. [64,256,256]."),
    ],
)  # fmt: skip
def test_bad_speedrun_settings_are_one_sentence(setting, message):
    with pytest.raises(UserError) as error:
        SpeedrunNet((3, 32, 32), 10, **setting)
    assert str(error.value) == message


def test_lookahead_pulls_the_weights_to_the_slow_average_every_n_steps():
    model = nn.Linear(2, 1, bias=False)
    lookahead = Lookahead(every_n_steps=2, decay=0.5, decay_power=1.0, start_epoch=1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead.after_step(model, epoch=0, step=2, total_steps=8)  # before start_epoch: nothing
    assert lookahead.slow is None
    lookahead.after_step(model, epoch=1, step=4, total_steps=8)  # starts the average
    assert torch.equal(lookahead.slow[0], torch.ones(1, 2))
    with torch.no_grad():
        model.weight.fill_(3.0)
    lookahead.after_step(model, epoch=1, step=5, total_steps=8)  # not a multiple of 2
    assert torch.equal(model.weight, torch.full((1, 2), 3.0))
    lookahead.after_step(model, epoch=1, step=6, total_steps=8)
    rho = 0.5**2 * (6 / 8)  # decay**N * (step / total)**power
    expected = torch.full((1, 2), rho * 1.0 + (1 - rho) * 3.0)
    torch.testing.assert_close(lookahead.slow[0], expected)
    torch.testing.assert_close(model.weight.detach(), expected)  # and the weights follow it
    with torch.no_grad():
        model.weight.fill_(7.0)
    lookahead.at_epoch_end(model)
    torch.testing.assert_close(model.weight.detach(), expected)


class InterruptAt(BlobData):
    """Blobs whose training loader sends this process SIGINT before batch `at` of epoch 1,
    as Ctrl-C would."""

    def __init__(self, at: int | None) -> None:
        super().__init__(n=400, batch_size=16)
        self.at = at

    def train_loader(self):
        loader, at = super().train_loader(), self.at

        class Interrupting:
            def __len__(self):
                return len(loader)

            def set_epoch(self, epoch, start_batch=0):
                self.epoch = epoch
                loader.set_epoch(epoch, start_batch)

            def __iter__(self):
                for index, batch in enumerate(loader, start=loader.start_batch):
                    if at is not None and self.epoch == 1 and index == at:
                        os.kill(os.getpid(), signal.SIGINT)
                    yield batch

        return Interrupting()


def lookahead_fit(run_dir, data, resume=None):
    trainer = Trainer(
        device="cpu", max_epochs=3, progress=False, deterministic=True, label_smoothing=0.1,
        lookahead={"every_n_steps": 3, "decay": 0.9, "start_epoch": 0},
    )  # fmt: skip
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = partial(torch.optim.SGD, lr=0.05, momentum=0.9)
    trainer.fit(model, data, optimizer, partial(constant), run_dir=run_dir, resume=resume)
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_an_interrupted_run_with_lookahead_resumes_to_bit_identical_weights(tmp_path):
    straight = lookahead_fit(tmp_path / "straight", InterruptAt(None))
    with pytest.raises(TrainingInterrupted):
        lookahead_fit(tmp_path / "cut", InterruptAt(7))
    last = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (last["epoch"], last["batches_done"]) == (1, 8)  # mid-epoch, with the average
    assert last["lookahead"]["slow"] is not None
    resumed = lookahead_fit(tmp_path / "cut", InterruptAt(None), resume=last)
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_label_smoothing_is_in_the_training_loss_only(tmp_path):
    """lr = 0 and no dropout or BatchNorm: the train loss is the smoothed cross-entropy of the
    initial model over the training set, the val loss the plain one."""
    data = BlobData(n=200, batch_size=20)
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    trainer = Trainer(device="cpu", max_epochs=1, progress=False, label_smoothing=0.3)
    result = trainer.fit(
        model, data, partial(torch.optim.SGD, lr=0.0), partial(constant), run_dir=tmp_path
    )
    train, val = data.splits["train"], data.splits["val"]
    with torch.no_grad():
        smoothed = F.cross_entropy(model(train.inputs), train.targets, label_smoothing=0.3)
        plain_val = F.cross_entropy(model(val.inputs), val.targets)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["metrics"]["train/loss"] == pytest.approx(smoothed.item(), rel=1e-5)
    assert result["val/loss"] == pytest.approx(plain_val.item(), rel=1e-5)


def test_test_time_augmentation_averages_the_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    images = torch.randn(6, 3, 8, 8)
    model(images)
    with torch.no_grad():
        plain, mirrored = model(images), model(images.flip(-1))
        assert torch.equal(tta_logits(model, images, "none"), plain)
        torch.testing.assert_close(tta_logits(model, images, "flip"), (plain + mirrored) / 2)
        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
        up_left, down_right = padded[..., :8, :8], padded[..., 2:, 2:]
        views = [
            (plain + mirrored) / 2,
            (model(up_left) + model(up_left.flip(-1))) / 2,
            (model(down_right) + model(down_right.flip(-1))) / 2,
        ]
        expected = 0.5 * views[0] + 0.25 * views[1] + 0.25 * views[2]
        torch.testing.assert_close(tta_logits(model, images, "flip_translate"), expected)
    with pytest.raises(UserError) as error:
        tta_logits(nn.Linear(4, 2), torch.randn(3, 4), "flip")
    assert str(error.value) == (
        "trainer.test_time_augmentation=flip needs image inputs (N, C, H, W), got shape (3, 4); "
        "set trainer.test_time_augmentation=none."
    )


def test_triangle_schedule_rises_to_the_peak_then_falls_to_the_end_factor():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = triangle(optimizer, total_steps=100, steps_per_epoch=10)
    factors = [schedule.lr_lambdas[0](step) for step in (0, 23, 100, 150)]
    assert factors == pytest.approx([0.2, 1.0, 0.07, 0.07])
    assert schedule.lr_lambdas[0](11) == pytest.approx(0.2 + 0.8 * 11 / 23)
    assert schedule.lr_lambdas[0](23 + 77 // 2) == pytest.approx(1 - 0.93 * 38 / 77)


def test_reflected_translation_fills_the_border_with_the_mirrored_image():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    generator = torch.Generator().manual_seed(0)
    shifted = random_crop(images, padding=2, generator=generator, mode="reflect")
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    for image, source in zip(shifted, padded, strict=True):  # each is one 4x4 window of it
        windows = [source[:, y : y + 4, x : x + 4] for y in range(5) for x in range(5)]
        assert any(torch.equal(image, window) for window in windows)
    with pytest.raises(UserError) as error:
        checked(Cifar10Settings, {"crop_padding": 2, "padding_mode": "wrap"})
    assert str(error.value) == (
        "data.padding_mode must be one of constant, reflect, got 'wrap'; for example "
        "data.padding_mode=constant."
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("compile", "fast", "trainer.compile must be true, false or a torch.compile mode (default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs), got 'fast'; for example trainer.compile=false."),
        ("test_time_augmentation", "mirror", "trainer.test_time_augmentation must be one of none, flip, flip_translate, got 'mirror'; for example trainer.test_time_augmentation=none."),
        ("label_smoothing", 1.5, "trainer.label_smoothing must be a number in [0, 1), got 1.5; for example trainer.label_smoothing=0.0."),
        ("lookahead", {"every_n_steps": 0}, "trainer.lookahead.every_n_steps must be a positive integer or null (off), got 0; for example trainer.lookahead.every_n_steps=5."),
    ],
)  # fmt: skip
def test_bad_trainer_settings_are_one_sentence(key, value, message):
    with pytest.raises(UserError) as error:
        Trainer(device="cpu", **{key: value})
    assert str(error.value) == message


def test_the_compile_cache_is_nntrains_unless_the_user_chose_a_folder(tmp_path, monkeypatch):
    """Importing torch._dynamo sets TORCHINDUCTOR_CACHE_DIR to inductor's default under /tmp;
    that is not a choice of the user's, so the lasting ~/.cache/nntrain/inductor wins over it."""
    from nntrain.training import compilation

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    torch_default = str(compilation.torch_default_cache_dir())
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", torch_default)
    assert compilation.use_persistent_cache() == tmp_path / "xdg" / "nntrain" / "inductor"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "xdg" / "nntrain" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compilation.use_persistent_cache() == tmp_path / "mine"
    # A home where the folder cannot be made (here ~/.cache is a file) keeps torch's folder.
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", torch_default)
    assert compilation.use_persistent_cache() == Path(torch_default)


def test_compiled_training_saves_plain_weights_that_load_anywhere(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))  # a cold cache
    data = ImageBlobData(n=64, shape=(3, 8, 8), batch_size=8)
    trainer = Trainer(device="cpu", max_epochs=1, progress=False, compile=True)

    def model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 4))

    from torch._dynamo.utils import counters

    counters.clear()
    torch._dynamo.reset()  # nothing compiled in this process before
    with caplog.at_level(logging.INFO, logger="nntrain"):
        result = trainer.fit(
            model(), data, partial(torch.optim.SGD, lr=0.1), partial(constant), tmp_path / "a"
        )
    assert counters["stats"]["unique_graphs"] >= 1  # the training forward was compiled
    # Compilation is timed on its own line and reported apart from the epochs' figures.
    assert "torch.compile: the first step took" in caplog.text
    assert "cold cache:" in caplog.text and "compiled and saved" in caplog.text
    assert result["compile_seconds"] > 0 and any((tmp_path / "cache").rglob("*"))
    state = load_checkpoint(tmp_path / "a" / "checkpoints" / "best.pt")["model"]
    assert not any(key.startswith("_orig_mod") for key in state)
    plain = model()
    plain.load_state_dict(state)
    test = data.splits["test"]
    inputs = data.transform(test.inputs.float())
    with torch.no_grad():
        accuracy = (plain(inputs).argmax(1) == test.targets).float().mean().item()
    assert accuracy == pytest.approx(result["test/acc"])
    # The same configuration again, as a new process would (dynamo's in-memory state reset):
    # the compiled graphs come from the cache on disk, and the log says so.
    torch._dynamo.reset()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nntrain"):
        again = trainer.fit(
            model(), data, partial(torch.optim.SGD, lr=0.1), partial(constant), tmp_path / "b"
        )
    assert "warm cache:" in caplog.text and "compiled graph" in caplog.text, caplog.text
    assert again["test/acc"] == result["test/acc"]


def test_compile_on_a_cpu_without_a_cxx_compiler_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++, c++ or clang++
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(UserError) as error:
        Trainer(device="cpu", compile=True)
    assert str(error.value) == (
        "trainer.compile on a CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX); "
        "install one or set trainer.compile=false."
    )
    assert Trainer(device="cpu", compile=False).compile is False


def test_no_validation_split_needs_a_monitor_that_is_not_validation(tmp_path):
    from nntrain.data.digits import Digits

    data = Digits(batch_size=64, val_fraction=0, test_fraction=0.2)
    data.setup(torch.device("cpu"))
    assert len(data.val_loader()) == 0 and len(data.splits["train"].targets) == 1438
    trainer = Trainer(device="cpu", progress=False, max_epochs=1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(UserError) as error:
        trainer.fit(model, data, partial(torch.optim.SGD, lr=0.1), constant, tmp_path / "run")
    assert str(error.value) == (
        "data.val_fraction=0 leaves no validation split and "
        "trainer.early_stopping.monitor=val/acc needs one; set "
        "trainer.early_stopping.monitor=none (test the final weights) or a data.val_fraction "
        "above 0."
    )
