"""fastsnn-train: train a float ANN and its b-bit quantized twin, save model.pt."""
from __future__ import annotations

import sys

from . import parser, run


def main(argv=None) -> int:
    from ..data import DATASETS
    from ..models import PRESETS
    p = parser("fastsnn-train", "Train a b-bit quantized ANN (QAT) whose SNN needs T = 2^b - 1 steps.",
               "fastsnn-train --dataset digits --arch cnn --bits 2 -o model.pt")
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument("--arch", default="cnn", choices=sorted(PRESETS))
    p.add_argument("--bits", type=int, default=2, help="activation bits b (T = 2^b - 1), default 2")
    p.add_argument("-o", "--output", required=True, help="checkpoint to write (model.pt)")
    p.add_argument("--epochs", type=int, default=30, help="float ANN epochs (default 30)")
    p.add_argument("--qat-epochs", type=int, default=30, help="quantization-aware epochs (default 30)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import train
        _, _, meta = train(a.dataset, a.arch, a.bits, a.output, a.epochs, a.qat_epochs, a.seed, a.batch_size,
                           progress=not a.no_progress)
        print(f"float ANN {meta['float_test_accuracy']:.4f}  {a.bits}-bit QANN {meta['qann_test_accuracy']:.4f}  "
              f"({meta['test_samples']} test samples, {meta['train_seconds']} s) -> {a.output}")
    return run("fastsnn-train", go, args)


if __name__ == "__main__":
    sys.exit(main())
