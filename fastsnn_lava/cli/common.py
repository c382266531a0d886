"""What every command shares: a one-line-error parser built from :mod:`fastsnn_lava.options`, and the
error-to-exit-code wrapper."""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from ..errors import Disagreement, FastSNNError
from ..heap import keep_freed_memory
from ..options import fields


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention too)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def integer(low: int):
    """An argparse type: an integer ≥ ``low`` (``--batch-size 0`` is refused while parsing, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer ≥ {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer ≥ {low}, got {value}")
        return value
    return parse


def real(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite number in the interval (``nan``, ``inf`` and values outside are refused)."""
    span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {span}, got {text!r}") from None
        inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not math.isfinite(value) or not inside:
            raise argparse.ArgumentTypeError(f"must be a finite number in {span}, got {text}")
        return value
    return parse


def choice_list(choices: tuple):
    """An argparse type: one of ``choices``, or a comma-separated list of them (``half,bias,half``)."""
    def parse(text: str) -> str:
        if not text or any(item not in choices for item in text.split(",")):
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}, or a comma-separated list of "
                                             f"them, got {text!r}")
        return text
    return parse


def parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=description, epilog=f"example:\n  {example}",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")
    return p


def argument(p: argparse.ArgumentParser, cls, name: str, *flags: str, **overrides) -> None:
    """Add the flag of field ``name`` of the options class ``cls`` (its default, help, range, choices).

    The value lands in ``args.<name>``; ``flags`` replace the field's flag (e.g. ``"-o", "--output"``),
    ``overrides`` any argparse keyword (e.g. ``choices`` known only at run time)."""
    f = fields(cls)[name]
    m = f.metadata
    flags = flags or (m["flag"] or "--" + name.replace("_", "-"),)
    if isinstance(f.default, bool):  # True: --no-NAME sets it off; False: --NAME sets it on
        if f.default:
            flags = tuple(x.replace("--", "--no-", 1) for x in flags)
        kw = dict(action="store_false" if f.default else "store_true", help=m["help"])
    else:
        kind = m["type"] or (str if f.default is None else type(f.default))
        if kind is int and m["low"] is not None:
            kind = integer(m["low"])
        elif kind is float and m["low"] is not None:
            kind = real(m["low"], math.inf if m["high"] is None else m["high"], m["low_open"], m["high_open"])
        listed = m.get("per_item")
        kw = dict(default=f.default, type=choice_list(m["choices"]) if listed else None if kind is str else kind,
                  choices=None if listed else m["choices"], help=m["help"],
                  metavar=m["metavar"] or ("{" + ",".join(m["choices"]) + "}[,…]" if listed else None),
                  required=m["required"] or None)
    kw.update(overrides)
    p.add_argument(*flags, dest=name, **{k: v for k, v in kw.items() if v is not None})


def arguments(p: argparse.ArgumentParser, cls, skip: tuple = (), **overrides: dict) -> None:
    """:func:`argument` for every field of ``cls`` but ``skip``; ``overrides[name]``: that field's keywords
    (``flags``: its flags)."""
    for name in fields(cls):
        if name not in skip:
            kw = dict(overrides.get(name, {}))
            argument(p, cls, name, *kw.pop("flags", ()), **kw)


def options(cls, args: argparse.Namespace):
    """The options object of ``cls`` from parsed ``args`` (fields the command has no flag for keep their default)."""
    return cls(**{name: getattr(args, name) for name in fields(cls) if hasattr(args, name)})


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt so that ``finally`` blocks clean up
    (the atomic writers remove their temporary files) before the command exits 143."""


def _terminate(signum, frame):
    raise Terminated()


def run_cli(prog: str, fn, args) -> int:
    """Call ``fn(args)``; turn errors into one line and an exit code (SIGINT 130, SIGTERM 143). Freed
    tensor memory stays in the process (:mod:`fastsnn_lava.heap`)."""
    keep_freed_memory()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        fn(args)
        return 0
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except Disagreement as e:
        print(f"{prog}: wrong result: {e}", file=sys.stderr)
        return 3
    except FastSNNError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal error: one line unless --debug
        if getattr(args, "debug", False):
            traceback.print_exc()
        else:
            print(f"{prog}: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
                  file=sys.stderr)
        return 1


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_outputs(outputs: dict, inputs: dict) -> None:
    """Refuse, before any work, an output path that cannot or must not be written.

    ``outputs`` and ``inputs`` map an option's name (``-o``, ``--json``, ``model``) to a path or None.
    An output must not be a folder, must lie in an existing folder, must not be one of the inputs
    (also through a link: writing it would destroy that input) and must not be another output.
    """
    seen = {}
    for flag, value in outputs.items():
        if value is None:
            continue
        path = Path(value)
        if path.is_dir():
            raise FastSNNError(f"{flag} {value} is a folder: give the name of a file to write")
        parent = path.parent
        if not parent.exists():
            raise FastSNNError(f"{flag} {value}: the folder {parent} does not exist (create it first)")
        if not parent.is_dir():
            raise FastSNNError(f"{flag} {value}: {parent} is not a folder")
        for name, src in inputs.items():
            if src is not None and _same(path, Path(src)):
                raise FastSNNError(f"{flag} {value} is also the input {name}: writing it would destroy that "
                                   "file; choose another output name")
        for other, p in seen.items():
            if _same(path, p):
                raise FastSNNError(f"{flag} and {other} are the same file {value}: give each its own name")
        seen[flag] = path
