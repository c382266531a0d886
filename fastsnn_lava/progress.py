"""Progress bars that stay bars in a terminal and become a few log lines elsewhere.

In a terminal, :func:`bar` is a plain ``tqdm`` bar (redrawn in place, cleared when ``leave=False``).
Outside one (``make demo > log``, CI, a batch job), tqdm would still write every redraw, separated
by ``\\r``, into the log: thousands of redraws on one "line". There it logs instead

* one line when the work starts,
* one line at most every ``LOG_SECONDS`` seconds, and only after another ``1/LOG_STEPS`` of the work,
* one line at the end (``leave`` is forced on),

each a complete ``\\n``-terminated line in tqdm's own format. ``FASTSNN_PROGRESS=bar`` or ``=lines``
overrides the terminal check.
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm

LOG_SECONDS = 30.0  # at most one line per this many seconds outside a terminal ...
LOG_STEPS = 10      # ... and only after another tenth of the work


class LineStream:
    """A stream for tqdm that turns each ``\\r``-redraw into one line and drops the blank clears."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class LogBar(tqdm):
    """tqdm whose postfix and description updates wait for the next line instead of forcing a redraw."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=False)


def interactive(stream=None) -> bool:
    """Whether progress should be drawn as bars: ``FASTSNN_PROGRESS`` if set, else ``stream.isatty()``."""
    mode = os.environ.get("FASTSNN_PROGRESS", "").lower()
    if mode in ("bar", "lines"):
        return mode == "bar"
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` in a terminal; a few whole log lines elsewhere (see the module)."""
    stream = kwargs.pop("file", None) or sys.stderr
    if interactive(stream):
        return tqdm(iterable, file=stream, **kwargs)
    total = kwargs.get("total")
    if total is None and iterable is not None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    kwargs.update(file=LineStream(stream), leave=True, mininterval=LOG_SECONDS, maxinterval=float("inf"),
                  miniters=max(1, (total or 0) // LOG_STEPS), ascii=True, dynamic_ncols=False, ncols=100)
    return LogBar(iterable, **kwargs)
