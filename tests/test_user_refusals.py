"""Refusals of a user's model name the user's module, the one cause and what to do, on one line.

The layers here look like those of public CIFAR model files (written anew, no code copied): a Conv2d
subclass that quantizes its own weight in ``forward`` and a ReLU subclass that clips at a learned
``act_alpha`` and rounds (both now convert, :mod:`fastsnn_lava.fx_quant`), a ``torch.cat`` inside a
submodule, a dilated convolution, a max pool inside
a named submodule and a sigmoid. Each refusal must name the module by its qualified name, point at this
file's line (the class definition, or the line of ``forward`` that made the refused operation) and
say the cause.
"""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.fx import convert

HERE = os.path.basename(__file__)


def line_of(marker: str) -> str:
    """``test_user_refusals.py:N`` of the line of this file that holds ``marker`` (a comment)."""
    with open(__file__) as f:
        lines = [i for i, text in enumerate(f, start=1) if text.rstrip().endswith(marker)]
    assert len(lines) == 1, marker
    return f"{HERE}:{lines[0]}"


class QuantConv2d(nn.Conv2d):
    """A weight-quantizing convolution: forward rounds ``tanh``-normalized weights to 7 levels."""

    def forward(self, x):
        w = torch.tanh(self.weight)
        w = torch.round(w / w.abs().max() * 7) / 7
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class ClipReLU(nn.ReLU):
    """A learned-clip activation: ReLU clipped at the parameter ``act_alpha``, rounded to 3 levels."""

    def __init__(self):
        super().__init__()
        self.act_alpha = nn.Parameter(torch.tensor(4.0))

    def forward(self, x):
        x = torch.where(F.relu(x) < self.act_alpha, F.relu(x), self.act_alpha)
        return torch.round(x / self.act_alpha * 3) * self.act_alpha / 3


class Stage(nn.Module):
    def __init__(self, conv, act):
        super().__init__()
        self.block = nn.Sequential(conv, nn.BatchNorm2d(4), act)

    def forward(self, x):
        return self.block(x)


class PaperLike(nn.Module):
    """stem → ``layer0`` (a quantized conv and activation) → classifier."""

    def __init__(self, conv, act):
        super().__init__()
        self.stem, self.relu = nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU()
        self.layer0 = Stage(conv, act)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.layer0(self.relu(self.stem(x))).flatten(1))


def refusal(model, shape=(1, 8, 8)) -> str:
    with pytest.raises(FastSNNError) as e:
        convert(model, shape)
    message = str(e.value)
    assert "\n" not in message and message.strip() == message
    return message


def test_a_weight_quantizing_conv2d_subclass_converts_with_the_weight_its_forward_uses():
    """Once refused; now converted with the weight its F.conv2d call uses (fastsnn_lava.fx_quant)."""
    c = convert(PaperLike(QuantConv2d(4, 4, 3, 1, 1), nn.ReLU()), (1, 8, 8))
    assert [(u.name, u.cls, u.weight_steps) for u in c.user_layers] == [("layer0.block.0", "QuantConv2d", 7)]


def test_a_learned_clip_relu_subclass_converts_as_its_staircase():
    """Once refused; now a hidden layer with the user's clip α = 4 and b = 2 (3 levels above 0)."""
    c = convert(PaperLike(nn.Conv2d(4, 4, 3, 1, 1), ClipReLU()), (1, 8, 8))
    assert c.bits == 2 and c.clips == [None, 4.0]


def test_a_relu_subclass_without_its_own_forward_still_converts():
    class PlainReLU(nn.ReLU):
        pass

    c = convert(PaperLike(nn.Conv2d(4, 4, 3, 1, 1), PlainReLU()).eval(), (1, 8, 8))
    assert [s["kind"] for s in c.spec] == ["conv", "conv"]


class WithStage(nn.Module):
    """stem → ReLU → ``stage`` → ReLU → classifier."""

    def __init__(self, stage):
        super().__init__()
        self.stem, self.stage, self.fc = nn.Conv2d(1, 4, 3, 1, 1), stage, nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(F.relu(self.stage(F.relu(self.stem(x)))).flatten(1))  # stage-line


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 2, 3, 1, 1), nn.Conv2d(4, 2, 3, 1, 1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)  # cat-line


def test_torch_cat_names_the_submodule_whose_forward_calls_it():
    message = refusal(WithStage(Concat()))
    assert "'stage' (Concat)" in message and line_of("# cat-line") in message
    assert "torch.cat" in message and "concatenat" in message
    assert "'cat'" not in message


def test_a_grouped_convolution_converts_and_a_dilated_one_names_the_module_and_the_one_cause():
    """Grouped/depthwise convolutions convert (tests/test_user_constructs.py checks them exactly); a
    dilated one is refused with its one cause, not the groups."""
    spec = convert(WithStage(nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1, groups=4), nn.BatchNorm2d(4))), (1, 8, 8)).spec
    assert spec[1]["groups"] == 4 and "groups" not in spec[0]
    message = refusal(WithStage(nn.Sequential(nn.Conv2d(4, 4, 3, 1, 2, dilation=2, groups=4), nn.BatchNorm2d(4))))
    assert "'stage.0'" in message and "dilation=(2, 2)" in message and line_of("# stage-line") in message
    assert "groups" not in message and "padding mode" not in message


class Down(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.pool = nn.Conv2d(4, 4, 3, 1, 1), nn.MaxPool2d(1)

    def forward(self, x):
        return self.pool(F.relu(self.conv(x)))  # pool-line


class FunctionalDown(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, 1, 1)

    def forward(self, x):
        return F.max_pool2d(F.relu(self.conv(x)), 1)  # functional-pool-line


def test_a_max_pool_inside_a_named_submodule_is_named_by_its_qualified_name():
    message = refusal(WithStage(Down()))
    assert "MaxPool2d 'stage.pool'" in message and line_of("# pool-line") in message
    assert "use a stride-2 Conv2d" in message
    message = refusal(WithStage(FunctionalDown()))
    assert "'stage' (FunctionalDown)" in message and line_of("# functional-pool-line") in message
    assert "max_pool2d" in message and "use a stride-2 Conv2d" in message


class SigmoidHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, 1, 1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))  # sigmoid-line


def test_a_sigmoid_is_refused_as_an_activation_naming_its_module():
    message = refusal(WithStage(SigmoidHead()))
    assert "'stage' (SigmoidHead)" in message and line_of("# sigmoid-line") in message
    assert "sigmoid" in message and "only ReLU activations" in message
    message = refusal(WithStage(nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1), nn.Sigmoid())))
    assert "Sigmoid 'stage.1'" in message and line_of("# stage-line") in message
    assert "only ReLU activations" in message


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.scale = nn.Conv2d(4, 4, 3, 1, 1), nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.conv(x) * self.scale  # scale-line


def test_a_parameter_read_in_forward_names_its_owning_module_and_class():
    message = refusal(WithStage(Scaled()))
    assert "'scale'" in message and "'stage' (Scaled" in message and line_of("# scale-line") in message
    assert "parameter access" not in message


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, 1, 1), nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        if x.sum() > 0:  # branch-line
            x = -x
        return self.fc(F.relu(self.conv(x)).flatten(1))


class WrongSize(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, 1, 1), nn.Linear(10, 10)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1))  # wrong-size-line


def test_a_model_that_cannot_be_traced_or_run_points_at_the_users_line():
    message = refusal(Branchy())
    assert line_of("# branch-line") + ": in the model (Branchy): the model cannot be traced by torch.fx" in message
    assert "avoid data-dependent Python control flow" in message
    message = refusal(WrongSize())
    assert line_of("# wrong-size-line") + ": in 'fc' (Linear): the model does not run on input" in message
    assert "ShapeProp" not in message
