"""The worker of :mod:`fastsnn_lava.lava.isolated`: ``python -m fastsnn_lava.lava.worker JOB_DIR``.

Reads ``x.npy`` and ``job.pkl`` from JOB_DIR (written by the parent, in a private temporary
folder), runs the Lava function named there and writes ``result.pkl``: ``("ok", (out, info))``,
``("bad input", message)`` or ``("internal", message)``. SIGINT raises KeyboardInterrupt in the
main thread, so the runner's ``finally`` stops the Lava runtime before the worker exits.
"""
from __future__ import annotations

import ctypes
import pickle
import signal
import sys
from pathlib import Path

import numpy as np

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL to this worker when the command that started it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's own clean-up still applies
        pass


def _write(job: Path, result) -> None:
    tmp = job / "result.pkl.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(result, f)
    tmp.replace(job / "result.pkl")


def main(argv: list[str]) -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    job = Path(argv[0])
    with open(job / "job.pkl", "rb") as f:
        spec = pickle.load(f)
    x = np.load(job / "x.npy", allow_pickle=False)
    from ..errors import FastSNNError
    try:
        if spec["function"] == "runner":
            from .runner import run_lava as fn
        else:
            from .vanilla import run_vanilla as fn
        _write(job, ("ok", fn(spec["path"], x, **spec["kwargs"])))
        return 0
    except FastSNNError as e:
        _write(job, ("bad input", str(e)))
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # reported by the parent as an internal error
        _write(job, ("internal", f"{type(e).__name__}: {e}"))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
