"""A broken hardware limit: which layer, which quantity, its value and the target's limit.

:func:`fastsnn_lava.hardware.violations` lists every one of a network on a target (``fastsnn-export
--hw none`` prints them for each target); :func:`fastsnn_lava.hardware.check_network` refuses the
first with its :attr:`Violation.message`. A violation is ``value > limit`` for an upper limit
(e.g. a weight code 300 > 127) and ``value < limit`` for a lower one (a weight code −300 < −128).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """``layer`` (1-based; None: the whole network) breaks ``limit`` with ``value`` of ``quantity``;
    ``message``: the one-line refusal, with what to change; ``unit``: the limit's unit, if any."""

    layer: int | None
    quantity: str
    value: int | float
    limit: int | float
    message: str
    unit: str = ""

    def short(self) -> str:
        """``layer 3 fan-in 8192 > 4096 inputs per core``."""
        where = f"layer {self.layer} " if self.layer is not None else ""
        sign = "<" if self.value < self.limit else ">"
        return f"{where}{self.quantity} {self.value} {sign} {self.limit}" + (f" {self.unit}" if self.unit else "")
