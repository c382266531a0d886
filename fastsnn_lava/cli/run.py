"""fastsnn-run: run a net.h5 on a dataset with the reference simulation or Lava's CPU simulator."""
from __future__ import annotations

import json
import sys

from ..errors import Disagreement
from ..options import RunOptions
from .common import arguments, check_outputs, options, parser, run_cli


def main(argv=None) -> int:
    from ..data import DATASET_HELP
    p = parser("fastsnn-run", "Run an exported network on test samples and compare it with its reference.",
               "fastsnn-run net.h5 --dataset digits --backend lava-sim --samples 64 --json out.json")
    p.add_argument("network", help="netx HDF5 file written by fastsnn-export")
    arguments(p, RunOptions, dataset={"help": DATASET_HELP})
    args = p.parse_args(argv)

    def go(a):
        from ..atomic import write_text
        from ..pipeline import evaluate
        o = options(RunOptions, a)
        check_outputs({"--json": o.json}, {"network": a.network, "--model": o.model, "--hw": o.hw})
        res = evaluate(a.network, o.dataset, o.backend, o.samples, o.model, progress=o.progress,
                       hw=o.hw)
        text = json.dumps(res, indent=2)
        if o.json:
            write_text(o.json, text + "\n")
        print(text)
        d = res["first_difference"]
        if d is not None:  # the record is written: then the wrong result is an error, not only a number
            raise Disagreement(f"{o.backend} differs from the reference simulation on {d['samples_differing']} of "
                               f"{res['samples']} samples (first: sample {d['sample']}, output {d['output']}: "
                               f"{d['backend']} against {d['reference']}); report this network as a bug")
    return run_cli("fastsnn-run", go, args)


if __name__ == "__main__":
    sys.exit(main())
