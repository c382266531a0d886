"""The CIFAR ResNets of He et al. (2016, §4.2): 6n + 2 layers, option-A (parameter-free) shortcuts.

Written here from the paper; its parameter names match the state dicts published with
github.com/akamaster/pytorch_resnet_cifar10 (BSD-2-Clause, Yerlan Idelbayev), e.g.
``pretrained_models/resnet20-12fca82f.th`` (ResNet-20, 91.73 % on the original CIFAR-10 test set as
published), so ``--weights`` can start from them. Those networks were trained on inputs normalised
with ImageNet's mean/std; :func:`resnet` puts that normalisation in ``forward``.

``pad="raw"`` (default) pads the raw image with zeros *before* normalising and gives the first
convolution no padding of its own: the normalisation then folds exactly into the first layer
(fastsnn_lava.normalize). ``pad="normalised"`` is the network as published (its first convolution
zero-pads the normalised input, i.e. pads raw pixels with the mean): fastsnn-lava refuses to
convert it, because that padding is no linear map of the raw pixels.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)  # the published weights' input normalisation (ImageNet statistics)
STD = (0.229, 0.224, 0.225)


class Block(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); option A: subsample, zero-pad channels."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.extra = (c_out - c_in) // 2 if stride != 1 or c_in != c_out else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.extra is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra, self.extra))
        return F.relu(out + short)


class CifarResNet(nn.Module):
    def __init__(self, n: int, classes: int = 10, pad: str = "raw"):
        super().__init__()
        if pad not in ("raw", "normalised"):
            raise ValueError(f"pad must be 'raw' or 'normalised', not {pad!r}")
        self.raw_pad = pad == "raw"
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 0 if self.raw_pad else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, c = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = [Block(c, width, stride)] + [Block(width, width, 1) for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            c = width
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, classes)

    def forward(self, x):
        if self.raw_pad:
            x = F.pad(x, (1, 1, 1, 1))
        x = (x - self.mean) / self.std
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def load_published(model: CifarResNet, path: str) -> CifarResNet:
    """Load a state dict saved by akamaster's trainer (``{"state_dict": {"module.<name>": …}}``) or a plain one."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state.update(mean=model.mean, std=model.std)
    model.load_state_dict(state)
    return model


def resnet(depth: int = 20, pad: str = "raw", published: str | None = None) -> CifarResNet:
    """ResNet-``depth`` (depth = 6n + 2: 20, 32, 44, 56, …), with the weights of ``published`` if given."""
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56), not {depth}")
    model = CifarResNet((depth - 2) // 6, pad=pad)
    return load_published(model, published) if published else model
