"""Network file formats: one handler per format, each a :class:`~.base.Format` (``detect``, ``read``,
``check``, ``write``, ``run_on_lava``) in its own module.

* ``netx-if`` (:mod:`.netx_if`): this project's netx file of signed/unsigned IF neurons;
* ``netx-cuba`` (:mod:`.netx_cuba`): a vanilla netx file of Lava's CUBA LIF;
* ``nir`` (:mod:`.nir_graph`): a NIR graph of the CUBA network.

Adding a format is one new module with a ``HANDLER`` and its entry in :data:`HANDLERS`.
"""
from __future__ import annotations

from ..errors import FastSNNError
from . import netx_cuba, netx_if, nir_graph
from .base import Format

HANDLERS = {h.name: h for h in (nir_graph.HANDLER, netx_cuba.HANDLER, netx_if.HANDLER)}  # detection order
DEFAULT = netx_if.HANDLER  # what an unrecognised file is read as: its reader names what is wrong


def detect(path) -> Format:
    """The handler of the file at ``path`` (the netx IF reader's precise errors for any other file)."""
    return next((h for h in HANDLERS.values() if h.detect(path)), DEFAULT)


def by_name(name: str) -> Format:
    if name not in HANDLERS:
        raise FastSNNError(f"unknown format {name!r}: use one of {tuple(HANDLERS)}")
    return HANDLERS[name]


def for_export(name: str, net) -> Format:
    """The handler that writes ``net`` for ``fastsnn-export --format name``: ``netx`` is the IF file or
    the vanilla CUBA file by the network's neuron family; any other name is a handler's own."""
    if name == "netx":
        return netx_cuba.HANDLER if net.family == "cuba" else netx_if.HANDLER
    return by_name(name)


def read(path, **options):
    """The network in ``path``, whatever its format."""
    return detect(path).read(path, **options)


def write(net, path, name: str) -> None:
    by_name(name).write(net, path)


__all__ = ["Format", "HANDLERS", "by_name", "detect", "for_export", "read", "write"]
