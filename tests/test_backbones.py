"""model=timm and model=torchvision: any backbone by name, fine-tuned as its authors recommend.

Offline and small: timm's tiny test models (test_resnet, test_vit, ... a few hundred thousand
parameters) and torchvision's smallest, at small image sizes, on image folders written here;
pretrained weights are random tensors the tests save themselves, into a file and into the
caches laid out as the libraries expect (Hugging Face's for timm, torch hub's for torchvision).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nntrain.commands import train as cli
from nntrain.data.image_folder import ImageFolderData, load_rgb
from nntrain.data.new_inputs import load_image
from nntrain.errors import UserError
from nntrain.inference.trained_run import build_model, load_run
from nntrain.instantiate import build
from nntrain.models.timm_backbone import TimmModel
from nntrain.models.torchvision_backbone import TorchvisionModel
from nntrain.optim.optimizers import build_optimizer, param_groups
from tests.conftest import compose_config, read_metrics, run_nntrain

timm = pytest.importorskip("timm")  # nntrain[models], in the dev extra

CLASSES = {"cat": (200, 60, 40), "dog": (40, 180, 70), "emu": (50, 70, 200)}
SMALL = ("data.num_workers=0", "data.batch_size=6", "trainer.report_images=false")


def write_folder(folder: Path, per_class: int = 6, seed: int = 0) -> None:
    """per_class textured 56x48 images per class (a tint + noise, so that how an image is
    resized matters), as PNG files in folder/<class>/."""
    rng = np.random.default_rng(seed)
    for name, tint in CLASSES.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(-60, 60, size=(48, 56, 3))
            pixels = np.clip(np.array(tint) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i:02d}.png")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_folder(root / "train")
    return root


def train_config(photos: Path, *overrides: str):
    return compose_config(
        "data=imagefolder", f"data.root={photos}", "trainer=debug", *SMALL, *overrides
    )


def timm_state(name: str, seed: int = 7, classes: int = 1000) -> dict[str, torch.Tensor]:
    """A timm model's whole state dict (its 1000-class classifier included), random."""
    torch.manual_seed(seed)
    return timm.create_model(name, num_classes=classes).state_dict()


# --- timm and torchvision models train on an image folder ------------------------------------


@pytest.fixture(scope="module")
def timm_run(photos, tmp_path_factory) -> Path:
    """test_vit (bicubic, mean/std 0.5 in its pretrained config) trained for one epoch."""
    run_dir = tmp_path_factory.mktemp("timm") / "run"
    cfg = train_config(
        photos, "model=timm", "model.name=test_vit", "data.image_size=32", "trainer.max_epochs=1"
    )
    cli.run(cfg, str(run_dir))
    return run_dir


def test_a_timm_model_trains_an_epoch_with_its_own_data_config(timm_run):
    metrics = read_metrics(timm_run)
    assert metrics["epochs_run"] == 1 and 0 <= metrics["test/acc"] <= 1
    run = load_run(timm_run)
    assert run.config.model.name == "test_vit"
    # test_vit's pretrained config: bicubic, crop 0.95; the image size is the test's
    assert run.inputs["interpolation"] == "bicubic" and run.inputs["size"] == [32, 32]
    assert run.inputs["resize_shorter"] == round(32 / 0.95)
    model = build_model(run)
    assert isinstance(model, TimmModel) and model.head.out_features == 3
    summary = (timm_run / "model_summary.txt").read_text()
    assert "TimmModel" in summary


def test_a_torchvision_model_trains_an_epoch(photos, tmp_path):
    cfg = train_config(
        photos,
        "model=torchvision",
        "model.name=mobilenet_v3_small",
        "data.image_size=32",
        "trainer.max_epochs=1",
    )
    # its default weights' preprocessing (IMAGENET1K_V1: bilinear, 224 of 256)
    assert (cfg.data.interpolation, cfg.data.crop_fraction) == ("bilinear", 0.875)
    cli.run(cfg, str(tmp_path / "run"))
    assert read_metrics(tmp_path / "run")["epochs_run"] == 1
    model = build_model(load_run(tmp_path / "run"))
    assert isinstance(model, TorchvisionModel) and model.head.out_features == 3


# --- the model's data config: the image folder's defaults, unless set -----------------------


def test_the_start_up_line_says_the_models_data_config(caplog):
    with caplog.at_level("INFO", logger="nntrain"):
        TimmModel((3, 32, 32), 3, name="test_vit")
        TorchvisionModel((3, 32, 32), 3, name="mobilenet_v3_small")
    said = [r.getMessage() for r in caplog.records if "data config" in r.getMessage()]
    assert said[0].endswith(
        "its pretrained data config: 160 px only, bicubic, crop 0.95, mean [0.5, 0.5, 0.5], "
        "std [0.5, 0.5, 0.5] (the data's defaults where not set)"
    )
    assert said[1].startswith("torchvision mobilenet_v3_small: ")
    assert "its pretrained data config: 224 px, bilinear, crop 0.875" in said[1]


def test_the_model_data_config_is_the_default_and_the_users_values_win(photos):
    vit = train_config(photos, "model=timm", "model.name=test_vit").data
    assert (vit.image_size, vit.interpolation, vit.crop_fraction) == (160, "bicubic", 0.95)
    assert vit.mean is None and vit.std is None  # random init: measured from the images
    pretrained = train_config(photos, "model=timm", "model.name=test_vit", "model.pretrained=true")
    assert pretrained.data.mean == [0.5, 0.5, 0.5] and pretrained.data.std == [0.5, 0.5, 0.5]
    assert pretrained.data.imagenet_normalization is True
    own = train_config(
        photos,
        "model=timm",
        "model.name=test_vit",
        "model.pretrained=true",
        "data.image_size=64",
        "data.interpolation=nearest",
        "data.imagenet_normalization=false",
    ).data
    assert (own.image_size, own.interpolation, own.crop_fraction) == (64, "nearest", 0.95)
    assert own.mean is None  # normalisation measured, as the user asked
    tv = train_config(photos, "model=torchvision", "model.name=efficientnet_b0").data
    assert (tv.image_size, tv.interpolation, tv.crop_fraction) == (224, "bicubic", 0.875)
    mlp = train_config(photos).data  # a model without a data config: nntrain's defaults
    assert (mlp.image_size, mlp.interpolation, mlp.crop_fraction) == (224, "bilinear", 0.875)


def test_the_image_folder_applies_interpolation_crop_and_mean(photos):
    data = ImageFolderData(
        root=str(photos),
        image_size=24,
        interpolation="bicubic",
        crop_fraction=0.8,
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        num_workers=0,
    )
    resize = data.eval_transform.transforms[0]
    assert resize.size == [30] and resize.interpolation.value == "bicubic"
    assert data.train_transform.transforms[0].interpolation.value == "bicubic"
    assert (data.mean, data.std) == ((0.5,) * 3, (0.25,) * 3)
    spec = data.input_spec()
    assert spec["interpolation"] == "bicubic" and spec["resize_shorter"] == 30


def test_the_in_memory_sets_take_the_models_size_interpolation_and_mean():
    """data=mnist, cifar10, ...: resized to the model's input size where the model needs it
    (pretrained weights, or a ViT's one size), with its interpolation; its mean and std while
    it starts pretrained; a value the user sets wins; models without a data config as before."""
    def seen(*overrides: str) -> tuple:
        data = compose_config("data=cifar10", *overrides).data
        return data.resize, data.interpolation, data.mean, data.std

    half = [0.5, 0.5, 0.5]
    assert seen("model=timm", "model.name=test_resnet") == (None, "bilinear", None, None)
    pretrained = seen("model=timm", "model.name=test_resnet", "model.weights_path=w.pt")
    assert pretrained == (160, "bilinear", half, half)
    assert seen("model=timm", "model.name=test_vit") == (160, "bicubic", None, None)  # one size
    own = seen(
        "model=timm",
        "model.name=test_vit",
        "model.pretrained=true",
        "data.resize=null",
        "data.interpolation=nearest",
        "data.mean=[0.4]",
        "data.std=[0.2]",
    )
    assert own == (None, "nearest", [0.4], [0.2])
    assert seen("model=torchvision", "model.name=vit_b_16")[:2] == (224, "bilinear")
    imagenet = seen("model=torchvision", "model.name=resnet18", "model.pretrained=true")
    assert imagenet == (224, "bilinear", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert seen("model=resnet18", "model.pretrained=true") == (None, "bilinear", None, None)
    assert seen("model=cnn") == (None, "bilinear", None, None)


@pytest.fixture(scope="module")
def mnist_vit_run(tmp_path_factory) -> Path:
    """test_vit (160 px only, bicubic, mean/std 0.5) from a weights file, one epoch on a small
    MNIST written in torchvision's format: grey 28 px digits resized on the device."""
    from tests.fake_data import write_mnist

    folder = tmp_path_factory.mktemp("mnist")
    write_mnist(folder / "data", n_train=40, n_test=12)
    torch.save(timm_state("test_vit"), folder / "vit.pt")
    cfg = compose_config(
        "data=mnist",
        f"data.root={folder / 'data'}",
        "data.download=false",
        "data.batch_size=12",
        "model=timm",
        "model.name=test_vit",
        f"model.weights_path={folder / 'vit.pt'}",
        "trainer=debug",
        "trainer.max_epochs=1",
        "trainer.report_images=false",
    )
    cli.run(cfg, str(folder / "run"))
    return folder / "run"


def test_an_in_memory_set_is_resized_and_normalised_for_the_model_in_eval_predict_and_export(
    mnist_vit_run, tmp_path
):
    import onnxruntime
    from omegaconf import OmegaConf

    from nntrain.commands.export import export

    run = load_run(mnist_vit_run)
    spec = run.inputs
    assert (spec["size"], spec["interpolation"], spec["channels"]) == ([160, 160], "bicubic", 1)
    assert spec["mean"] == [127.5] and spec["std"] == [127.5]  # 0.5 of 0..255, grey: one channel
    data = build(run.config.data, "data")  # as nntrain-eval rebuilds it
    images, _ = next(iter(data.test_loader()))
    assert images.shape[1:] == (1, 160, 160)
    # predict: a test image saved as PNG becomes exactly the batch evaluation scored
    stored = data.splits["test"].inputs[:3]
    files = []
    for i, image in enumerate(stored):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image[0].numpy()).save(files[-1])
    for file, image in zip(files, images, strict=False):
        torch.testing.assert_close(load_image(file, spec), image, atol=1e-5, rtol=0)
    model = build_model(run)
    onnx_file = export(
        OmegaConf.create({"ckpt": str(mnist_vit_run), "format": "onnx", "output": str(tmp_path)})
    )[0]
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": images[:3].numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(logits), model(images[:3]), atol=1e-4, rtol=1e-4)
    done = run_command("nntrain-eval", f"ckpt={mnist_vit_run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    scored = json.loads((mnist_vit_run / "eval_test.json").read_text())
    assert scored["test/acc"] == pytest.approx(read_metrics(mnist_vit_run)["test/acc"])


def test_images_too_small_for_a_model_say_what_to_set():
    with pytest.raises(UserError) as caught:
        TimmModel((1, 8, 8), 3, name="test_vit")
    assert str(caught.value).endswith(
        "; set data.image_size=160 (data=imagefolder) or data.resize=160 (data=mnist, "
        "fashion_mnist, cifar10, cifar100), its pretrained size."
    )


def test_a_run_saved_before_the_data_config_keys_resumes_as_the_same_run():
    from nntrain.launch.resume import config_differences

    current = {"data": {"interpolation": "bilinear", "crop_fraction": 0.875, "mean": None}}
    current["data"]["std"] = None
    assert config_differences({"data": {}}, current) == []
    current["data"]["interpolation"] = "bicubic"
    assert config_differences({"data": {}}, current) == [
        "data.interpolation (run: absent, now: 'bicubic')"
    ]


# --- weights: from a file, from the library's cache; the head is replaced -----------------------


def assert_backbone_is(model: TimmModel, state: dict[str, torch.Tensor], classifier: str) -> None:
    loaded = model.backbone.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_path_loads_every_tensor_but_the_classifier(suffix, tmp_path):
    state = timm_state("test_resnet")
    file = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(file))
    else:
        torch.save({"state_dict": state}, file)  # as timm's train.py saves it
    model = TimmModel((3, 32, 32), 4, name="test_resnet", weights_path=str(file))
    assert_backbone_is(model, state, "fc")
    assert model.pretrained_backbone and model.head.out_features == 4
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_an_nntrain_runs_checkpoint_loads_as_weights(timm_run):
    checkpoint = timm_run / "checkpoints" / "best.pt"
    model = TimmModel((3, 32, 32), 5, name="test_vit", weights_path=str(checkpoint))
    trained = build_model(load_run(timm_run))
    for key, value in trained.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    assert model.head.out_features == 5  # the new data's classes, not the run's 3


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache (HF_HOME) for this test, nothing reachable."""
    import huggingface_hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(
        "nntrain.models.timm_backbone.unreachable_reason", lambda url: "offline (test)"
    )
    return tmp_path / "hf" / "hub"


def put_in_hf_cache(cache: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """state as repo's model.safetensors, laid out as huggingface_hub caches a download:
    models--<org>--<name>/refs/main holds the commit, snapshots/<commit>/ the file."""
    from safetensors.torch import save_file

    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file(state, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"


def test_pretrained_timm_weights_come_from_the_hugging_face_cache(hf_cache):
    with pytest.raises(UserError) as missing:
        TimmModel((3, 32, 32), 3, name="test_resnet", pretrained=True)
    assert str(missing.value).startswith(
        "the pretrained weights of timm's test_resnet are not in the local cache (looked for "
        f"timm/test_resnet.r160_in1k (model.safetensors or pytorch_model.bin) in {hf_cache}) "
        "and could not be downloaded (offline (test)); "
    )
    state = timm_state("test_resnet", seed=3)
    file = put_in_hf_cache(hf_cache, "timm/test_resnet.r160_in1k", state)
    model = TimmModel((3, 32, 32), 3, name="test_resnet", pretrained=True)
    assert_backbone_is(model, state, "fc")
    assert model.head.out_features == 3 and model.pretrained_backbone
    assert file.is_file()


def test_pretrained_torchvision_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        "nntrain.models.torchvision_backbone.unreachable_reason", lambda url: "offline (test)"
    )
    with pytest.raises(UserError) as missing:
        TorchvisionModel((3, 32, 32), 3, name="mobilenet_v3_small", pretrained=True)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert f"are not in {checkpoints} and could not be downloaded (offline (test))" in str(
        missing.value
    )
    torch.manual_seed(5)
    state = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / "mobilenet_v3_small-047dcff4.pth")
    model = TorchvisionModel((3, 32, 32), 3, name="mobilenet_v3_small", pretrained=True)
    loaded = model.backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("classifier.3."):  # the 1000-class Linear, replaced by the head
            assert torch.equal(loaded[key], value), key
    assert "classifier.3.weight" not in loaded and model.head.out_features == 3


def test_grayscale_images_get_the_rgb_stem_summed(tmp_path):
    """One input channel: the pretrained stem's weights summed over RGB, which gives exactly
    its output on the gray image repeated to three channels (timm and torchvision alike)."""
    import torchvision
    from safetensors.torch import save_file

    state = timm_state("test_resnet")
    torch.save(state, tmp_path / "timm.pt")
    gray = TimmModel((1, 32, 32), 3, name="test_resnet", weights_path=str(tmp_path / "timm.pt"))
    stem = state["conv1.0.weight"].sum(dim=1, keepdim=True)
    assert torch.equal(gray.backbone.state_dict()["conv1.0.weight"], stem)
    torch.manual_seed(4)
    rgb = torchvision.models.mobilenet_v3_small(weights=None)
    save_file(rgb.state_dict(), str(tmp_path / "tv.safetensors"))
    model = TorchvisionModel(
        (1, 32, 32), 3, name="mobilenet_v3_small", weights_path=str(tmp_path / "tv.safetensors")
    )
    assert model.head.out_features == 3 and model.pretrained_backbone
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():  # the same features as the RGB model on the repeated gray image
        rgb.classifier[3] = torch.nn.Identity()
        torch.testing.assert_close(
            model.eval().backbone(image), rgb.eval()(image.expand(-1, 3, -1, -1)), atol=1e-5, rtol=0
        )


def test_a_wrong_architectures_weights_are_one_sentence(tmp_path):
    file = tmp_path / "convnext.pt"
    torch.save(timm_state("test_convnext"), file)
    with pytest.raises(UserError) as caught:
        TimmModel((3, 32, 32), 3, name="test_resnet", weights_path=str(file))
    message = str(caught.value)
    assert message.startswith(f"the weights from {file} do not fit timm's test_resnet (")
    assert "missing tensors such as conv1.0.weight" in message and "\n" not in message


# --- fine-tuning: freezing, the backbone's lr, layer decay, weight decay, drop path -------------


def test_freeze_unfreeze_and_the_backbone_lr_scale(tmp_path):
    file = tmp_path / "w.pt"
    torch.save(timm_state("test_efficientnet"), file)
    model = TimmModel(
        (3, 32, 32),
        3,
        name="test_efficientnet",
        weights_path=str(file),
        freeze_backbone=True,
        unfreeze_at_epoch=2,
        backbone_lr_scale=0.1,
    )
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert not model.backbone.training and model.head.training  # frozen BatchNorm statistics
    groups = {g["name"]: g for g in param_groups(model, lr=1e-3)}
    assert groups["backbone_decay"]["lr"] == pytest.approx(1e-4)
    assert "lr" not in groups["decay"]  # the head at optimizer.lr
    head = {id(p) for p in model.head.parameters()}
    assert head == {id(p) for g in ("decay", "no_decay") for p in groups[g]["params"]}
    model.on_epoch_start(0)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.on_epoch_start(1)  # the second epoch: unfrozen
    assert all(p.requires_grad for p in model.parameters()) and model.backbone.training


def test_a_torchvision_backbone_freezes_and_trains_at_its_lr_scale(tmp_path):
    import torchvision

    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "w.pt")
    model = TorchvisionModel(
        (3, 32, 32),
        3,
        name="mobilenet_v3_small",
        weights_path=str(tmp_path / "w.pt"),
        freeze_backbone=True,
        unfreeze_at_epoch=2,
        backbone_lr_scale=0.2,
    )
    assert not any(p.requires_grad for p in model.backbone.parameters())
    groups = {g["name"]: g for g in param_groups(model, lr=1e-3)}
    assert groups["backbone_decay"]["lr"] == pytest.approx(2e-4)
    model.on_epoch_start(1)
    assert all(p.requires_grad for p in model.parameters())


def test_layer_decay_gives_each_parameter_timms_lr_scale_and_weight_decay():
    from timm.optim import param_groups_layer_decay

    torch.manual_seed(0)
    ours = TimmModel((3, 32, 32), 3, name="test_vit")
    reference = timm.create_model("test_vit", num_classes=3, img_size=32)
    expected = {}
    # as timm's create_optimizer_v2 calls it: the model's own no-weight-decay names
    groups = param_groups_layer_decay(
        reference, 0.05, no_weight_decay_list=reference.no_weight_decay(), layer_decay=0.75
    )
    for group in groups:
        for param in group["params"]:
            name = next(n for n, p in reference.named_parameters() if p is param)
            expected[name] = (group["lr_scale"], group["weight_decay"] > 0)
    opt = build_optimizer(
        build(
            compose_config("+optimizer.layer_decay=0.75", "optimizer.lr=0.01").optimizer,
            "optimizer",
        ),
        ours,
    )
    found = {}
    for group in opt.param_groups:
        for param in group["params"]:
            name = next(n for n, p in ours.named_parameters() if p is param)
            name = name.removeprefix("backbone.")
            found[name] = (pytest.approx(group["lr"] / 0.01), group["weight_decay"] > 0)
    assert found == expected
    assert min(scale for scale, _ in expected.values()) == pytest.approx(0.75**7)


def test_layer_decay_on_a_model_without_layers_is_one_sentence():
    model = TorchvisionModel((3, 32, 32), 3, name="mobilenet_v3_small")
    with pytest.raises(UserError) as caught:
        param_groups(model, lr=1e-3, layer_decay=0.75)
    assert str(caught.value) == (
        "optimizer.layer_decay needs a model that says which layer each parameter is in "
        "(model=timm does); TorchvisionModel does not, so remove optimizer.layer_decay."
    )


def test_no_weight_decay_on_norms_biases_and_a_vits_position_embedding():
    model = TimmModel((3, 32, 32), 3, name="test_vit")
    groups = {g["name"]: g for g in param_groups(model, lr=1e-3)}
    plain = {id(p) for p in groups["no_decay"]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in plain}
    assert {
        "backbone.pos_embed",
        "backbone.cls_token",
        "backbone.norm.weight",
        "head.bias",
    } <= names
    assert all(p.ndim >= 2 for p in groups["decay"]["params"])


def test_drop_path_rate_reaches_the_models_blocks():
    model = TimmModel((3, 32, 32), 3, name="test_vit", drop_path_rate=0.2)
    # timm's linear rule over depth: none in the first block (an Identity), 0.2 in the last
    rates = [getattr(block.drop_path1, "drop_prob", 0.0) for block in model.backbone.blocks]
    assert rates[-1] == pytest.approx(0.2) and rates[0] == 0
    with pytest.raises(UserError, match="has no stochastic depth"):
        TorchvisionModel((3, 32, 32), 3, name="resnet18", drop_path_rate=0.1)


# --- mistakes: one sentence each ---------------------------------------------------------------


def test_unknown_names_get_the_closest_ones():
    with pytest.raises(UserError) as caught:
        TimmModel((3, 32, 32), 3, name="convnxt_tiny")
    assert str(caught.value).startswith(
        "model.name=convnxt_tiny is not a timm model; the closest names are convnext_tiny, "
    )
    with pytest.raises(UserError) as caught:
        TorchvisionModel((3, 32, 32), 3, name="mobilenet_v3_smal")
    assert str(caught.value).startswith(
        "model.name=mobilenet_v3_smal is not a torchvision model; the closest names are "
        "mobilenet_v3_small (python -c "
    )


def test_without_timm_one_sentence_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(UserError) as caught:
        TimmModel((3, 32, 32), 3, name="test_resnet")
    assert str(caught.value) == (
        "model=timm needs the timm library, which is not installed here; install it with: "
        "pip install 'nntrain[models]'."
    )


def test_the_cli_says_a_bad_name_in_one_line_and_exits_1(tmp_path):
    done = run_nntrain("model=timm", "model.name=resnet_50", "data=digits", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "model.name=resnet_50 is not a timm model; the closest names are" in done.stderr


# --- everything else: EMA, MixUp, channels_last, resume, predict, export ------------------------


def test_ema_mixup_channels_last_and_resume_work_with_a_timm_model(photos, tmp_path):
    cfg = train_config(
        photos,
        "model=timm",
        "model.name=test_resnet",
        "data.image_size=32",
        "trainer.max_epochs=1",
        "trainer.ema.decay=0.9",
        "data.mixup_alpha=0.2",
        "data.cutmix_alpha=1.0",
        "trainer.channels_last=true",
        "+optimizer.layer_decay=0.8",
    )
    cli.run(cfg, str(tmp_path / "run"))
    resumed = run_nntrain(f"resume={tmp_path / 'run'}", "trainer.max_epochs=2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert read_metrics(tmp_path / "run")["epochs_run"] == 2


def test_bf16_and_compile_train_a_timm_model(photos, tmp_path):
    """Mixed precision (bf16: the CPU's; fp16 and CUDA graphs need a GPU) and torch.compile."""
    cfg = train_config(
        photos,
        "model=timm",
        "model.name=test_resnet",
        "data.image_size=32",
        "trainer.max_epochs=1",
        "trainer.precision=bf16",
        "trainer.compile=true",
    )
    cli.run(cfg, str(tmp_path / "run"))
    assert read_metrics(tmp_path / "run")["epochs_run"] == 1


def test_the_captured_steps_auto_rule_counts_a_backbones_parameters():
    """trainer.cuda_graphs=auto records the step of a model under 5 M parameters on CUDA (the
    rule is checked here without a GPU: only the decision, not the recording)."""
    from nntrain.training.compiled_step import captured_mode

    cuda = torch.device("cuda")
    small = TimmModel((3, 32, 32), 3, name="test_resnet")
    large = TorchvisionModel((3, 32, 32), 3, name="resnet18")  # 11 M parameters
    for model, expected in ((small, "graph"), (large, None)):
        optimizer = torch.optim.AdamW(param_groups(model, lr=1e-3, layer_decay=None))
        assert captured_mode("auto", cuda, model, None, 1, optimizer) == expected
    layered = torch.optim.AdamW(param_groups(small, lr=1e-3, layer_decay=0.75))
    assert captured_mode("auto", cuda, small, None, 1, layered) == "graph"


def run_command(program: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """An installed console script (nntrain-predict, ...), as a user runs it."""
    script = Path(sys.executable).with_name(program)
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


def test_the_hparams_record_names_the_model(timm_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(timm_run))
    events.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["model.name"].string_value == "test_vit"
    assert start.hparams["model"].string_value == "TimmModel"


def test_onnx_export_agrees_with_predict_on_a_folder(timm_run, tmp_path):
    import onnxruntime

    write_folder(tmp_path / "new", per_class=2, seed=9)
    done = run_command("nntrain-predict", f"ckpt={timm_run}", "inputs=new", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "predictions.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 6
    done = run_command(
        "nntrain-export", f"ckpt={timm_run}", "format=onnx", "output=x", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    info = json.loads((tmp_path / "x" / "model.json").read_text())
    assert info["preprocessing"]["interpolation"] == "bicubic"
    assert info["model"]["name"] == "test_vit"
    run = load_run(timm_run)
    data = build(run.config.data, "data")  # its evaluation transform
    files = [tmp_path / "new" / row["input"] for row in rows]
    images = torch.stack([data.eval_transform(load_rgb(file)) for file in files])
    for file, image in zip(files, images, strict=True):  # predict preprocesses as evaluation
        torch.testing.assert_close(load_image(file, run.inputs), image, atol=1e-5, rtol=0)
    session = onnxruntime.InferenceSession(
        str(tmp_path / "x" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (logits,) = session.run(["logits"], {"input": images.numpy()})
    probabilities = torch.tensor(logits).softmax(1)
    for row, image_probabilities in zip(rows, probabilities, strict=True):
        # the class predict chose has the probability it printed, and none is more likely
        # (compared so, a near tie between two classes cannot flip the test)
        chosen = float(image_probabilities[data.class_names.index(row["predicted"])])
        assert chosen == pytest.approx(float(row["probability"]), abs=1e-4)
        assert float(image_probabilities.max()) <= chosen + 1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_and_safetensors_exports_are_the_model(timm_run, tmp_path):
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    from nntrain.commands.export import export

    def exported(fmt: str) -> Path:
        settings = {"ckpt": str(timm_run), "format": fmt, "output": str(tmp_path)}
        return export(OmegaConf.create(settings))[0]

    model = build_model(load_run(timm_run))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    traced = torch.jit.load(str(exported("torchscript")))
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)
    weights = load_file(str(exported("safetensors")))
    # the weights load into a model built from its config: timm's body and the head
    rebuilt = TimmModel(
        (3, 32, 32), 3, name="test_vit", weights_path=str(tmp_path / "model.safetensors")
    )
    rebuilt.head.load_state_dict({"weight": weights["head.weight"], "bias": weights["head.bias"]})
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x), rtol=1e-6, atol=1e-6)


def test_ddp_unfreezing_a_timm_backbone_keeps_the_ranks_identical(tmp_path):
    """torchrun, 2 CPU ranks: a frozen pretrained backbone, unfrozen at the second epoch."""
    torch.save(timm_state("test_resnet"), tmp_path / "w.pt")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    overrides = ["model=timm", "model.name=test_resnet", "model.weights_path=w.pt"]
    overrides += ["model.freeze_backbone=true", "model.unfreeze_at_epoch=2", "data=digits"]
    done = subprocess.run(
        [*torchrun, "-m", "nntrain", *overrides, "trainer=debug", "trainer.report_images=false"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (log,) = [path.read_text() for path in (tmp_path / "outputs").glob("*/*/train.log")]
    assert "backbone unfrozen: trainable 373,370 / total 373,370 parameters" in log
    assert "weights identical on all 2 ranks" in log
