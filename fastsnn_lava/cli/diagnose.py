"""fastsnn-diagnose: per-layer SNN-vs-QANN error for unsigned, signed and fine-tuned SNNs."""
from __future__ import annotations

import json
import sys

from ..options import DiagnoseOptions
from .common import arguments, check_outputs, options, parser, run_cli


def main(argv=None) -> int:
    p = parser("fastsnn-diagnose",
               "Per hidden layer: mean |SNN spike count - QANN level| (θ units) and the share of neurons whose\n"
               "count differs, for unsigned IF, signed IF and (fine-tuned checkpoints) signed + fine-tuned;\n"
               "plus accuracy against the number of time steps T' = 1 .. 2(2^b - 1). Keys: export/DIAGNOSE.md.",
               "fastsnn-diagnose model_ft.pt --dataset digits --json diag.json --plot diag.png")
    p.add_argument("model", help="checkpoint (fastsnn-train or fastsnn-finetune)")
    arguments(p, DiagnoseOptions)
    args = p.parse_args(argv)

    def go(a):
        from ..atomic import write_text
        from ..diagnose import diagnose, plot
        o = options(DiagnoseOptions, a)
        check_outputs({"--json": o.json, "--plot": o.plot}, {"model": a.model})
        rec = diagnose(a.model, o.dataset, o.samples, o.sweep_samples)
        print(f"QANN accuracy {rec['qann_accuracy']:.4f} on {rec['samples']} samples (b = {rec['bits']})")
        for name, v in rec["variants"].items():
            errs = " ".join(f"{r['mean_abs_error_theta']:.4f}" for r in v["layers"])
            print(f"{name:>17}: accuracy {v['accuracy']:.4f}  per-layer mean |N-K| (θ): {errs}")
        if o.json:
            write_text(o.json, json.dumps(rec, indent=2) + "\n")
        if o.plot:
            plot(rec, o.plot)
    return run_cli("fastsnn-diagnose", go, args)


if __name__ == "__main__":
    sys.exit(main())
