"""Command-line tools. Exit codes: 0 success, 2 bad input, 1 internal error, 130 interrupted."""
from __future__ import annotations

import argparse
import sys
import traceback

from ..errors import FastSNNError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention too)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=description, epilog=f"example:\n  {example}",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")
    return p


def run(prog: str, fn, args) -> int:
    """Call ``fn(args)``; turn errors into one line and an exit code."""
    try:
        fn(args)
        return 0
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
