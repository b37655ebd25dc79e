import pytest
import torch

from nntrain.data.digits import Digits
from nntrain.data.in_memory import TensorLoader, split_indices
from nntrain.data.settings import DigitsSettings
from nntrain.data.tabular import Moons, Subscription, Xor
from nntrain.errors import UserError
from nntrain.schema import checked


def test_digits_are_the_real_sklearn_set_as_uint8_images():
    data = Digits(seed=0)
    sizes = data.split_sizes()
    assert sum(sizes.values()) == 1797
    assert sizes == {"train": 1258, "val": 180, "test": 359}
    train = data.splits["train"]
    assert train.inputs.dtype == torch.uint8 and train.inputs.shape[1:] == (1, 8, 8)
    assert int(train.inputs.max()) == 16
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    x, _ = next(iter(data.train_loader()))
    assert x.dtype == torch.float32 and x.shape == (64, 1, 8, 8)
    # normalised with the training split's statistics
    whole = data.transform(train.inputs)
    assert abs(float(whole.mean())) < 1e-4 and abs(float(whole.std()) - 1) < 1e-4


def test_splits_are_disjoint_and_the_test_split_does_not_depend_on_the_seed():
    train_a, val_a, test_a = split_indices(1000, 0.1, 0.2, seed=1)
    _, val_b, test_b = split_indices(1000, 0.1, 0.2, seed=2)
    assert torch.equal(test_a, test_b)
    assert not torch.equal(val_a, val_b)
    everything = torch.cat([train_a, val_a, test_a])
    assert len(everything) == 1000 and len(set(everything.tolist())) == 1000


def test_loader_order_is_a_function_of_seed_and_epoch():
    inputs = torch.arange(100).float().unsqueeze(1)
    targets = torch.arange(100)

    def order(seed: int, epoch: int) -> list[int]:
        loader = TensorLoader(
            inputs, targets, batch_size=10, shuffle=True, seed=seed, drop_last=True
        )
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader]).tolist()

    assert order(1, 3) == order(1, 3)
    assert order(1, 3) != order(1, 4)
    assert order(1, 3) != order(2, 3)
    assert sorted(order(1, 3)) == list(range(100))


def test_training_loader_drops_only_a_partial_last_batch():
    inputs, targets = torch.zeros(25, 1), torch.zeros(25, dtype=torch.long)
    assert len(TensorLoader(inputs, targets, 10, shuffle=True, drop_last=True)) == 2
    assert [len(y) for _, y in TensorLoader(inputs, targets, 10)] == [10, 10, 5]


def test_subscription_follows_the_tutorial_rule_and_standardises_on_train_only():
    data = Subscription(seed=0)
    assert data.feature_names == ["age", "income", "browsing_time", "previous_purchases"]
    assert sum(data.split_sizes().values()) == 500
    for split in data.splits.values():
        raw = split.inputs * data.feature_std + data.feature_mean
        age, income, browsing = raw[:, 0], raw[:, 1], raw[:, 2]
        rule = (income > 50_000) & (browsing > 10) & (age < 50)
        assert torch.equal(rule.long(), split.targets)
    train = data.splits["train"].inputs
    assert torch.allclose(train.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(train.std(0), torch.ones(4), atol=1e-5)
    assert not torch.allclose(data.splits["test"].inputs.mean(0), torch.zeros(4), atol=1e-3)


@pytest.mark.parametrize("cls", [Moons, Xor])
def test_two_feature_sets_are_fixed_data_with_two_classes(cls):
    a, b = cls(seed=1), cls(seed=2)
    assert a.input_shape == (2,) and a.num_classes == 2
    # the same raw points; only the standardisation (training split's statistics) follows the seed
    raw_a = a.splits["test"].inputs * a.feature_std + a.feature_mean
    raw_b = b.splits["test"].inputs * b.feature_std + b.feature_mean
    assert torch.allclose(raw_a, raw_b, atol=1e-5)
    assert not torch.equal(a.splits["val"].inputs, b.splits["val"].inputs)
    counts = torch.bincount(torch.cat([s.targets for s in a.splits.values()]))
    assert counts.min() > 0.4 * counts.sum()  # roughly balanced


def test_xor_labels_are_the_xor_of_the_nearest_corner():
    data = Xor(noise=0.0)
    for split in data.splits.values():
        raw = split.inputs * data.feature_std + data.feature_mean
        corner = raw.round().long()
        assert torch.equal(corner[:, 0] ^ corner[:, 1], split.targets)


def test_bad_fraction_is_one_clear_sentence():
    with pytest.raises(UserError) as error:
        checked(DigitsSettings, {"val_fraction": 1.5})
    assert str(error.value) == (
        "data.val_fraction must be a number between 0 and 1 (exclusive), or 0 (no validation "
        "split), got 1.5; for example data.val_fraction=0.1."
    )
    with pytest.raises(UserError, match="leave no training samples"):
        Moons(val_fraction=0.5, test_fraction=0.5)


def test_a_resumed_epoch_yields_the_remaining_batches_of_the_same_order():
    inputs, targets = torch.arange(50).float().unsqueeze(1), torch.arange(50)
    loader = TensorLoader(inputs, targets, 8, shuffle=True, seed=5, drop_last=True)
    loader.set_epoch(2)
    full = [y for _, y in loader]
    loader.set_epoch(2, start_batch=3)
    rest = [y for _, y in loader]
    assert len(rest) == len(full) - 3 and all(
        torch.equal(a, b) for a, b in zip(full[3:], rest, strict=True)
    )


def test_digits_read_without_sklearn_equal_sklearns_load_digits():
    from sklearn.datasets import load_digits

    from nntrain.data.digits import read_bundled_digits

    table, reference = read_bundled_digits(), load_digits()
    assert table.shape == (1797, 65)
    assert (table[:, :-1].reshape(-1, 8, 8) == reference.images).all()
    assert (table[:, -1] == reference.target).all()


def test_ranks_take_disjoint_equal_shards_of_each_epoch():
    inputs, targets = torch.arange(101).float().unsqueeze(1), torch.arange(101)
    shards = []
    for rank in range(2):
        loader = TensorLoader(inputs, targets, 10, shuffle=True, seed=3, drop_last=True)
        loader.shard(rank, 2)
        loader.set_epoch(4)
        shards.append(torch.cat([y for _, y in loader]).tolist())
        assert len(loader) == 5  # 50 samples per rank, 5 full batches
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0]) & set(shards[1])
