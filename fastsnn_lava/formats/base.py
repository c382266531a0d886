"""The interface every network file format implements (one handler per format, :mod:`fastsnn_lava.formats`).

A handler reads a file into an :class:`~fastsnn_lava.ir.Network` and writes one back; ``check``
refuses, in one line naming the feature, what the format cannot hold, before anything is written.
"""
from __future__ import annotations

import h5py

from ..errors import FastSNNError
from ..ir import Network


class Format:
    """One file format: subclasses set ``name``/``summary`` and implement ``detect``, ``read``, ``check``, ``save``."""

    name = ""
    summary = ""

    def detect(self, path) -> bool:
        """Whether ``path`` is a file of this format (no error for any other file)."""
        raise NotImplementedError

    def read(self, path, **options) -> Network:
        raise NotImplementedError

    def check(self, net: Network) -> None:
        """Raise a one-line :class:`~fastsnn_lava.errors.FastSNNError` for what this format cannot hold."""
        raise NotImplementedError

    def save(self, net: Network, path) -> None:
        """Write a network :meth:`check` accepted."""
        raise NotImplementedError

    def write(self, net: Network, path) -> None:
        """Check ``net`` against the format, then write it (atomically: a refusal leaves nothing behind)."""
        self.check(net)
        self.save(net, path)

    def run_on_lava(self, path, x, **options):
        """``(outputs (N, n_out), timing facts)`` of the file run by Lava, in its isolated worker."""
        raise FastSNNError(f"{path}: {self.summary} files do not run on Lava: export a netx file")


def hdf5_keys(path) -> set:
    """The top-level keys of an HDF5 file (empty for anything else)."""
    try:
        with h5py.File(path, "r") as f:
            return set(f.keys())
    except Exception:  # not HDF5, unreadable: no format of this kind
        return set()
