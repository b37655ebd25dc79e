"""data.class_weights: the training loss weighted per class, for imbalanced classes."""

from __future__ import annotations

import inspect
from functools import partial

import numpy as np
import pytest
import torch
from hydra.utils import get_class, instantiate
from sklearn.utils.class_weight import compute_class_weight

from nntrain.data.class_weights import balanced_weights
from nntrain.data.in_memory import InMemoryData
from nntrain.errors import UserError
from nntrain.inference.logits import score
from nntrain.models.mlp import MLP
from nntrain.optim.schedules import constant
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config, run_nntrain


class ImbalancedBlobs(InMemoryData):
    """Two overlapping 2-D Gaussian blobs, 95 % of class 0 and 5 % of class 1 (planted)."""

    name = "imbalanced"

    def __init__(self, n: int = 2000, class_weights: object = None) -> None:
        super().__init__(
            64, val_fraction=0.2, test_fraction=0.3, seed=0, class_weights=class_weights
        )
        gen = torch.Generator().manual_seed(5)
        targets = (torch.rand(n, generator=gen) < 0.05).long()
        inputs = torch.randn(n, 2, generator=gen) + 1.5 * targets[:, None].float()
        self._set_splits(inputs, targets)
        self.num_classes, self.input_shape = 2, (2,)
        self.class_names = ["common", "rare"]


def test_balanced_weights_equal_scikit_learns():
    targets = torch.tensor([0] * 95 + [1] * 5 + [2] * 20)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=targets.numpy())
    assert torch.allclose(balanced_weights(targets, 3), torch.tensor(expected, dtype=torch.float))


def test_a_class_absent_from_training_gets_weight_zero():
    assert balanced_weights(torch.tensor([0, 0, 1]), 3).tolist()[2] == 0.0


def minority_recall(setting, tmp_path) -> tuple[float, torch.Tensor | None]:
    data = ImbalancedBlobs(class_weights=setting)
    weights = data.class_weights
    torch.manual_seed(0)
    model = MLP(input_shape=(2,), num_classes=2, hidden=[16], dropout=0.0)
    trainer = Trainer(device="cpu", progress=False, max_epochs=3, report_images=False)
    optimizer = partial(torch.optim.AdamW, lr=1e-2)
    trainer.fit(model, data, optimizer, partial(constant), run_dir=tmp_path / str(setting))
    scores = score(model, data.test_loader(), trainer.compute_for(model), gather=True)
    assert scores.logits is not None and scores.targets is not None
    rare = scores.targets == 1
    return float((scores.logits[rare].argmax(1) == 1).float().mean()), weights


def test_balanced_weights_raise_the_minority_recall_on_a_planted_95_5_imbalance(tmp_path):
    plain, no_weights = minority_recall(None, tmp_path)
    balanced, weights = minority_recall("balanced", tmp_path)
    assert no_weights is None
    assert weights is not None and weights[1] / weights[0] > 10  # the rare class weighs more
    assert balanced > plain + 0.3, (plain, balanced)


def test_an_explicit_list_is_one_weight_per_class():
    assert ImbalancedBlobs(n=100, class_weights=[1.0, 4]).class_weights.tolist() == [1.0, 4.0]
    with pytest.raises(UserError, match=r"^data.class_weights must list one number >= 0 per class"):
        _ = ImbalancedBlobs(n=100, class_weights=[1.0]).class_weights


def test_a_regression_is_refused_in_one_sentence():
    data = ImbalancedBlobs(n=100, class_weights="balanced")
    data.task = "regression"
    with pytest.raises(UserError) as raised:
        _ = data.class_weights
    assert str(raised.value) == (
        "data.class_weights weighs the classes of a classification, and this data is a "
        "regression; leave data.class_weights null."
    )


@pytest.mark.parametrize("option", ["digits", "moons", "xor", "subscription", "cifar10"])
def test_every_data_config_has_the_key_and_its_class_takes_it(option):
    cfg = compose_config(f"data={option}", "data.class_weights=balanced")
    assert cfg.data.class_weights == "balanced"
    if option != "cifar10":  # (no download in tests: the class's signature is checked below)
        data = instantiate(cfg.data)
        assert data.class_weights is not None and len(data.class_weights) == data.num_classes
        assert torch.allclose(
            data.class_weights, balanced_weights(data.train_targets(), data.num_classes)
        )


@pytest.mark.parametrize(
    "target",
    [
        "nntrain.data.csv_table.CsvTable",
        "nntrain.data.image_folder.ImageFolderData",
        "nntrain.data.torchvision_sets.TorchvisionData",
    ],
)
def test_the_other_data_classes_take_the_key(target):
    assert "class_weights" in inspect.signature(get_class(target)).parameters


def test_cli_refuses_an_unknown_class_weights_value_in_one_sentence(tmp_path):
    done = run_nntrain("trainer=debug", "data=moons", "data.class_weights=foo", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: data.class_weights must be null (off), balanced, or one weight per class such "
        "as [1.0,5.0], got 'foo'."
    )
