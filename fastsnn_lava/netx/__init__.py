"""lava-dl netx HDF5 files: writing and reading the integer network (no Lava import)."""
from .read import read_network
from .write import write_network

__all__ = ["read_network", "write_network"]
