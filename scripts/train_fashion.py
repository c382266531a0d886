"""Train the Fashion-MNIST 'cnn5' models at b = 4, 3, 2 with progressive precision.

b = 4 trains a float ANN then its QANN; b = 3 starts from the 4-bit checkpoint and
b = 2 from the 3-bit one (``fastsnn-train --init``, the paper's progressive
initialisation; no float phase). Writes ``build/models/fashion_cnn5_b{b}.pt``,
which ``scripts/results_table.py`` reads. Equivalent CLI::

    fastsnn-train --dataset fashion-mnist --arch cnn5 --bits 4 --epochs 6 --qat-epochs 4 --batch-size 128 -o b4.pt
    fastsnn-train --dataset fashion-mnist --arch cnn5 --bits 3 --init b4.pt --qat-epochs 4 --batch-size 128 -o b3.pt

Usage: .venv/bin/python scripts/train_fashion.py [--epochs 6] [--qat-epochs 4] [--threads 1] [--out build/models]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fastsnn_lava.pipeline import train  # noqa: E402


def main():
    from fastsnn_lava.heap import keep_freed_memory
    keep_freed_memory()  # freed tensors are reused, not faulted in again (fastsnn_lava/heap.py)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="cnn5")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--qat-epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--bits", default="4,3,2")
    ap.add_argument("--out", default="build/models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default: torch's); a fixed N repeats a seeded run exactly on one machine")
    a = ap.parse_args()
    try:
        widths = [int(b) for b in a.bits.split(",")]
    except ValueError:
        refuse(f"--bits takes comma-separated bit widths such as 4,3,2, got {a.bits!r}")
    from fastsnn_lava.errors import FastSNNError
    try:
        chain(a, widths)
    except FastSNNError as e:  # a bad --threads, an unknown --arch, missing data, …: one line, like a bad option
        refuse(" ".join(str(e).split()))


def refuse(message: str) -> None:
    """A bad option or input: one line on stderr, exit 2."""
    print(f"train_fashion.py: {message}", file=sys.stderr)
    sys.exit(2)


def chain(a, widths: list[int]) -> None:
    """Train each bit width in turn, each from the one before (progressive precision)."""
    prev = None
    for bits in widths:
        path = Path(a.out) / f"fashion_{a.arch}_b{bits}.pt"
        _, _, meta = train("fashion-mnist", a.arch, bits, str(path), a.epochs, a.qat_epochs, a.seed, a.batch_size,
                           init=prev, threads=a.threads)
        print(json.dumps({k: meta.get(k) for k in ("bits", "float_test_accuracy", "qann_test_accuracy",
                                                    "train_seconds", "init_from")}), flush=True)
        prev = str(path)


if __name__ == "__main__":
    main()
