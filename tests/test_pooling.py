"""Average pooling in a user's model: global pooling is the spec's ``avgpool``; any other is what it computes.

A pooling whose window does not cover the map (a 4×4 pool on a 5×5 map still gives a 1×1 output)
was once accepted as global pooling, and the converted network silently computed something else
than the model. Now each form of pooling is checked against the map it pools: a global one becomes
``avgpool``, any other a fixed depthwise convolution folded into the next layer (here the classifier,
over the un-pooled map; :mod:`fastsnn_lava.fx_maps`, ``tests/test_user_maps.py``), and every converted
model is compared with its converted float network on random inputs (``fx.check_same``).
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.fx import check_same, convert
from fastsnn_lava.fx_patterns import pool_window


class Pooled(nn.Module):
    """conv 3×3 (padding 1) → ReLU → ``pool`` → Linear: the map is ``side × side``."""

    def __init__(self, pool):
        super().__init__()
        self.conv, self.fc, self.pool = nn.Conv2d(1, 4, 3, 1, 1), nn.Linear(4, 10), pool

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(F.relu(self.conv(x))), 1))


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


ACCEPTED = {
    "AdaptiveAvgPool2d(1)": lambda: nn.AdaptiveAvgPool2d(1),
    "AdaptiveAvgPool2d((1, 1))": lambda: nn.AdaptiveAvgPool2d((1, 1)),
    "AvgPool2d(5)": lambda: nn.AvgPool2d(5),
    "F.avg_pool2d(x, x.size()[3])": lambda: Fn(lambda x: F.avg_pool2d(x, x.size()[3])),
    "F.avg_pool2d(x, kernel_size=x.shape[2:])": lambda: Fn(lambda x: F.avg_pool2d(x, kernel_size=x.shape[2:])),
    "F.adaptive_avg_pool2d(x, 1)": lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 1)),
    "x.mean((2, 3))": lambda: Fn(lambda x: x.mean((2, 3))),
    "x.mean(dim=(-1, -2))": lambda: Fn(lambda x: x.mean(dim=(-1, -2))),
}

NOT_GLOBAL = {  # a 1×1 output that is not the map's mean: folded into the classifier as what it computes
    "AvgPool2d(4) on 5×5": lambda: nn.AvgPool2d(4),
    "AvgPool2d(5, padding=1)": lambda: nn.AvgPool2d(5, padding=1, stride=7),
    "AvgPool2d(5, divisor_override=2)": lambda: nn.AvgPool2d(5, divisor_override=2),
    "F.avg_pool2d(x, 4)": lambda: Fn(lambda x: F.avg_pool2d(x, 4)),
    "F.avg_pool2d(x, x.size(3) - 1)": lambda: Fn(lambda x: F.avg_pool2d(x, x.size(3) - 1)),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_global_average_pooling_converts_and_computes_what_the_model_computes(name):
    torch.manual_seed(0)
    model = Pooled(ACCEPTED[name]()).eval()
    c = convert(model, (1, 5, 5))
    assert [s["kind"] for s in c.spec] == ["conv", "avgpool"]
    x = torch.rand(8, 1, 5, 5)
    with torch.no_grad():
        assert torch.allclose(c.float_net(x), model(x), atol=1e-5)


@pytest.mark.parametrize("name", list(NOT_GLOBAL))
def test_pooling_that_does_not_cover_the_map_converts_as_what_it_computes(name):
    torch.manual_seed(0)
    model = Pooled(NOT_GLOBAL[name]()).eval()
    c = convert(model, (1, 5, 5))  # check_same: the float network computes the model
    assert [s["kind"] for s in c.spec] == ["conv"]  # no avgpool: the classifier reads the whole 4×5×5 map
    assert c.float_net.syn[-1].weight.shape == (10, 4 * 5 * 5) if hasattr(c.float_net, "syn") else \
        c.float_net[-1].weight.shape == (10, 4 * 5 * 5)
    x = torch.rand(8, 1, 5, 5)
    with torch.no_grad():
        assert torch.allclose(c.float_net(x), model(x), atol=1e-5)
        wrong = model.fc(F.relu(model.conv(x)).mean((2, 3)))  # what the old conversion computed
        assert not torch.allclose(c.float_net(x), wrong, atol=1e-3)


def test_pooling_without_fixed_weights_is_refused_naming_the_module():
    with pytest.raises(FastSNNError, match=r"AvgPool2d 'pool' with count_include_pad=False and padding 1"):
        convert(Pooled(nn.AvgPool2d(5, 7, 1, count_include_pad=False)), (1, 5, 5))


def test_a_mean_over_channels_with_a_coincident_shape_is_refused():
    """4 channels on a 2×2 map: mean over the channel dim gives 4 values too, but not the pooled ones."""
    class ChannelMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(F.relu(self.conv(x)).mean(1).flatten(1))
    with pytest.raises(FastSNNError, match=r"mean over dims 1"):
        convert(ChannelMean(), (1, 4, 4))


def test_pool_window_rules():
    assert pool_window("adaptive", (5, 5), output_size=1) is None
    assert pool_window("adaptive", (5, 5), output_size=(1, None)) is None
    assert pool_window("adaptive", (5, 5), output_size=2) == "output size 2"
    assert pool_window("avg", (5, 7), kernel=(5, 7)) is None
    assert pool_window("avg", (5, 7), kernel=5) == "kernel (5, 5)"
    assert pool_window("avg", (5, 5), kernel=None) == "kernel (None, None)"  # a kernel the trace did not know
    assert pool_window("mean", (5, 5), dims=[3, 2]) is None
    assert pool_window("mean", (5, 5), dims=None) == "mean over dims None"


def test_check_same_refuses_a_network_that_computes_something_else():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    other = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(FastSNNError, match=r"computes something else than the model at its output layer \(max \|Δ\|"):
        check_same(model, other, (1, 2, 2))
    other.load_state_dict(model.state_dict())
    check_same(model, other, (1, 2, 2))
    assert model.training  # the model's mode is restored
