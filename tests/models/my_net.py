"""A user's own small CNN, as someone new to this project would write it (the tests train it through
``fastsnn-train --model tests/models/my_net.py:build``): BatchNorm, ReLU and global average pooling."""
import torch.nn as nn


class MyNet(nn.Module):
    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


def build(width: int = 8):
    """The model fastsnn-train trains: inputs (N, 1, 8, 8) in [0, 1], 10 logits."""
    return MyNet(width)


def broken(width: int = 8):
    raise ValueError(f"width {width} is not supported")


def not_a_model():
    return {"width": 8}


NOT_CALLABLE = 42
