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
from nntrain.data.settings import DigitsSettings
from nntrain.errors import UserError
from nntrain.inference.logits import score
from nntrain.models.mlp import MLP
from nntrain.optim.schedules import constant
from nntrain.schema import checked
from nntrain.training.trainer import Trainer
from tests.conftest import compose_config, run_nntrain


class ImbalancedBlobs(InMemoryData):
    """Two overlapping 2-D Gaussian blobs, 95 % of class 0 and 5 % of class 1 (planted)."""

    name = "imbalanced"

    def __init__(self, n: int = 2000, class_weights: object = None, sampler=None) -> None:
        super().__init__(64, 0.2, 0.3, seed=0, class_weights=class_weights, sampler=sampler)
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


def minority_recall(setting, tmp_path, sampler=None) -> tuple[float, torch.Tensor | None]:
    data = ImbalancedBlobs(class_weights=setting, sampler=sampler)
    weights = data.class_weights
    torch.manual_seed(0)
    model = MLP(input_shape=(2,), num_classes=2, hidden=[16], dropout=0.0)
    trainer = Trainer(device="cpu", progress=False, max_epochs=3, report_images=False)
    optimizer = partial(torch.optim.AdamW, lr=1e-2)
    run_dir = tmp_path / f"{setting}-{sampler}"
    trainer.fit(model, data, optimizer, partial(constant), run_dir=run_dir)
    scores = score(model, data.test_loader(), trainer.compute_for(model), gather=True)
    assert scores.outputs is not None and scores.targets is not None
    rare = scores.targets == 1
    return float((scores.outputs[rare].argmax(1) == 1).float().mean()), weights


@pytest.fixture(scope="module")
def plain_recall(tmp_path_factory) -> float:
    """The minority recall without weights or sampler (shared by the two comparisons)."""
    recall, weights = minority_recall(None, tmp_path_factory.mktemp("plain"))
    assert weights is None
    return recall


def test_balanced_weights_raise_the_minority_recall_on_a_planted_95_5_imbalance(
    plain_recall, tmp_path
):
    plain = plain_recall
    balanced, weights = minority_recall("balanced", tmp_path)
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
    cfg = compose_config(f"data={option}", "data.class_weights=balanced", "data.sampler=balanced")
    assert cfg.data.class_weights == "balanced" and cfg.data.sampler == "balanced"
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
    """Their settings (nntrain.data.settings) declare both keys; the class is built from them."""
    from nntrain.commands.schema_check import schemas_of
    from nntrain.schema import fields_of

    schemas = [s for s in schemas_of("data") if fields_of(s)["_target_"].default == target]
    assert schemas and all({"class_weights", "sampler"} <= set(fields_of(s)) for s in schemas)
    assert "settings" in inspect.signature(get_class(target)).parameters


def test_cli_refuses_an_unknown_class_weights_value_in_one_sentence(tmp_path):
    done = run_nntrain("trainer=debug", "data=moons", "data.class_weights=foo", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: data.class_weights must be null (off), balanced, or one weight per class such "
        "as [1.0,5.0], got 'foo'."
    )


def test_the_balanced_sampler_draws_each_class_about_equally_and_reproducibly():
    data = ImbalancedBlobs(sampler="balanced")
    loader = data.train_loader()
    assert data.train_targets().float().mean() < 0.07  # the planted imbalance

    def epoch_targets(epoch: int) -> torch.Tensor:
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader])

    first = epoch_targets(0)
    assert len(first) == len(loader) * 64  # an epoch as long as without the sampler
    assert 0.4 < first.float().mean() < 0.6
    assert torch.equal(epoch_targets(0), first)  # a function of (seed, epoch): exact resume
    assert not torch.equal(epoch_targets(1), first)
    assert data.val_loader().sample_weights is None  # evaluation keeps every sample once


def test_the_image_folder_sampler_draws_the_same_way():
    from nntrain.data.class_weights import balanced_sample_weights
    from nntrain.data.image_folder import EpochSampler

    targets = torch.tensor([0] * 190 + [1] * 10)
    sampler = EpochSampler(200, seed=3, epoch=0, sample_weights=balanced_sample_weights(targets))
    drawn = torch.tensor([index for index, _ in sampler])
    assert len(drawn) == 200 and 0.35 < targets[drawn].float().mean() < 0.65


def test_the_balanced_sampler_raises_the_minority_recall_too(plain_recall, tmp_path):
    sampled, _ = minority_recall(None, tmp_path, sampler="balanced")
    assert sampled > plain_recall + 0.3, (plain_recall, sampled)


def test_bad_sampler_values_are_one_sentence():
    with pytest.raises(UserError) as raised:
        checked(DigitsSettings, {"sampler": "oversample"})
    assert str(raised.value) == (
        "data.sampler must be null (shuffle every sample once per epoch) or balanced (draw every "
        "class equally often), got 'oversample'."
    )
    data = ImbalancedBlobs(n=100, sampler="balanced")
    data.task = "regression"
    with pytest.raises(UserError, match=r"^data.sampler=balanced draws the classes"):
        data.train_loader()


def test_a_run_saved_before_the_keys_existed_still_resumes():
    from nntrain.launch.resume import config_differences

    current = {"data": {"batch_size": 32, "class_weights": None, "sampler": None}, "seed": 1}
    before_the_keys = {"data": {"batch_size": 32}, "seed": 1}
    assert config_differences(before_the_keys, current) == []
    weighted = {"data": {"batch_size": 32, "class_weights": "balanced", "sampler": None}, "seed": 1}
    assert config_differences(before_the_keys, weighted) == [
        "data.class_weights (run: absent, now: 'balanced')"
    ]
