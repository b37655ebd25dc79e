"""model=resnet18: pretrained weights from the hub cache, freezing, unfreezing, stems."""

import logging
import urllib.error
from functools import partial

import pytest
import torch
import torchvision
from torch import nn

from nntrain.checkpoint import load_checkpoint
from nntrain.errors import UserError
from nntrain.models.hooks import PretrainedBackbone
from nntrain.models.layers import Dropout
from nntrain.models.resnet import ResNet18
from nntrain.optim.optimizers import param_groups
from nntrain.optim.schedules import warmup_cosine
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config
from tests.helpers import ImageBlobData

WEIGHTS_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1


@pytest.fixture
def hub_weights(tmp_path, monkeypatch):
    """A random resnet18 state dict placed in a temporary torch hub cache as the 'pretrained'
    file: torchvision's weights API finds it there instead of downloading."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, checkpoints / WEIGHTS_FILE)
    return state


def backbone_state(model: ResNet18) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def test_pretrained_weights_come_from_the_torch_hub_cache(hub_weights):
    model = ResNet18((3, 64, 64), num_classes=5, pretrained=True)
    loaded = model.backbone.state_dict()
    for key, value in hub_weights.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert isinstance(model.backbone.fc, nn.Identity)
    head = [type(m) for m in model.head]
    assert head == [nn.Linear, nn.ReLU, Dropout, nn.Linear]
    assert (model.head[0].in_features, model.head[0].out_features, model.head[2].p) == (
        512,
        256,
        0.4,
    )
    assert model.head[3].out_features == 5
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_offline_and_not_cached_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("nntrain.models.resnet.unreachable_reason", lambda url: None)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError) as error:
        ResNet18((3, 32, 32), num_classes=10, pretrained=True)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    assert str(error.value) == (
        f"the pretrained ResNet-18 weights are not in {cache} and could not be downloaded "
        f"(no network (test)); download https://download.pytorch.org/models/{WEIGHTS_FILE} and put "
        f"it there as {WEIGHTS_FILE} (TORCH_HOME moves this cache), or pass model.weights_path=FILE."
    )


def test_an_unreachable_host_is_one_sentence_without_torchs_download_line(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        "nntrain.models.resnet.unreachable_reason", lambda url: "cannot reach the host: offline"
    )
    with pytest.raises(UserError) as error:
        ResNet18((3, 32, 32), num_classes=10, pretrained=True)
    assert "(cannot reach the host: offline); download https://" in str(error.value)
    assert capfd.readouterr().err == ""  # torch.hub's "Downloading: ..." line came before


def test_weights_path_loads_a_local_state_dict(tmp_path):
    torch.manual_seed(5)
    state = torchvision.models.resnet18(weights=None, num_classes=7).state_dict()  # any fc shape
    torch.save(state, tmp_path / "mine.pt")
    model = ResNet18((3, 64, 64), num_classes=3, weights_path=str(tmp_path / "mine.pt"))
    assert torch.equal(model.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert model.pretrained_backbone
    with pytest.raises(UserError, match=r"^model\.weights_path .*nothing\.pt does not exist"):
        ResNet18((3, 64, 64), num_classes=3, weights_path=str(tmp_path / "nothing.pt"))


def test_small_inputs_get_the_cifar_stem_unless_pretrained(hub_weights):
    small = ResNet18((3, 32, 32), num_classes=10)
    assert small.backbone.conv1.kernel_size == (3, 3) and small.backbone.conv1.stride == (1, 1)
    assert isinstance(small.backbone.maxpool, nn.Identity)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    large = ResNet18((3, 64, 64), num_classes=10)
    assert large.backbone.conv1.kernel_size == (7, 7)
    pretrained = ResNet18((3, 32, 32), num_classes=10, pretrained=True)
    assert pretrained.backbone.conv1.kernel_size == (7, 7)
    forced = ResNet18((3, 32, 32), num_classes=10, pretrained=True, small_input=True)
    assert forced.backbone.conv1.kernel_size == (3, 3)


def test_grayscale_input_uses_the_summed_pretrained_stem(hub_weights):
    model = ResNet18((1, 28, 28), num_classes=10, pretrained=True)
    rgb_stem = hub_weights["conv1.weight"]
    assert torch.equal(model.backbone.conv1.weight, rgb_stem.sum(dim=1, keepdim=True))
    gray = torch.randn(2, 1, 28, 28)
    replicated = nn.functional.conv2d(gray.expand(-1, 3, -1, -1), rgb_stem, stride=2, padding=3)
    assert torch.allclose(model.backbone.conv1(gray), replicated, atol=1e-5)


def train(model, tmp_path, epochs: int):
    trainer = Trainer(
        device="cpu", max_epochs=epochs, progress=False, limit_train_batches=2, limit_val_batches=1
    )
    return trainer.fit(
        model,
        ImageBlobData(),
        partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.05),
        partial(warmup_cosine, warmup_epochs=0, min_lr=1e-3),
        run_dir=tmp_path,
    )


def test_frozen_backbone_stays_bit_identical_while_the_head_learns(hub_weights, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="nntrain"):
        model = ResNet18((3, 32, 32), num_classes=4, pretrained=True, freeze_backbone=True)
    assert "backbone frozen: trainable 132,356 / total 11,308,868 parameters" in caplog.text
    before_backbone, before_head = backbone_state(model), model.head[0].weight.clone()
    train(model, tmp_path, epochs=2)
    after = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]
    for key, value in before_backbone.items():  # weights and BatchNorm running statistics
        assert torch.equal(after[f"backbone.{key}"], value), key
    assert not torch.equal(after["head.0.weight"], before_head)


def test_unfreeze_at_epoch_k_trains_the_backbone_at_the_scaled_lr(hub_weights, tmp_path):
    model = ResNet18(
        (3, 32, 32), num_classes=4, pretrained=True, freeze_backbone=True, unfreeze_at_epoch=2
    )
    assert model.backbone_lr_scale == 0.1  # the default, as in configs/model/resnet18.yaml
    before = backbone_state(model)
    train(model, tmp_path / "one", epochs=1)  # epoch 1: still frozen
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in before.items())
    assert model.backbone_frozen

    model = ResNet18(
        (3, 32, 32), num_classes=4, pretrained=True, freeze_backbone=True, unfreeze_at_epoch=2
    )
    train(model, tmp_path / "two", epochs=2)  # epoch 2: the backbone trains
    assert not model.backbone_frozen
    assert not torch.equal(model.backbone.layer1[0].conv1.weight, before["layer1.0.conv1.weight"])
    groups = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["optimizer"][
        "param_groups"
    ]
    lrs = {g["name"]: g["lr"] for g in groups}
    assert set(lrs) == {"decay", "no_decay", "backbone_decay", "backbone_no_decay"}
    assert lrs["backbone_decay"] == pytest.approx(0.1 * lrs["decay"])  # the schedule drives both
    assert lrs["backbone_no_decay"] == pytest.approx(0.1 * lrs["no_decay"])
    assert lrs["decay"] == pytest.approx(1e-3)  # cosine has decayed 1e-2 to min_lr
    assert lrs["backbone_decay"] == pytest.approx(1e-4)


def test_the_backbone_lr_scale_is_the_models_own(hub_weights, tmp_path):
    model = ResNet18((3, 32, 32), num_classes=4, pretrained=True, backbone_lr_scale=0.25)
    assert isinstance(model, PretrainedBackbone)
    train(model, tmp_path, epochs=1)
    groups = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["optimizer"]["param_groups"]
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["backbone_decay"] == pytest.approx(0.25 * lrs["decay"])
    assert lrs["backbone_no_decay"] == pytest.approx(0.25 * lrs["no_decay"])
    assert lrs["decay"] == pytest.approx(1e-3)  # one epoch: cosine is at min_lr
    # From scratch there is nothing pretrained to protect: one lr for every parameter.
    scratch = ResNet18((3, 32, 32), num_classes=4, backbone_lr_scale=0.25)
    assert [g["name"] for g in param_groups(scratch, lr=1e-2)] == ["decay", "no_decay"]


@pytest.mark.parametrize("scale", [-0.1, "abc", None, True])
def test_a_backbone_lr_scale_that_is_not_a_number_at_least_0_is_refused(scale):
    with pytest.raises(UserError) as error:
        ResNet18((3, 32, 32), num_classes=2, backbone_lr_scale=scale)
    assert str(error.value) == (
        f"model.backbone_lr_scale must be a number >= 0, got {scale!r}; "
        "e.g. model.backbone_lr_scale=0.1."
    )


def test_resnet18_config_builds_and_refuses_tabular_data():
    cfg = compose_config(
        "model=resnet18", "model.freeze_backbone=true", "model.unfreeze_at_epoch=3"
    )
    assert cfg.model.unfreeze_at_epoch == 3 and cfg.model.backbone_lr_scale == 0.1
    assert "backbone_lr_scale" not in cfg.optimizer
    with pytest.raises(UserError, match=r"^model=resnet18 needs image data"):
        ResNet18((4,), num_classes=2)
    with pytest.raises(
        UserError, match=r"^model\.unfreeze_at_epoch needs model\.freeze_backbone=true"
    ):
        ResNet18((3, 32, 32), num_classes=2, unfreeze_at_epoch=2)


def test_a_pretrained_run_on_small_images_is_rebuilt_with_its_own_stem(hub_weights, tmp_path):
    """Pretrained weights keep the 7x7 stem on 8x8 digits (small_input=auto); nntrain-eval,
    -predict and -export rebuild the model without them and must not switch to the 3x3 stem."""
    from nntrain.commands.train import run
    from nntrain.inference.trained_run import build_model, load_run

    short = ("trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1")
    cfg = compose_config(
        "model=resnet18",
        "model.pretrained=true",
        "trainer=debug",
        "trainer.report_images=false",
        *short,
    )
    run(cfg, str(tmp_path / "run"))
    model = build_model(load_run(tmp_path / "run"))
    assert model.backbone.conv1.kernel_size == (7, 7)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


def test_a_pretrained_run_resumes_without_its_weights_file(tmp_path):
    """A run started from model.weights_path (or ImageNet weights) resumes from its checkpoint
    alone: the file may be gone (a requeued job on another node, offline), every weight is in
    last.pt, and the backbone keeps its own learning rate (model.backbone_lr_scale)."""
    from nntrain.commands.train import run

    torch.manual_seed(5)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "mine.pt")
    common = (
        "model=resnet18",
        f"model.weights_path={tmp_path / 'mine.pt'}",
        "trainer=debug",
        "trainer.report_images=false",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
    )
    run(compose_config(*common, "trainer.max_epochs=1"), str(tmp_path / "run"))
    (tmp_path / "mine.pt").unlink()
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    resumed = compose_config(*common, "trainer.max_epochs=2", f"resume={last}")
    run(resumed, str(tmp_path / "run"))
    state = load_checkpoint(last)
    assert state["epoch"] == 2
    lrs = {g["name"]: g["lr"] for g in state["optimizer"]["param_groups"]}
    assert lrs["backbone_decay"] == pytest.approx(0.1 * lrs["decay"])
