"""Command-line tools, one module each (``fastsnn_lava.cli.export.main([...])`` and so on).

Exit codes: 0 success, 2 bad input, 1 internal error, 3 wrong result (fastsnn-run: a backend's integers differ
from the reference simulation; the record is still written), 130 interrupted (SIGINT), 143 terminated (SIGTERM).
The shared parser and error handling live in :mod:`fastsnn_lava.cli.common`: this package defines no
names of its own, so none can be shadowed by a submodule of the same name (``cli.run``). Each command's
flags, defaults and choices come from its dataclass in :mod:`fastsnn_lava.options`; the commands call
:mod:`fastsnn_lava.pipeline` with those options as keywords and print with :mod:`fastsnn_lava.tables`.
This layer sits on top: nothing else in the package imports it.
"""
