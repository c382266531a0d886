"""fastsnn-demo (``make demo``): the whole chain on the embedded digits dataset.

For an MLP and a CNN at b = 2: train the float ANN and the QANN, export net.h5,
run the reference simulation on the whole test set and Lava's CPU simulator on
``--lava-samples`` test samples (class-balanced), and print one table.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..options import DemoOptions
from ..tables import demo_table
from .common import arguments, options, parser, run_cli


def main(argv=None) -> int:
    p = parser("fastsnn-demo", "Train, export and run an MLP and a CNN on digits; print one table.",
               "fastsnn-demo --out build/demo --lava-samples 360")
    arguments(p, DemoOptions)
    args = p.parse_args(argv)

    def go(a):
        from ..atomic import write_text
        from ..pipeline import evaluate, export, train
        o = options(DemoOptions, a)
        out = Path(o.out)
        rows = []
        for arch in o.archs.split(","):
            t0 = time.time()
            model, net_path = out / f"{arch}_b{o.bits}.pt", out / f"{arch}_b{o.bits}.h5"
            _, _, meta = train("digits", arch, o.bits, str(model), progress=o.progress, threads=o.threads)
            export(str(model), str(net_path))
            ref = evaluate(str(net_path), "digits", "reference", None, str(model), progress=False)
            lava = evaluate(str(net_path), "digits", "lava-sim", o.lava_samples, progress=o.progress)
            rows.append({"arch": arch, "bits": o.bits, "timesteps": ref["timesteps"],
                         "ann_accuracy": ref["ann_accuracy"], "qann_accuracy": ref["qann_accuracy"],
                         "reference_accuracy": ref["snn_accuracy"], "qann_agreement": ref["qann_agreement"],
                         "lava_accuracy": lava["snn_accuracy"], "lava_samples": lava["samples"],
                         "lava_reference_agreement": lava["reference_agreement"],
                         "lava_seconds": lava["wall_seconds"], "wall_seconds": time.time() - t0,
                         "test_samples": ref["samples"]})
            print(f"{arch}: done in {rows[-1]['wall_seconds']:.0f} s", file=sys.stderr)
        write_text(out / "demo.json", json.dumps(rows, indent=2) + "\n")
        print(f"\nFast-SNN on digits ({rows[0]['test_samples']} test samples; Lava on "
              f"{o.lava_samples}):\n")
        print(demo_table(rows))
    return run_cli("fastsnn-demo", go, args)


if __name__ == "__main__":
    sys.exit(main())
