"""fastsnn-diagnose: per-layer SNN-vs-QANN error for unsigned, signed and fine-tuned SNNs."""
from __future__ import annotations

import json
import sys

from .common import check_outputs, integer, parser, real, run_cli


def main(argv=None) -> int:
    p = parser("fastsnn-diagnose",
               "Per hidden layer: mean |SNN spike count - QANN level| (θ units) and the share of neurons whose\n"
               "count differs, for unsigned IF, signed IF and (fine-tuned checkpoints) signed + fine-tuned;\n"
               "plus accuracy against the number of time steps T' = 1 .. 2(2^b - 1). Keys: export/DIAGNOSE.md.",
               "fastsnn-diagnose model_ft.pt --dataset digits --json diag.json --plot diag.png")
    p.add_argument("model", help="checkpoint (fastsnn-train or fastsnn-finetune)")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--samples", type=integer(1), default=None, help="first N test samples (default: all)")
    p.add_argument("--sweep-samples", type=integer(1), default=1000,
                   help="test samples for the accuracy-vs-T sweep (default 1000)")
    p.add_argument("--json", default=None, help="write the record here")
    p.add_argument("--plot", default=None, help="write a PNG: per-layer error and accuracy vs T")
    args = p.parse_args(argv)

    def go(a):
        from ..atomic import write_text
        from ..diagnose import diagnose, plot
        check_outputs({"--json": a.json, "--plot": a.plot}, {"model": a.model})
        rec = diagnose(a.model, a.dataset, a.samples, a.sweep_samples)
        print(f"QANN accuracy {rec['qann_accuracy']:.4f} on {rec['samples']} samples (b = {rec['bits']})")
        for name, v in rec["variants"].items():
            errs = " ".join(f"{r['mean_abs_error_theta']:.4f}" for r in v["layers"])
            print(f"{name:>17}: accuracy {v['accuracy']:.4f}  per-layer mean |N-K| (θ): {errs}")
        if a.json:
            write_text(a.json, json.dumps(rec, indent=2) + "\n")
        if a.plot:
            plot(rec, a.plot)
    return run_cli("fastsnn-diagnose", go, args)


if __name__ == "__main__":
    sys.exit(main())
