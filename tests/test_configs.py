"""The config tree itself: every option of every group composes and builds as written.

Options are discovered from the files in configs/<group>/, so a new option is tested the day it
is added. Each node is built with hydra.utils.instantiate exactly as the config has it; only
where data lives changes (fake files in the real on-disk formats, no download).
"""

from __future__ import annotations

import importlib.resources
import inspect
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
import torchvision.datasets.cifar
from hydra import compose, initialize_config_module
from hydra.errors import MissingConfigException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from nntrain.data.csv_table import CsvTable
from nntrain.data.image_folder import ImageFolderData
from nntrain.data.torchvision_sets import TorchvisionData
from nntrain.errors import UserError
from nntrain.models.mlp import MLP
from nntrain.optim.optimizers import param_groups
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config
from tests.fake_data import write_cifar, write_mnist
from tests.test_folder import make_split

CONFIGS = Path(str(importlib.resources.files("nntrain.configs")))


def options(group: str) -> list[str]:
    """The options of a config group: the YAML files in configs/<group>/ and the options
    declared by a schema (stored in Hydra's ConfigStore by nntrain.configs)."""
    from nntrain.configs import SCHEMA_OPTIONS

    files = {path.stem for path in (CONFIGS / group).glob("*.yaml")}
    return sorted(files | {name for g, name, _ in SCHEMA_OPTIONS if g == group})


def test_the_options_are_discovered():
    """Guards the parametrisations below: an empty list would test nothing and pass."""
    assert {"mlp", "cnn"} <= set(options("model")) and "digits" in options("data")
    for group in ("optimizer", "scheduler", "trainer", "experiment", "hparams_search"):
        assert options(group), group


# --- data: offline sets as written, the others on fake files in their real formats ---------

FAKE_TORCHVISION_FILES = {  # dataset -> writes its files under root; add one for a new set
    "mnist": lambda root: write_mnist(root, folder="MNIST"),
    "fashion_mnist": lambda root: write_mnist(root, folder="FashionMNIST"),
    "cifar10": lambda root: write_cifar(root, classes=10),
    "cifar100": lambda root: write_cifar(root, classes=100),
}


def fake_data_overrides(data: DictConfig, root: Path, monkeypatch) -> list[str]:
    """The overrides that point a data node that reads files at fake ones made under root (none
    for the data sets that are generated or bundled)."""
    target = get_class(data._target_)
    if issubclass(target, TorchvisionData):
        FAKE_TORCHVISION_FILES[data.dataset](root)
        # Fake CIFAR files cannot match torchvision's md5 sums: only that check is replaced.
        monkeypatch.setattr(
            torchvision.datasets.cifar,
            "check_integrity",
            lambda path, md5=None: os.path.isfile(path),
        )
        return [f"data.root={root}", "data.download=false"]
    if issubclass(target, ImageFolderData):
        make_split(root / "train", per_class=4)
        return [f"data.root={root}", "data.num_workers=0", "data.image_size=16"]
    if issubclass(target, CsvTable):  # a small table with a numeric and a text column
        root.mkdir(parents=True)
        rows = [f"{i},{'ab'[i % 2]},{'no' if i % 3 else 'yes'}" for i in range(40)]
        (root / "table.csv").write_text("\n".join(["size,kind,label", *rows]) + "\n")
        return [f"data.path={root / 'table.csv'}", "data.target=label"]
    return []


def compose_with_fake_data(tmp_path: Path, monkeypatch, *overrides: str) -> DictConfig:
    data = compose_config(*overrides).data
    return compose_config(*overrides, *fake_data_overrides(data, tmp_path / "data", monkeypatch))


def build_data(cfg: DictConfig) -> Any:
    """The data node as written; set up on the CPU and checked to yield batches."""
    data = instantiate(cfg.data)
    assert isinstance(data.num_classes, int) and data.num_classes >= 2
    assert len(data.class_names) == data.num_classes
    data.setup(torch.device("cpu"))
    inputs, targets = next(iter(data.train_loader()))
    assert tuple(inputs.shape[1:]) == tuple(data.input_shape) and inputs.dtype == torch.float32
    assert targets.dtype == torch.long and len(targets) == len(inputs)
    return data


@pytest.mark.parametrize("option", options("data"))
def test_every_data_option_builds_and_yields_batches(option, tmp_path, monkeypatch):
    build_data(compose_with_fake_data(tmp_path, monkeypatch, f"data={option}"))


# data=mnist, fashion_mnist, cifar10 and cifar100 as they were when each was a whole file (before
# they shared one schema, nntrain.data.settings.TorchvisionSettings): the schema must not change
# what they compose to. Since then: the model's data config (issue 31) is the default of resize,
# interpolation, mean and std (null, bilinear, null, null without one, as before).
TORCHVISION_DATA = {
    "_target_": "nntrain.data.torchvision_sets.TorchvisionData",
    "dataset": None,  # the option's name
    "root": None,
    "download": True,
    "batch_size": 128,
    "val_fraction": 0.1,
    "augment": None,
    "crop_padding": 4,
    "padding_mode": "constant",
    "imagenet_normalization": (
        "${nntrain.starts_pretrained:${oc.select:model.pretrained,false},"
        "${oc.select:model.weights_path,null}}"
    ),
    "resize": "${nntrain.model_data:resize,null}",
    "interpolation": "${nntrain.model_data:interpolation,bilinear}",
    "mean": "${nntrain.model_data:mean,null}",
    "std": "${nntrain.model_data:std,null}",
    "class_weights": None,
    "sampler": None,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "mix_switch_prob": 0.5,
    "mix_prob": 1.0,
    "seed": "${seed}",
}


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_torchvision_sets_compose_to_the_shared_keys_and_their_own_dataset(dataset):
    data = OmegaConf.to_container(compose_config(f"data={dataset}").data)
    assert data == {**TORCHVISION_DATA, "dataset": dataset}
    # The option's own keys lead in --cfg job (nntrain.schema.in_display_order).
    assert list(data)[:3] == ["_target_", "dataset", "root"]
    overridden = compose_config(f"data={dataset}", "data.batch_size=256", "data.augment=true").data
    assert (overridden.batch_size, overridden.augment, overridden.dataset) == (256, True, dataset)


def test_the_shared_torchvision_base_is_not_a_data_option():
    assert "torchvision_data" not in options("data")
    with pytest.raises(MissingConfigException):
        compose_config("data=torchvision_data")


# --- models: image-shaped inputs for all, tabular ones where the model takes them ------------

IMAGE_SHAPE, TABULAR_SHAPE = (3, 32, 32), (4,)  # CIFAR-10's and data=subscription's


@pytest.mark.parametrize("option", options("model"))
def test_every_model_option_builds_for_the_inputs_it_suits(option):
    model_cfg = compose_config(f"model={option}").model
    image_model = instantiate(model_cfg, input_shape=IMAGE_SHAPE, num_classes=10).eval()
    assert image_model(torch.randn(2, *IMAGE_SHAPE)).shape == (2, 10)
    try:
        tabular_model = instantiate(model_cfg, input_shape=TABULAR_SHAPE, num_classes=2).eval()
    except Exception as error:  # an image-only model says so, and names the fix
        cause = error.__cause__ or error
        assert isinstance(cause, UserError), cause
        assert str(cause).startswith(f"model={option} needs image"), cause
    else:
        assert tabular_model(torch.randn(2, *TABULAR_SHAPE)).shape == (2, 2)


# --- optimizers: pure torch partials ----------------------------------------------------------


def check_torch_arguments(optimizer: DictConfig) -> None:
    """Every key of the node (besides _target_ and _partial_) is an argument of its target."""
    target = get_class(optimizer._target_)
    assert issubclass(target, torch.optim.Optimizer), target
    accepted = set(inspect.signature(target).parameters) - {"params"}
    keys = set(optimizer) - {"_target_", "_partial_"}
    assert keys <= accepted, f"not arguments of {target.__name__}: {sorted(keys - accepted)}"
    assert optimizer._partial_ is True


@pytest.mark.parametrize("option", options("optimizer"))
def test_every_optimizer_option_is_a_torch_partial_of_its_own_arguments(option):
    cfg = compose_config(f"optimizer={option}")
    check_torch_arguments(cfg.optimizer)
    model = MLP((4,), 2, hidden=[8])
    optimizer = instantiate(cfg.optimizer)(param_groups(model, cfg.optimizer.lr))
    assert [g["name"] for g in optimizer.param_groups] == ["decay", "no_decay"]
    torch.nn.functional.cross_entropy(
        model(torch.randn(4, 4)), torch.tensor([0, 1, 0, 1])
    ).backward()
    optimizer.step()


# --- schedulers: partials of (optimizer, total_steps, steps_per_epoch) ------------------------


def check_schedule(scheduler: Any, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """Every lr of a run stays finite and within [0, the group's own lr] (initial_lr: the
    scheduler has already applied its first factor to lr; onecycle starts below its max_lr)."""
    for _ in range(total_steps):
        for group in optimizer.param_groups:
            peak = group.get("max_lr", group["initial_lr"])
            assert math.isfinite(group["lr"]) and 0 <= group["lr"] <= peak * (1 + 1e-12)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("option", options("scheduler"))
def test_every_scheduler_option_drives_an_optimizer_for_a_whole_run(option):
    cfg = compose_config(f"scheduler={option}")
    # With momentum: onecycle cycles it (and refuses an optimizer without).
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=50, steps_per_epoch=5)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    if option == "plateau":  # stepped per epoch with the monitored figure (test_schedules.py)
        for _ in range(10):
            scheduler.step(1.0)  # never improves: the lr only goes down
        assert 0 < optimizer.param_groups[0]["lr"] < 0.1
        return
    check_schedule(scheduler, optimizer, total_steps=50)


# --- trainer ------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", options("trainer"))
def test_every_trainer_option_builds(option):
    trainer = instantiate(compose_config(f"trainer={option}").trainer)
    assert isinstance(trainer, Trainer)


# --- experiments: every node of the preset, built together ------------------------------------


@pytest.fixture
def fake_pretrained_weights(tmp_path, monkeypatch) -> None:
    """A random resnet18 state dict as the torch hub's cached ImageNet weights (no download)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, checkpoints / "resnet18-f37072fd.pth")


@pytest.mark.parametrize("option", options("experiment"))
def test_every_experiment_builds_every_node(option, tmp_path, monkeypatch, request):
    cfg = compose_with_fake_data(tmp_path, monkeypatch, f"experiment={option}")
    if cfg.model.get("pretrained"):
        request.getfixturevalue("fake_pretrained_weights")
    data = build_data(cfg)
    model = instantiate(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes)
    inputs, _ = next(iter(data.test_loader()))
    assert model.eval()(inputs[:2]).shape == (2, data.num_classes)
    check_torch_arguments(cfg.optimizer)
    optimizer = instantiate(cfg.optimizer)(param_groups(model, cfg.optimizer.lr))
    scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=20, steps_per_epoch=4)
    check_schedule(scheduler, optimizer, total_steps=20)
    assert isinstance(instantiate(cfg.trainer), Trainer)


# --- hyperparameter searches --------------------------------------------------------------------


@pytest.mark.parametrize("option", options("hparams_search"))
def test_every_hparams_search_builds_its_sampler_and_searches_existing_keys(option):
    pytest.importorskip("optuna")  # nntrain[sweep]
    with initialize_config_module("nntrain.configs", version_base="1.3"):
        cfg = compose("train", [f"hparams_search={option}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert get_class(sweeper._target_).__name__.endswith("Sweeper")
    sampler = instantiate(sweeper.sampler)
    assert type(sampler).__module__.startswith("optuna.samplers")
    for key in sweeper.params:  # e.g. optimizer.lr: a key the composed config has
        assert OmegaConf.select(cfg, key, default="absent") != "absent", key
