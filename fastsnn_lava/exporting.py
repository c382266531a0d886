"""What ``fastsnn-export`` does to an integer network, whether it came from a checkpoint
(:func:`fastsnn_lava.pipeline.export`) or from a user's model (:mod:`fastsnn_lava.user_export`).

1. :func:`export_target`: the ``--neuron``/``--format`` choices are checked and the ``--hw`` target
   loaded before any conversion, so a careless option costs nothing;
2. :func:`write_network`: the network is checked against the target
   (:func:`fastsnn_lava.hardware.check_network`), or under ``--hw none`` (simulation only) nothing is
   refused but every target's broken limits are reported (:func:`fastsnn_lava.hardware.limits_report`);
   ``--neuron cuba`` turns it into Lava's CUBA LIF (:func:`fastsnn_lava.cuba.to_cuba`, its own ranges
   checked too) and the format's handler writes it atomically (:func:`fastsnn_lava.formats.for_export`).

A checkpoint fine-tuned through the CUBA LIF (``fastsnn-finetune --target cuba``, its record in the network's
meta under ``finetune``) holds codes tuned for that neuron and one threshold mapping: it is written only
as ``--neuron cuba`` with the same ``--cuba-threshold`` and ``--cuba-window`` (:func:`check_tuned_for`), anything else is
refused in one line, since it would silently be another, worse network.
"""
from __future__ import annotations

from .errors import FastSNNError
from .hardware import check_network, limits_report, load_target
from .ir import Network
from .options import FORMATS, NEURONS, hardware_target


def export_target(neuron: str, format: str, hw: str | None, cuba_window: int = 1) -> dict | None:
    """The loaded ``hw`` target (None for ``--hw none``), once ``neuron``, ``format`` and ``cuba_window`` are checked."""
    if neuron not in NEURONS:
        raise FastSNNError(f"--neuron must be one of {NEURONS}, got {neuron!r}")
    if cuba_window != 1 and neuron != "cuba":
        raise FastSNNError(f"--cuba-window {cuba_window} applies to --neuron cuba only: the IF network runs "
                           "T = 2^b − 1 steps")
    if format not in FORMATS:
        raise FastSNNError(f"--format must be one of {FORMATS}, got {format!r}")
    if format == "nir" and neuron != "cuba":
        from .formats.nir_graph import refusal
        raise FastSNNError(refusal(neuron))
    return load_target(hardware_target(hw)) if hardware_target(hw) else None


def check_tuned_for(net: Network, neuron: str, cuba_threshold: str, cuba_window: int = 1) -> None:
    """Refuse to write a CUBA-tuned network (see the module) as another neuron, threshold mapping or window."""
    tuned = net.meta.get("finetune") if isinstance(net.meta.get("finetune"), dict) else {}
    if tuned.get("target") != "cuba":
        return
    mode, window = tuned.get("cuba_threshold"), int(tuned.get("cuba_window", 1))
    if neuron != "cuba" or cuba_threshold != mode or cuba_window != window:
        flags = f"--neuron cuba --cuba-threshold {mode}" + (f" --cuba-window {window}" if window > 1 else "")
        raise FastSNNError(f"this checkpoint was fine-tuned through the CUBA LIF ({flags}): export it with "
                           f"{flags} (its codes are tuned for that network only)")


def write_network(net: Network, out: str, neuron: str, target: dict | None, cuba_threshold: str, format: str,
                  log=None, cuba_window: int = 1) -> Network:
    """Check the signed/unsigned IF ``net`` against ``target``, convert it for ``neuron``, write it to ``out``
    in ``format``; the network written. With no target, ``log`` (a callable taking one line, e.g. ``print``)
    receives :func:`~fastsnn_lava.hardware.limits_report` of the network written: nothing is refused."""
    check_tuned_for(net, neuron, cuba_threshold, cuba_window)
    if format == "nir" and net.has_skips:
        from .formats.nir_graph import RESIDUAL
        raise FastSNNError(RESIDUAL)
    if target:
        check_network(net, target)
    if neuron == "cuba":
        from .cuba import to_cuba
        net = to_cuba(net, cuba_threshold, cuba_window)
        if target:
            check_network(net, target)  # the CUBA network's own ranges
    if target is None and log is not None:
        log("--hw none: nothing refused; the limits of each hardware target:")
        for line in limits_report(net):
            log("  " + line)
    from .formats import for_export
    for_export(format, net).write(net, out)
    return net
