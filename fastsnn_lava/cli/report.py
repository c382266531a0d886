"""fastsnn-report: neurons, synapses, cores, activity and estimated energy/latency of a netx network."""
from __future__ import annotations

import sys

from ..options import ReportOptions
from ..tables import report_summary
from .common import arguments, check_outputs, options, parser, run_cli


def main(argv=None) -> int:
    from ..data import DATASET_HELP
    p = parser("fastsnn-report", "Per-layer neurons, synapses, cores, measured activity and estimated energy, "
               "latency and throughput on Loihi 2 and Loihi 1, against the quantized ANN on a 45 nm accelerator.",
               "fastsnn-report net.h5 --dataset digits --hw loihi2 --json r.json --plot r.png")
    p.add_argument("network", help="netx HDF5 file: fastsnn-export's (any --neuron) or a slayer CUBA export")
    arguments(p, ReportOptions, dataset={"help": f"simulate its test set: {DATASET_HELP}"})
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import report
        o = options(ReportOptions, a)
        check_outputs({"--json": o.json, "--plot": o.plot}, {"network": a.network, "--input": o.input, "--hw": o.hw})
        rec = report(a.network, o.dataset, o.input, o.hw, o.samples, o.steps, o.json, o.plot)
        print(report_summary(rec))
    return run_cli("fastsnn-report", go, args)


if __name__ == "__main__":
    sys.exit(main())
