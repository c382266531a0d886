"""fastsnn-train: train a float ANN and its b-bit quantized twin, save model.pt.

Also ``python -m fastsnn_lava.train`` and, on several processes,
``torchrun --nproc_per_node=N -m fastsnn_lava.train`` (same options).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from ..errors import FastSNNError
from ..options import TrainOptions
from .common import arguments, check_outputs, options, parser, run_cli


class Given(argparse.Action):
    """Store the value and note that the flag was given (``--arch`` has a default; ``--model`` excludes
    only an ``--arch`` the user wrote)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.arch_given = True


def main(argv=None) -> int:
    from ..data import DATASET_HELP
    from ..spec import PRESETS
    p = parser("fastsnn-train", "Train a b-bit quantized ANN (QAT) whose SNN needs T = 2^b - 1 steps.",
               "fastsnn-train --dataset digits --arch cnn --bits 2 -o model.pt\n"
               "  fastsnn-train --dataset digits --arch cnn --bits 1 --init model.pt -o model_1bit.pt\n"
               "  fastsnn-train --dataset digits --model my_net.py:build --model-args '{\"width\": 8}' -o model.pt\n"
               "  torchrun --nproc_per_node=2 -m fastsnn_lava.train --dataset cifar10 --arch cnn5 -o model.pt")
    arguments(p, TrainOptions, dataset={"help": DATASET_HELP}, arch={"choices": sorted(PRESETS), "action": Given},
              out={"flags": ("-o", "--output")})
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import train
        o = options(TrainOptions, a)
        if o.model is not None and getattr(a, "arch_given", False):
            raise FastSNNError("--model and --arch both given: train either your own model or a preset")
        check_outputs({"-o": o.out}, {"--init": o.init, "--resume": o.resume, "--weights": o.weights})
        _, _, meta = train(**dataclasses.asdict(o))
        import os
        if os.environ.get("RANK", "0") == "0":
            print(f"float ANN {meta['float_test_accuracy']:.4f}  {meta['bits']}-bit "
                  f"QANN {meta['qann_test_accuracy']:.4f}  ({meta['test_samples']} test samples, "
                  f"{meta['train_seconds']} s) -> {o.out}")
    return run_cli("fastsnn-train", go, args)


if __name__ == "__main__":
    sys.exit(main())
