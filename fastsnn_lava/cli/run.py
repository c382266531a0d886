"""fastsnn-run: run a net.h5 on a dataset with the reference simulation or Lava's CPU simulator."""
from __future__ import annotations

import json
import sys

from ..errors import Disagreement
from .common import check_outputs, integer, parser, real, run_cli


def main(argv=None) -> int:
    from ..data import DATASET_HELP
    from ..pipeline import BACKENDS
    p = parser("fastsnn-run", "Run an exported network on test samples and compare it with its reference.",
               "fastsnn-run net.h5 --dataset digits --backend lava-sim --samples 64 --json out.json")
    p.add_argument("network", help="netx HDF5 file written by fastsnn-export")
    p.add_argument("--dataset", default="digits", metavar="NAME", help=DATASET_HELP)
    p.add_argument("--backend", default="lava-sim", choices=BACKENDS)
    p.add_argument("--samples", type=integer(1), default=None, help="first N test samples (default: all)")
    p.add_argument("--model", default=None, help="checkpoint, to measure the float ANN on the same samples")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--hw", default="loihi2",
                   help="check the network against this target's integer ranges first ('none' to skip)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    def go(a):
        from ..atomic import write_text
        from ..pipeline import evaluate
        check_outputs({"--json": a.json}, {"network": a.network, "--model": a.model, "--hw": a.hw})
        res = evaluate(a.network, a.dataset, a.backend, a.samples, a.model, progress=not a.no_progress,
                       hw=None if a.hw == "none" else a.hw)
        text = json.dumps(res, indent=2)
        if a.json:
            write_text(a.json, text + "\n")
        print(text)
        d = res["first_difference"]
        if d is not None:  # the record is written: then the wrong result is an error, not only a number
            raise Disagreement(f"{a.backend} differs from the reference simulation on {d['samples_differing']} of "
                               f"{res['samples']} samples (first: sample {d['sample']}, output {d['output']}: "
                               f"{d['backend']} against {d['reference']}); report this network as a bug")
    return run_cli("fastsnn-run", go, args)


if __name__ == "__main__":
    sys.exit(main())
