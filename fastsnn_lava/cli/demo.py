"""fastsnn-demo (``make demo``): the whole chain on the embedded digits dataset.

For an MLP and a CNN at b = 2: train the float ANN and the QANN, export net.h5,
run the reference simulation on the whole test set and Lava's CPU simulator on
the first ``--lava-samples`` test samples, and print one table.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .common import integer, parser, real, run_cli

# The digits nets train on one CPU thread: a seeded run then prints the same table on one machine
# whatever OMP_NUM_THREADS says (the float sums' order changes with the thread count), and these
# nets are small enough that one thread costs little.
DEMO_THREADS = 1


def table(rows: list[dict]) -> str:
    head = ("| model | b | T | float ANN | QANN | SNN reference | SNN on Lava | Lava = reference | "
            "SNN = QANN | wall time |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['bits']} | {r['timesteps']} | {r['ann_accuracy']:.2%} | {r['qann_accuracy']:.2%} | "
            f"{r['reference_accuracy']:.2%} | {r['lava_accuracy']:.2%} ({r['lava_samples']} samples) | "
            f"{r['lava_reference_agreement']:.1%} | {r['qann_agreement']:.1%} | {r['wall_seconds']:.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = parser("fastsnn-demo", "Train, export and run an MLP and a CNN on digits; print one table.",
               "fastsnn-demo --out build/demo --lava-samples 360")
    p.add_argument("--out", default="build/demo", help="folder for model.pt, net.h5 and results (default build/demo)")
    p.add_argument("--archs", default="mlp,cnn", help="comma-separated architectures (default mlp,cnn)")
    p.add_argument("--bits", type=integer(1), default=2)
    p.add_argument("--lava-samples", type=integer(1), default=360, help="test samples run on Lava (default: all 360)")
    p.add_argument("--threads", type=integer(1), default=DEMO_THREADS, metavar="N",
                   help=f"CPU threads for training (default {DEMO_THREADS}: the same table whatever OMP_NUM_THREADS is)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    def go(a):
        from ..atomic import write_text
        from ..pipeline import evaluate, export, train
        out = Path(a.out)
        rows = []
        for arch in a.archs.split(","):
            t0 = time.time()
            model, net_path = out / f"{arch}_b{a.bits}.pt", out / f"{arch}_b{a.bits}.h5"
            _, _, meta = train("digits", arch, a.bits, str(model), progress=not a.no_progress, threads=a.threads)
            export(str(model), str(net_path))
            ref = evaluate(str(net_path), "digits", "reference", None, str(model), progress=False)
            lava = evaluate(str(net_path), "digits", "lava-sim", a.lava_samples, progress=not a.no_progress)
            rows.append({"arch": arch, "bits": a.bits, "timesteps": ref["timesteps"],
                         "ann_accuracy": ref["ann_accuracy"], "qann_accuracy": ref["qann_accuracy"],
                         "reference_accuracy": ref["snn_accuracy"], "qann_agreement": ref["qann_agreement"],
                         "lava_accuracy": lava["snn_accuracy"], "lava_samples": lava["samples"],
                         "lava_reference_agreement": lava["reference_agreement"],
                         "lava_seconds": lava["wall_seconds"], "wall_seconds": time.time() - t0,
                         "test_samples": ref["samples"]})
            print(f"{arch}: done in {rows[-1]['wall_seconds']:.0f} s", file=sys.stderr)
        write_text(out / "demo.json", json.dumps(rows, indent=2) + "\n")
        print(f"\nFast-SNN on digits ({rows[0]['test_samples']} test samples; Lava on the first "
              f"{a.lava_samples}):\n")
        print(table(rows))
    return run_cli("fastsnn-demo", go, args)


if __name__ == "__main__":
    sys.exit(main())
