"""fastsnn-export: model.pt (or your own model: --model FILE.py:FUNCTION --dataset NAME) → lava-dl netx HDF5
network (net.h5), or with --neuron cuba --format nir a NIR graph."""
from __future__ import annotations

import dataclasses
import sys

from ..options import ExportOptions
from .common import arguments, check_outputs, options, parser, run_cli


def _model_file(spec: str | None) -> str | None:
    """The Python file that ``--model FILE.py:FUNCTION`` names (None for a module name or no --model)."""
    if spec is None:
        return None
    from ..user_model import is_file, split
    where = split(spec)[0]
    return where if is_file(where) else None


def main(argv=None) -> int:
    p = parser("fastsnn-export", "Convert a checkpoint, or your own PyTorch model without training, to an integer "
               "SNN and write a lava-dl netx HDF5 file.",
               "fastsnn-export model.pt -o net.h5  |  fastsnn-export model.pt --neuron cuba --format nir -o net.nir"
               "\n  fastsnn-export --model my_net.py:build --weights my_net_state.pt --dataset digits -o net.h5")
    p.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT",
                   help="checkpoint written by fastsnn-train (or give --model instead)")
    p.add_argument("-o", "--output", required=True, help="file to write (netx HDF5, or NIR HDF5 with --format nir)")
    arguments(p, ExportOptions)
    args = p.parse_args(argv)

    def go(a):
        from ..pipeline import export
        check_outputs({"-o": a.output, "--save-checkpoint": a.save_checkpoint},
                      {"model": a.checkpoint, "--model": _model_file(a.model), "--weights": a.weights,
                       "--hw": a.hw})
        o = options(ExportOptions, a)
        net = export(a.checkpoint, a.output, **dataclasses.asdict(o), log=print)
        kind = "CUBA LIF" if o.neuron == "cuba" else f"{o.neuron} IF"
        if o.format == "nir":
            kind += " as a NIR graph"
        print(f"{len(net.layers)} layers, {kind}, b = {net.bits}, T = {net.timesteps} -> {a.output}")
        if net.meta.get("cuba_first_shift"):
            print(f"note: layer 1's weights, bias and threshold were divided by 2^{net.meta['cuba_first_shift']} so "
                  "that its input current fits Lava's 24-bit register (export/FORMAT.md §10)")
    return run_cli("fastsnn-export", go, args)


if __name__ == "__main__":
    sys.exit(main())
