"""fastsnn-train: train a float ANN and its b-bit quantized twin, save model.pt.

Also ``python -m fastsnn_lava.train`` and, on several processes,
``torchrun --nproc_per_node=N -m fastsnn_lava.train`` (same options).
"""
from __future__ import annotations

import sys

from .common import check_outputs, integer, parser, real, run_cli


def main(argv=None) -> int:
    from ..data import DATASET_HELP
    from ..models import PRESETS
    p = parser("fastsnn-train", "Train a b-bit quantized ANN (QAT) whose SNN needs T = 2^b - 1 steps.",
               "fastsnn-train --dataset digits --arch cnn --bits 2 -o model.pt\n"
               "  fastsnn-train --dataset digits --arch cnn --bits 1 --init model.pt -o model_1bit.pt\n"
               "  torchrun --nproc_per_node=2 -m fastsnn_lava.train --dataset cifar10 --arch cnn5 -o model.pt")
    p.add_argument("--dataset", default="digits", metavar="NAME", help=DATASET_HELP)
    p.add_argument("--arch", default="cnn", choices=sorted(PRESETS))
    p.add_argument("--bits", type=integer(1), default=2, help="activation bits b (T = 2^b - 1), default 2")
    p.add_argument("-o", "--output", required=True,
                   help="checkpoint to write (model.pt); OUTPUT.resume holds the run's state until it finishes")
    p.add_argument("--epochs", type=integer(0), default=30, help="float ANN epochs (default 30)")
    p.add_argument("--qat-epochs", type=integer(0), default=30, help="quantization-aware epochs (default 30)")
    p.add_argument("--batch-size", type=integer(1), default=64, help="batch size per process (default 64)")
    p.add_argument("--lr", type=real(0, low_open=True), default=2e-3, help="float ANN learning rate (Adam, cosine; default 2e-3)")
    p.add_argument("--qat-lr", type=real(0, low_open=True), default=5e-4, help="QAT learning rate (default 5e-4)")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--train-samples", type=integer(1), default=None, metavar="N",
                   help="train on a seeded random subset of N training images (a quick trial; default: all)")
    p.add_argument("--threads", type=integer(1), default=None, metavar="N",
                   help="CPU threads for training (default: torch's, one per core); a fixed N makes a seeded run "
                        "repeat exactly on this machine whatever OMP_NUM_THREADS is")
    p.add_argument("--init", default=None, metavar="MODEL.pt",
                   help="progressive precision: start the QANN from this trained checkpoint (same --arch and "
                        "--dataset, any bits) and skip the float phase (--epochs is ignored)")
    p.add_argument("--resume", default=None, metavar="OUTPUT.resume",
                   help="continue an interrupted run from its resume file (its settings come from that file)")
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast for the float ANN on a GPU")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import train
        check_outputs({"-o": a.output}, {"--init": a.init, "--resume": a.resume})
        _, _, meta = train(a.dataset, a.arch, a.bits, a.output, a.epochs, a.qat_epochs, a.seed, a.batch_size,
                           progress=not a.no_progress, init=a.init, resume=a.resume, lr=a.lr, qat_lr=a.qat_lr,
                           amp=not a.no_amp, threads=a.threads, train_samples=a.train_samples)
        import os
        if os.environ.get("RANK", "0") == "0":
            print(f"float ANN {meta['float_test_accuracy']:.4f}  {meta['bits']}-bit "
                  f"QANN {meta['qann_test_accuracy']:.4f}  ({meta['test_samples']} test samples, "
                  f"{meta['train_seconds']} s) -> {a.output}")
    return run_cli("fastsnn-train", go, args)


if __name__ == "__main__":
    sys.exit(main())
