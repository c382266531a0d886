"""fastsnn-export: model.pt → lava-dl netx HDF5 network (net.h5), or with --neuron cuba --format nir a NIR graph."""
from __future__ import annotations

import dataclasses
import sys

from ..options import ExportOptions
from .common import arguments, check_outputs, options, parser, run_cli


def main(argv=None) -> int:
    p = parser("fastsnn-export", "Convert a checkpoint to an integer SNN and write a lava-dl netx HDF5 file.",
               "fastsnn-export model.pt -o net.h5  |  fastsnn-export model.pt --neuron cuba --format nir -o net.nir")
    p.add_argument("model", help="checkpoint written by fastsnn-train")
    p.add_argument("-o", "--output", required=True, help="file to write (netx HDF5, or NIR HDF5 with --format nir)")
    arguments(p, ExportOptions)
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import export
        check_outputs({"-o": a.output}, {"model": a.model, "--hw": a.hw})
        o = options(ExportOptions, a)
        net = export(a.model, a.output, **dataclasses.asdict(o))
        kind = "CUBA LIF" if o.neuron == "cuba" else f"{o.neuron} IF"
        if o.format == "nir":
            kind += " as a NIR graph"
        print(f"{len(net.layers)} layers, {kind}, b = {net.bits}, T = {net.timesteps} -> {a.output}")
    return run_cli("fastsnn-export", go, args)


if __name__ == "__main__":
    sys.exit(main())
