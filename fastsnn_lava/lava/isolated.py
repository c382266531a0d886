"""Lava simulations in a process group of their own, so that Ctrl-C and SIGTERM end them cleanly.

Lava 0.10 runs every process model in a forked child and talks to them over shared-memory
channels served by threads. Ctrl-C in a terminal sends SIGINT to the whole foreground process
group, so every child raises KeyboardInterrupt in its own channel threads at once: the runtime
then hangs or runs on, and children outlive the command.

Here the simulation runs in a worker, ``python -m fastsnn_lava.lava.worker``, started in a new
session. A signal sent to the user's process group reaches only the command, which then ends the
worker the orderly way first and the hard way if it must:

1. SIGINT to the worker alone: it raises KeyboardInterrupt in its main thread, and the runner's
   ``finally`` stops the Lava runtime (its children are healthy and answer);
2. after ``GRACE`` seconds, SIGKILL to the worker's whole process group (Lava's children included);

then the command reaps the worker and re-raises, so it exits 130 (SIGINT) or 143 (SIGTERM) with
one line. The worker also asks the kernel to kill it if the command dies (``PR_SET_PDEATHSIG``).
Inputs go to the worker and results come back through files in a private temporary folder; the
worker's stderr (its progress bar, as a bar when ours is a terminal) is relayed to ours until the
worker is being stopped, so what a dying Lava runtime prints never reaches the user.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import FastSNNError

GRACE = 5.0  # seconds the worker gets to stop Lava after SIGINT before its group is killed
FUNCTIONS = ("runner", "vanilla")  # fastsnn_lava.lava.runner.run_lava, fastsnn_lava.lava.vanilla.run_vanilla


class _Relay:
    """Copies the worker's stderr (its progress bar, warnings, errors) to ours byte for byte, until muted."""

    def __init__(self, stream):
        self.stream, self.muted = stream, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        out = getattr(sys.stderr, "buffer", None)
        fd = self.stream.fileno()
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                return
            if not self.muted.is_set():
                try:
                    if out is not None:
                        out.write(chunk)
                        out.flush()
                    else:
                        sys.stderr.write(chunk.decode(errors="replace"))
                except (OSError, ValueError):  # our stderr is closed: keep draining the pipe
                    pass

    def mute(self) -> None:
        self.muted.set()

    def join(self) -> None:
        self.thread.join(timeout=10)
        self.stream.close()


def _end(proc: subprocess.Popen) -> None:
    """Stop the worker: SIGINT, then SIGKILL to its process group after GRACE seconds; reap it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(timeout=GRACE)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group: Lava's children
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run(function: str, path, x: np.ndarray, **kwargs) -> tuple[np.ndarray, dict]:
    """``function(path, x, **kwargs)`` (one of :data:`FUNCTIONS`) in a worker session; its result.

    A :class:`~fastsnn_lava.errors.FastSNNError` in the worker comes back as one; any other error as a
    RuntimeError naming it. KeyboardInterrupt or any exception here ends the worker first (see the module).
    """
    if function not in FUNCTIONS:
        raise ValueError(f"unknown Lava function {function!r}")
    with tempfile.TemporaryDirectory(prefix="fastsnn-lava-") as tmp:
        job = Path(tmp)
        np.save(job / "x.npy", np.ascontiguousarray(x), allow_pickle=False)
        with open(job / "job.pkl", "wb") as f:
            pickle.dump({"function": function, "path": str(path), "kwargs": kwargs}, f)
        from ..progress import interactive
        env = dict(os.environ, FASTSNN_PROGRESS="bar" if interactive(sys.stderr) else "lines")
        proc = subprocess.Popen([sys.executable, "-m", "fastsnn_lava.lava.worker", str(job)],
                                start_new_session=True, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        relay = _Relay(proc.stderr)
        try:
            while proc.poll() is None:
                time.sleep(0.05)  # not wait(): a signal handler must be able to interrupt us at once
        except BaseException:
            relay.mute()  # what a stopping worker prints (Lava's threads' KeyboardInterrupts) is not the user's
            _end(proc)
            relay.join()
            raise
        _end(proc)  # a clean exit leaves nothing, but a child the worker forgot would go with its group
        relay.join()
        result = job / "result.pkl"
        if not result.exists():
            raise RuntimeError(f"the Lava worker ended with exit code {proc.returncode} and no result")
        with open(result, "rb") as f:
            status, value = pickle.load(f)
    if status == "ok":
        return value
    if status == "bad input":
        raise FastSNNError(value)
    raise RuntimeError(value)
