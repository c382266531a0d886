"""Standard CIFAR augmentation on integer pixels, batched: random crop after 4-pixel zero
padding, then a horizontal flip with probability 1/2.

It works on raw pixels (padding with 0, i.e. black, the value the deployed network's
convolution padding sees), so the augmented inputs are the same kind of integers the
deployed network takes. Randomness comes from one ``torch.Generator`` (reproducible, and
saved in resume files).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """x: (N, C, H, W) → a randomly shifted (±pad pixels) and flipped copy, same shape and dtype."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    cols = dx[:, None] + torch.arange(w)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    rows = dy[:, None] + torch.arange(h)[None, :]
    dev = x.device
    return padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows.to(dev)[:, None, :, None], cols.to(dev)[:, None, None, :]]
