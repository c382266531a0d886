"""The netx IF format: this project's ``SIGNED_IF``/``UNSIGNED_IF``/``ACCUMULATE`` netx file (export/FORMAT.md).

Read by :func:`fastsnn_lava.netx.read_network`, written by :func:`fastsnn_lava.netx.write_network`
(the shared layout of :mod:`fastsnn_lava.netx.layout`), run on Lava by netx with the project's
neuron processes (:mod:`fastsnn_lava.lava.runner`).
"""
from __future__ import annotations

from ..ir import Network
from ..netx.read import read_network
from ..netx.schema import LAYER_GROUP, META_GROUP
from ..netx.write import check_netx_weights
from ..netx.layout import write_layout
from .base import Format, hdf5_keys


class NetxIF(Format):
    name = "netx-if"
    summary = "netx IF (SIGNED_IF/UNSIGNED_IF)"

    def detect(self, path) -> bool:
        from ..netx.cuba import is_lif_file
        return {LAYER_GROUP, META_GROUP} <= hdf5_keys(path) and not is_lif_file(path)

    def read(self, path, **options) -> Network:
        return read_network(path)

    def check(self, net: Network) -> None:
        check_netx_weights(net)

    def save(self, net: Network, path) -> None:
        write_layout(net, path)

    def run_on_lava(self, path, x, progress: bool = True, hw: str | None = "loihi2", hw_run: bool = False):
        from ..lava import isolated
        return isolated.run("runner", path, x, progress=progress, hw=hw, hw_run=hw_run)


HANDLER = NetxIF()
