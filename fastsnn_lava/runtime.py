"""Where training runs: device, process group (torchrun) and mixed precision.

``torchrun --nproc_per_node=N -m fastsnn_lava.train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`setup` joins them into one process group
(``nccl`` on GPUs, one GPU per process; ``gloo`` on the CPU). Without torchrun it is one
process on the GPU if there is one, else the CPU.

**Mixed precision** (GPU only; :meth:`Runtime.autocast`): the float ANN trains under
bfloat16 autocast. Quantization-aware training does not: its forward pass rounds
pre-activations onto the integer grid the exporter writes, and bf16/fp16 (8/11-bit mantissas)
or TF32 (10 bits) would put values on the wrong side of a rounding step, so QAT runs in
float32 with TF32 switched off (:meth:`Runtime.exact_float32`). Export computes the integer
codes from the float32 master weights in any case.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    amp: bool = True

    @property
    def main(self) -> bool:
        """Rank 0: the only process that shows progress bars and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self):
        """bfloat16 autocast on a GPU (float ANN phase only), else nothing."""
        if self.amp and self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def exact_float32(self):
        """float32 matmuls and convolutions without TF32 (QAT's rounding must match export)."""
        return no_tf32(self.device)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around ``model`` when there are several processes
        (it broadcasts rank 0's parameters and buffers, then averages gradients)."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, perm: torch.Tensor) -> torch.Tensor:
        """This rank's share of an epoch's permutation, like DistributedSampler: padded by
        repeating its start to a multiple of the world size, then every world-th index."""
        if not self.distributed:
            return perm
        n = len(perm)
        total = -(-n // self.world) * self.world
        perm = torch.cat([perm, perm[:total - n]])
        return perm[self.rank::self.world]

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank: DDP broadcasts
        them before each forward pass, so after the last one each rank holds its own update."""
        if self.distributed:
            for b in model.buffers():
                dist.broadcast(b, 0)

    def same_on_all_ranks(self, model: torch.nn.Module) -> bool:
        """True when every rank holds bit-identical parameters and buffers (True on one process)."""
        if not self.distributed:
            return True
        flat = torch.cat([t.detach().float().flatten() for t in model.state_dict().values()]).to(self.device)
        gathered = [torch.empty_like(flat) for _ in range(self.world)]
        dist.all_gather(gathered, flat)
        return all(torch.equal(g, gathered[0]) for g in gathered)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup(amp: bool = True) -> Runtime:
    """The runtime of this process; joins the torchrun process group if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world > 1:
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return Runtime(device, rank, world, amp)
    return Runtime(torch.device("cuda") if cuda else torch.device("cpu"), amp=amp)


@contextlib.contextmanager
def no_tf32(device: torch.device):
    """The body's CUDA matmuls and convolutions without TF32 (10-bit mantissas); nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run the body with ``n`` CPU threads for torch's kernels (``None``: leave torch's setting).

    A CPU kernel adds its partial sums in an order that depends on how many threads share the work,
    so float training moves with the thread count (``OMP_NUM_THREADS``, the machine's cores). A fixed
    ``n`` makes a seeded run repeat bit for bit on one machine whatever that count is; another
    instruction set (AVX2 against AVX-512, another CPU) can still round differently.
    """
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    saved = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
