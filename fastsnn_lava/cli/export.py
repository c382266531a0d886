"""fastsnn-export: model.pt → lava-dl netx HDF5 network (net.h5), or with --neuron cuba --format nir a NIR graph."""
from __future__ import annotations

import sys

from .common import check_outputs, parser, run_cli


def main(argv=None) -> int:
    p = parser("fastsnn-export", "Convert a checkpoint to an integer SNN and write a lava-dl netx HDF5 file.",
               "fastsnn-export model.pt -o net.h5  |  fastsnn-export model.pt --neuron cuba --format nir -o net.nir")
    p.add_argument("model", help="checkpoint written by fastsnn-train")
    p.add_argument("-o", "--output", required=True, help="file to write (netx HDF5, or NIR HDF5 with --format nir)")
    p.add_argument("--neuron", default="signed", choices=("signed", "unsigned", "cuba"),
                   help="hidden neurons: signed IF (Fast-SNN, default), unsigned IF (ablation), or cuba: Lava's "
                        "standard LIF, a vanilla netx file Loihi 2 runs natively (lossy, see export/FORMAT.md)")
    p.add_argument("--cuba-threshold", default="half", choices=("theta", "half", "bias"),
                   help="with --neuron cuba: the LIF threshold standing in for the IF's initial θ/2 (default half)")
    p.add_argument("--format", default="netx", choices=("netx", "nir"),
                   help="netx: lava-dl netx HDF5 (default); nir: a NIR graph (nir.read) of the --neuron cuba "
                        "network, IF nodes with integer weights for snnTorch/Norse/... (see export/FORMAT.md §11)")
    p.add_argument("--hw", default="loihi2", help="hardware target whose limits are checked (name or YAML path)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="also accept a pickled QuantNet (unpickling runs the file's code: trusted files only)")
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import export
        check_outputs({"-o": a.output}, {"model": a.model, "--hw": a.hw})
        net = export(a.model, a.output, a.neuron, a.hw, a.trust_pickle, a.cuba_threshold, a.format)
        kind = "CUBA LIF" if a.neuron == "cuba" else f"{a.neuron} IF"
        if a.format == "nir":
            kind += " as a NIR graph"
        print(f"{len(net.layers)} layers, {kind}, b = {net.bits}, T = {net.timesteps} -> {a.output}")
    return run_cli("fastsnn-export", go, args)


if __name__ == "__main__":
    sys.exit(main())
