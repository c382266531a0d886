"""``python -m fastsnn_lava.train`` and ``torchrun --nproc_per_node=N -m fastsnn_lava.train``: fastsnn-train.

Only the entry point: the training loop is :mod:`fastsnn_lava.training` and the command
:mod:`fastsnn_lava.cli.train`, so nothing in the package imports this module (no import cycle). The
command is imported only when this runs as a script: no library module imports the command line.
"""
import sys

if __name__ == "__main__":
    from fastsnn_lava.cli.train import main
    sys.exit(main())
