"""The project's one error type for bad input.

Every problem a user can fix (a missing file, a file that is not a checkpoint
or not a netx network, an unsupported layer, an integer range that does not fit
the target) raises :class:`FastSNNError` with a one-line message that names the
problem and says what to do. The command-line tools print that line and exit
with code 2; any other exception is an internal error (exit code 1).
"""


class FastSNNError(Exception):
    """A problem with the user's input, reported as one line (exit code 2)."""


class Disagreement(Exception):
    """A backend computed other integers than the reference simulation (Lava ≠ reference): a wrong
    result, reported in one line with exit code 3 after the record was written."""
