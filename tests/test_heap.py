"""heap.keep_freed_memory: a big tensor freed and allocated again reuses its pages instead of faulting
them in afresh (the kernel's share of the CUBA tuner's time; see fastsnn_lava/heap.py)."""
import platform
import subprocess
import sys

import pytest

CHILD = """
import resource, sys
import torch
from fastsnn_lava.heap import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(12):  # the first rounds warm up torch and grow the heap (glibc reuses a freed
    # aligned chunk only once a few of them lie in its bins)
    before = faults()
    t = torch.empty(64 << 18)   # 64 MiB of float32, above glibc's 32 MiB mmap ceiling
    t.fill_(1.0)
    del t
    after = faults()
print(kept, after - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True).stdout
    kept, faults = out.split()
    return kept, int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_tensor_memory_is_reused():
    kept, with_heap = _faults("keep")
    _, fresh = _faults("default")
    assert kept == "True"
    assert with_heap < fresh, (with_heap, fresh)
    assert with_heap < 100, with_heap  # 64 MiB is 16,384 pages: reused, not faulted in again
