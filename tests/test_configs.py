"""The config tree itself: every option of every group composes and builds as written."""

import pytest
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from tests.conftest import compose_config

# data=mnist, fashion_mnist, cifar10 and cifar100 as they were when each was a whole file (before
# they shared configs/torchvision_data.yaml): the shared base must not change what they compose to.
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
    "imagenet_normalization": "${oc.select:model.pretrained,false}",
    "resize": None,
    "seed": "${seed}",
}


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_torchvision_sets_compose_to_the_shared_keys_and_their_own_dataset(dataset):
    data = OmegaConf.to_container(compose_config(f"data={dataset}").data)
    assert data == {**TORCHVISION_DATA, "dataset": dataset}
    assert list(data) == list(TORCHVISION_DATA)  # the same order in --cfg job and the saved config
    overridden = compose_config(f"data={dataset}", "data.batch_size=256", "data.augment=true").data
    assert (overridden.batch_size, overridden.augment, overridden.dataset) == (256, True, dataset)


def test_the_shared_torchvision_base_is_not_a_data_option():
    with pytest.raises(MissingConfigException):
        compose_config("data=torchvision_data")
