"""Keep large freed buffers in the process's heap instead of giving them back to the kernel (glibc only).

PyTorch's CPU allocator takes every tensor from ``malloc``. glibc serves a request above its mmap
threshold (at most 32 MiB on 64-bit, ``DEFAULT_MMAP_THRESHOLD_MAX``) with a fresh ``mmap`` and returns
it with ``munmap`` when the tensor dies, so the next tensor of that size page-faults on each of its
4 KiB pages again, and the kernel zeroes every one. One CIFAR-10 batch of 128 through a 64-channel
32×32 layer is exactly 32 MiB of float32, and tuning through time allocates such tensors at every step:
with glibc's defaults a third to a half of the CUBA tuner's time was the kernel's (``sys``).

:func:`keep_freed_memory` calls ``mallopt(M_MMAP_MAX, 0)`` (every request comes from malloc's heaps,
which reuse freed chunks; glibc still falls back to ``mmap`` where a heap cannot grow) and
``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` (free memory at the top of the heap is kept for the next tensor),
the same as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824`` in the environment (mallopt(3)).
The price: the resident size stays at its peak. Results are untouched (only where memory comes from
changes). Measured on two cores (``fastsnn-finetune`` of the CIFAR-10 cnn5 at b = 2 through the CUBA LIF,
1,280 training images and two 10,000-image test passes, one thread): 250 s → 156 s wall, 103 s → 2 s
``sys``, peak resident 1.9 → 3.0 GB.

The commands (:func:`fastsnn_lava.cli.common.run_cli`), the scripts that train or tune, and the test
suite call it; importing the library does not, since it changes the whole process.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
KEEP = 1 << 30  # bytes of free heap top kept (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Set the two ``mallopt`` parameters above; True where they took (Linux with glibc), else False."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to do
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP))
