"""The evaluation engine: the reference simulation, fast and bit-exact, on batches of raw inputs.

:mod:`fastsnn_lava.reference` is the readable specification; :mod:`fastsnn_lava.kernel` computes
the same integers fast (its docstring holds the equations and the exactness argument). This module
wraps it for evaluation: inputs stream through in batches sized to stay in cache, on the chosen
device and thread count, in the narrowest exact dtype for the inputs' range
(:func:`fastsnn_lava.bounds.exact_dtype`), with freed batch tensors kept in malloc's heap
(:func:`keep_heap_pages`).
"""
from __future__ import annotations

import numpy as np
import torch

from .bounds import EXACT_BITS, current_bound, exact_dtype, value_bound  # noqa: F401 - the engine's public names
from .errors import FastSNNError
from .ir import Network
from .kernel import Kernel, if_run  # noqa: F401 - if_run: the engine's public name

_HEAP_TUNED = []


def keep_heap_pages() -> bool:
    """Ask glibc's malloc to serve the engine's per-batch tensors (≤ 32 MiB) from its heap and
    not to hand freed memory back to the kernel (``mallopt``: ``M_MMAP_THRESHOLD`` = 32 MiB,
    ``M_TRIM_THRESHOLD`` = 1 GiB). Otherwise every batch's few-MiB tensors are fresh ``mmap``
    pages, zero-filled by the kernel on first touch: on the Fashion CNN that was 170 k page
    faults per 2 k images and a third of the run time. Process-wide, once; freed memory
    stays reserved for reuse (the peak is unchanged). Returns whether it applied (glibc only)."""
    if not _HEAP_TUNED:
        ok = False
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")
            ok = bool(libc.mallopt(-3, 32 * 2 ** 20)) and bool(libc.mallopt(-1, 2 ** 30))  # MMAP, TRIM
        except (OSError, AttributeError):
            pass
        _HEAP_TUNED.append(ok)
    return _HEAP_TUNED[0]


def default_device() -> torch.device:
    """CUDA when a GPU is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Engine:
    """The spiking network ``net`` compiled for fast, exact batched evaluation.

    ``timesteps``: run T' steps instead of ``net.timesteps`` (same thresholds, v(0) = θ/2).
    ``device``: default CUDA if present, else CPU; ``threads``: CPU threads (default: torch's, one per physical core).
    ``unfold``: convolutions as unfold + matmul (default: on CUDA only).
    """

    def __init__(self, net: Network, timesteps: int | None = None, device=None, threads: int | None = None,
                 unfold: bool | None = None):
        self.net = net
        self.steps = net.timesteps if timesteps is None else int(timesteps)
        if self.steps < 1:
            raise FastSNNError(f"timesteps must be at least 1, got {self.steps}")
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        elif threads:  # torch's default already uses every physical core
            torch.set_num_threads(int(threads))
        self.unfold = self.device.type == "cuda" if unfold is None else bool(unfold)
        if self.device.type == "cpu":
            keep_heap_pages()
        self._compiled, self._dtypes = {}, {}

    def _kernel(self, input_abs: int) -> Kernel:
        a = max(int(input_abs), self.net.input_max)
        if a not in self._dtypes:  # the bound sums every weight: once per input range, not per batch
            self._dtypes[a] = exact_dtype(self.net, self.steps, a)
        dtype = self._dtypes[a]
        if dtype not in self._compiled:
            self._compiled[dtype] = Kernel(self.net, dtype, self.device, self.unfold, self.steps)
        return self._compiled[dtype]

    @torch.no_grad()
    def forward(self, x, counts: list | None = None, upto: int | None = None) -> torch.Tensor | None:
        """Integer outputs ``Σ_t I^L(t)`` ``(B, n_out)`` (a float tensor holding integers).

        ``counts``: a list that receives each hidden layer's spike count ``N^l = Σ_t s^l(t)``;
        ``upto``: stop after the first ``upto`` hidden layers and return None (their counts are in ``counts``)."""
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
        input_abs = max(abs(int(v)) for v in torch.aminmax(x)) if x.numel() else 0  # one pass, no copy
        kernel = self._kernel(input_abs)
        for _, layer, out in kernel.walk(kernel.input(x), upto=upto):
            if layer.accumulates:
                return out
            if counts is not None:
                counts.append(out.sum(0))
        return None

    def batch_size(self, budget_bytes: int = 8 * 2 ** 20) -> int:
        """Samples per batch so that the largest ``(T, B, …)`` float32 tensor stays near
        ``budget_bytes`` (16–2048): small enough to stay in cache, the fastest on a 2-core CPU."""
        largest = max(layer.num_neurons for layer in self.net.layers)
        return int(max(16, min(2048, budget_bytes // (4 * self.steps * largest))))

    def run(self, x, batch_size: int | None = None) -> np.ndarray:
        """Integer outputs ``(N, n_out)`` as int64, streaming ``x`` in batches."""
        bs = batch_size or self.batch_size()
        outs = [self.forward(x[s:s + bs]).cpu().numpy() for s in range(0, len(x), bs)]
        if not outs:
            return np.zeros((0, *self.net.output_shape), dtype=np.int64)
        return np.concatenate(outs).astype(np.int64)


def run(net: Network, x, timesteps: int | None = None, batch_size: int | None = None, device=None) -> np.ndarray:
    """Integer outputs ``(N, n_out)`` of the spiking network ``net`` on raw inputs ``x``."""
    return Engine(net, timesteps, device).run(x, batch_size)
