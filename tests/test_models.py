import pytest
import torch
from torch import nn

from nntrain.errors import UserError
from nntrain.models.cnn import CNN
from nntrain.models.layers import Dropout
from nntrain.models.mlp import MLP


@pytest.mark.parametrize("shape", [(2,), (4,), (1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_mlp_flattens_any_input(shape):
    model = MLP(shape, num_classes=7, hidden=[16, 8])
    assert model(torch.randn(5, *shape)).shape == (5, 7)


def test_mlp_layers_follow_the_tutorial():
    model = MLP((64,), num_classes=10, hidden=[512, 256, 128], dropout=0.3)
    kinds = [type(m) for m in model.net]
    block = [nn.Linear, nn.BatchNorm1d, nn.ReLU, Dropout]
    assert kinds == [nn.Flatten, *block * 3, nn.Linear]
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (64, 512),
        (512, 256),
        (256, 128),
        (128, 10),
    ]
    assert all(m.p == 0.3 for m in model.net if isinstance(m, nn.Dropout))


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 5, 7)])
def test_cnn_works_for_any_image_size_and_channels(shape):
    model = CNN(shape, num_classes=10).eval()
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_cnn_architecture_follows_the_tutorial():
    model = CNN((3, 32, 32), num_classes=10)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 64, (3, 3)), (64, 64, (3, 3)), (64, 128, (3, 3)),
        (128, 128, (3, 3)), (128, 256, (3, 3)), (256, 256, (3, 3)),
    ]  # fmt: skip
    pools = [i for i, block in enumerate(model.features) if isinstance(block[-1], nn.MaxPool2d)]
    assert pools == [1, 3, 5]
    assert all(isinstance(block[1], nn.BatchNorm2d) for block in model.features)
    head = [type(m) for m in model.classifier]
    assert head == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, nn.ReLU, Dropout, nn.Linear]
    assert (model.classifier[2].in_features, model.classifier[2].out_features) == (256, 128)
    assert model.classifier[4].p == 0.5
    # 32 -> 16 -> 8 -> 4 after the three pools, as in the tutorial.
    assert model.features(torch.randn(1, 3, 32, 32)).shape == (1, 256, 4, 4)


def test_cnn_refuses_tabular_input_with_a_clear_message():
    with pytest.raises(UserError) as error:
        CNN((2,), num_classes=2)
    assert str(error.value) == (
        "model=cnn needs image data shaped (channels, height, width), but this data set gives "
        "1-dimensional inputs (2,); use model=mlp for tabular data."
    )


def test_cpu_dropout_keeps_each_value_with_probability_1_minus_p_and_rescales_it():
    torch.manual_seed(0)
    layer = Dropout(0.3)
    x = torch.rand(1000, 1000) + 1.0  # no zeros of its own
    x.requires_grad_(True)
    out = layer(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.002  # 1e6 draws: the std is 0.00046
    torch.testing.assert_close(out[kept], x[kept] / 0.7)
    out.sum().backward()  # the gradient flows through the kept values only, scaled the same
    torch.testing.assert_close(x.grad, kept.float() / 0.7)


def test_dropout_is_the_identity_in_eval_mode_and_for_p_0():
    x = torch.randn(64, 32)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))


def test_dropout_draws_follow_the_seed():
    x = torch.ones(256, 64)
    torch.manual_seed(3)
    first = Dropout(0.5)(x)
    torch.manual_seed(3)
    assert torch.equal(Dropout(0.5)(x), first)
