"""The netx CUBA format: a vanilla lava-dl netx file of ``CUBA`` LIF layers (``--neuron cuba``, or slayer's export).

Read and written by :mod:`fastsnn_lava.netx.cuba` (the shared layout of :mod:`fastsnn_lava.netx.layout`),
run on Lava by unmodified netx (:mod:`fastsnn_lava.lava.vanilla`).
"""
from __future__ import annotations

from ..ir import Network
from ..netx.cuba import check_lif_file, is_lif_file, read_lif_network
from ..netx.layout import write_layout
from .base import Format


class NetxCuba(Format):
    name = "netx-cuba"
    summary = "netx CUBA LIF"

    def detect(self, path) -> bool:
        return is_lif_file(path)

    def read(self, path, timesteps: int | None = None, input_max: int | None = None, **options) -> Network:
        return read_lif_network(path, timesteps, input_max)

    def check(self, net: Network) -> None:
        check_lif_file(net)

    def save(self, net: Network, path) -> None:
        write_layout(net, path)

    def run_on_lava(self, path, x, hw_run: bool = False, **options):
        from ..lava import isolated
        return isolated.run("vanilla", path, x, hw_run=hw_run)


HANDLER = NetxCuba()
