"""Quantized layers of the kind Fast-SNN's model code uses, written anew for the tests (no code copied):
subclasses of ``nn.Conv2d``/``nn.Linear``/``nn.ReLU``/``nn.AvgPool2d`` whose ``forward`` quantizes.

* :class:`WeightQuantConv2d`: standardises its weight, clips it at a learned ``wgt_alpha`` and rounds it
  to ``2^b − 1`` steps of each sign;
* :class:`Int8Conv2d`/:class:`Int8Linear`: the first/last layer kind, the weight rounded to 127 steps of its
  largest magnitude;
* :class:`ClipQuantReLU`: ReLU clipped at a learned ``act_alpha`` and rounded to ``2^b − 1`` equal steps;
  :class:`PowerOfTwoReLU` rounds to the levels 0, α/2^(L−1), …, α/2, α instead (not convertible);
* :class:`QuantAvg`: average pooling followed by the activation quantizer.

Rounding passes gradients straight through, so the models train with a plain SGD loop (:func:`train_own_way`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def round_ste(t: torch.Tensor) -> torch.Tensor:
    """``round(t)`` forward, identity backward."""
    return t + (torch.round(t) - t).detach()


def quantize_unit(t: torch.Tensor, steps: int) -> torch.Tensor:
    """``t`` in [0, 1] rounded to multiples of ``1/steps``."""
    return round_ste(t * steps) / steps


class WeightQuantConv2d(nn.Conv2d):
    def __init__(self, *args, bits: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.bits = bits
        self.wgt_alpha = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        w = self.weight
        w = (w - w.mean()) / (w.std() + 1e-8)
        magnitude = torch.minimum(w.abs() / self.wgt_alpha, torch.ones_like(w))
        w_q = torch.sign(w) * quantize_unit(magnitude, 2 ** self.bits - 1) * self.wgt_alpha
        return F.conv2d(x, w_q, self.bias, self.stride, self.padding, self.dilation, self.groups)


def int8_weight(w: torch.Tensor) -> torch.Tensor:
    top = w.abs().max().detach()
    return round_ste(w / top * 127) * top / 127


class Int8Conv2d(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(x, int8_weight(self.weight), self.bias, self.stride, self.padding)


class Int8Linear(nn.Linear):
    def forward(self, x):
        return F.linear(x, int8_weight(self.weight), self.bias)


class ClipQuantReLU(nn.ReLU):
    def __init__(self, bits: int = 2, alpha: float = 2.0, channels: int | None = None):
        super().__init__()
        self.bits = bits
        shape = (channels, 1, 1) if channels else ()
        self.act_alpha = nn.Parameter(torch.full(shape, alpha))

    def forward(self, x):
        t = torch.clamp(F.relu(x) / self.act_alpha, max=1.0)
        return quantize_unit(t, 2 ** self.bits - 1) * self.act_alpha


class PowerOfTwoReLU(ClipQuantReLU):
    def forward(self, x):
        t = torch.clamp(F.relu(x) / self.act_alpha, max=1.0)
        levels = torch.tensor([0.0] + [2.0 ** -k for k in range(2 ** self.bits - 2, -1, -1)])
        nearest = (t.unsqueeze(-1) - levels).abs().argmin(-1)
        return levels[nearest] * self.act_alpha


class QuantAvg(nn.AvgPool2d):
    def __init__(self, kernel: int, bits: int = 2, alpha: float = 2.0):
        super().__init__(kernel)
        self.act = ClipQuantReLU(bits, alpha)

    def forward(self, x):
        return self.act(F.avg_pool2d(x, self.kernel_size, self.stride))


class TwoConvs(nn.Conv2d):
    """Not convertible: its output is the sum of two convolutions of the input."""

    def forward(self, x):
        return (F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
                + F.conv2d(x, self.weight.flip(2), None, self.stride, self.padding))


def block(conv: nn.Module, act: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(channels), act)


class Residual(nn.Module):
    def __init__(self, width: int, bits: int):
        super().__init__()
        self.conv1 = WeightQuantConv2d(width, width, 3, 1, 1, bias=False, bits=bits)
        self.bn1, self.act1 = nn.BatchNorm2d(width), ClipQuantReLU(bits)
        self.conv2 = WeightQuantConv2d(width, width, 3, 1, 1, bias=False, bits=bits)
        self.bn2, self.act2 = nn.BatchNorm2d(width), ClipQuantReLU(bits)

    def forward(self, x):
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        out += x
        return self.act2(out)


class ResNetLike(nn.Module):
    """stem (127-step conv) → a residual block (``+=``) → global average pool → 127-step classifier."""

    def __init__(self, width: int = 8, bits: int = 2, classes: int = 10, pool: nn.Module | None = None):
        super().__init__()
        self.stem = block(Int8Conv2d(1, width, 3, 1, 1, bias=False), ClipQuantReLU(bits), width)
        self.layer1 = Residual(width, bits)
        self.pool = pool if pool is not None else nn.AvgPool2d(8)
        self.fc = Int8Linear(width, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


class VGGLike(nn.Module):
    """127-step conv → b-bit convs (one of stride 2) → flatten → 127-step classifier; ``act`` makes the
    activations (ClipQuantReLU by default)."""

    def __init__(self, width: int = 8, bits: int = 2, classes: int = 10, act=None, bits2: int | None = None):
        super().__init__()
        act = act or ClipQuantReLU
        self.features = nn.Sequential(
            block(Int8Conv2d(1, width, 3, 1, 1, bias=False), act(bits), width),
            block(WeightQuantConv2d(width, width, 3, 2, 1, bias=False, bits=bits), act(bits2 or bits), width),
            block(WeightQuantConv2d(width, width, 3, 1, 1, bias=False, bits=bits), act(bits), width))
        self.classifier = Int8Linear(width * 16, classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def train_own_way(model: nn.Module, steps: int = 4, seed: int = 0, shape=(1, 8, 8)) -> nn.Module:
    """The user's own quantization-aware training: plain SGD on random data, seeded; returns it in eval mode."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        x, y = torch.rand(16, *shape, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()
