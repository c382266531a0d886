"""The integrate-and-fire step of Fast-SNN, as one pure function.

The same function runs in the batched PyTorch reference simulation and inside
the Lava ``fixed_pt`` process model (NumPy arrays), so the two cannot drift apart.
It uses only operators that NumPy arrays and torch tensors share.

State per neuron: membrane ``v`` (starts at θ/2) and net spike count ``n``
(starts at 0). One step with input current ``I``, in this order::

    v ← v + I                                  (integrate)
    up   = [v ≥ θ]            ;  v ← v − θ·up   ;  n ← n + up
    down = [v < 0] ∧ [n > 0]  ;  v ← v + θ·down ;  n ← n − down     (signed only)
    s = up − down ∈ {−1, 0, +1}

The negative check uses the count updated by the positive check, so a −1 spike
only retracts a spike already sent: ``n`` stays in ``[0, T]`` and ``Σ_t s(t) = n ≥ 0``.
An unsigned neuron skips the negative check. With a constant current ``I`` for T
steps both give ``n = clip(floor((T·I + θ/2) / θ), 0, T)``: the b-bit quantizer
with round-half-up, which is why T = 2^b − 1 steps suffice.

The neuron families a layer can hold (``ir.Layer.neuron``) are the frozen records below:
:class:`SignedIF`, :class:`UnsignedIF`, :class:`Accumulator` (the IF family, simulated by
this step) and :class:`CubaLIF` (Lava's CUBA LIF, simulated by :mod:`fastsnn_lava.lif`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .errors import FastSNNError


def _heaviside(x):
    return (x >= 0) * 1


def if_step(v, n, current, theta, signed: bool = True, heaviside=_heaviside):
    """One time step of the (signed) IF neuron. Returns ``(v, n, s)``.

    ``v``, ``n`` and ``current`` are arrays of one shape (NumPy or torch, integer
    or float holding integers); ``theta`` is the integer threshold (scalar or
    broadcastable). Inputs are not modified in place. Both spikes are the step
    ``H(x) = [x ≥ 0]`` of an integer: ``up = H(v − θ)``, ``down = H(−v − 1)·[n > 0]``;
    ``heaviside`` replaces ``H`` (:mod:`fastsnn_lava.surrogate` passes one with a
    surrogate derivative).
    """
    v = v + current
    up = heaviside(v - theta)
    v = v - theta * up
    n = n + up
    if not signed:
        return v, n, up
    down = heaviside(-v - 1) * (n > 0)
    v = v + theta * down
    n = n - down
    return v, n, up - down


def constant_input_count(current, theta, timesteps: int):
    """Spike count of an IF neuron under a constant current (closed form).

    ``n = clip(floor((T·I + θ/2) / θ), 0, T)``, valid for signed and unsigned
    neurons; ``theta`` must be even. Works on NumPy arrays and torch tensors of
    integers (or floats holding integers).
    """
    acc = timesteps * current + theta // 2
    return (acc // theta).clip(0, timesteps)


# ---------------------------------------------------------------------------------------------------------------
# The neuron families of a layer (ir.Layer.neuron), NIR-node style: one frozen record per family, its equation in
# its docstring. ``name`` is the family's name in reports and the CLI; the netx files spell it in schema.py.
# ---------------------------------------------------------------------------------------------------------------

DECAY_MAX = 4096  # Lava's 12-bit decay unit: 4096 clears the state every step, 0 keeps it
VTH_MAX = 2 ** 17 - 1  # Lava's 17-bit threshold mantissa
NEVER_FIRES = VTH_MAX  # a CUBA output layer with this vThMant never spikes: it is read out as its voltage


def _even_threshold(threshold) -> int:
    if threshold is None or isinstance(threshold, bool) or int(threshold) != threshold \
            or int(threshold) <= 0 or int(threshold) % 2:
        raise FastSNNError(f"IF threshold must be an even positive integer, got {threshold}")
    return int(threshold)


@dataclass(frozen=True)
class IFNeuron:
    """What both integrate-and-fire neurons share: the threshold θ, an even positive integer (so that
    the initial membrane θ/2 is one too), and the step :func:`if_step`."""

    threshold: int
    family: ClassVar[str] = "if"
    accumulates: ClassVar[bool] = False

    def __post_init__(self):
        object.__setattr__(self, "threshold", _even_threshold(self.threshold))


@dataclass(frozen=True)
class SignedIF(IFNeuron):
    """Fast-SNN's signed integrate-and-fire neuron (:func:`if_step` with ``signed=True``).

    ``v(0) = θ/2``; per step ``v ← v + I``, ``up = [v ≥ θ]``, ``v ← v − θ·up``, ``n ← n + up``,
    ``down = [v < 0]∧[n > 0]``, ``v ← v + θ·down``, ``n ← n − down``;
    spike ``s = up − down ∈ {−1, 0, +1}``.
    """

    name: ClassVar[str] = "signed_if"
    signed: ClassVar[bool] = True


@dataclass(frozen=True)
class UnsignedIF(IFNeuron):
    """The unsigned integrate-and-fire neuron (ablation): :class:`SignedIF` without the negative check.

    ``v(0) = θ/2``; per step ``v ← v + I``, ``s = [v ≥ θ] ∈ {0, 1}``, ``v ← v − θ·s``.
    """

    name: ClassVar[str] = "unsigned_if"
    signed: ClassVar[bool] = False


@dataclass(frozen=True)
class Accumulator:
    """The output layer of an IF network: no threshold, no spike; its output is ``Σ_{t=1..T} I(t)``."""

    name: ClassVar[str] = "accumulate"
    family: ClassVar[str] = "if"
    signed: ClassVar[bool] = False
    accumulates: ClassVar[bool] = True
    threshold: ClassVar[None] = None


@dataclass(frozen=True)
class CubaLIF:
    """Lava's current-based leaky integrate-and-fire neuron in netx's integers (lava-nc 0.10.0
    ``PyLifResetModelBitAcc``).

    ``vth`` = ``vThMant``, ``i_decay``/``v_decay`` = ``iDecay``/``vDecay`` in 0..4096; with
    ``decay(x, d) = sign(x)·(|x|·(4096 − d) >> 12)``, per step (u = v = 0 at each window start)::

        u ← wrap₂₄(decay(u, iDecay) + (a_in << 6));  v ← clip(decay(v, vDecay) + u + (b << 6), ±(2^23 − 1))
        s = [v > vth << 6] ∈ {0, 1};  v ← 0 where s

    A ``vth`` of at least :data:`NEVER_FIRES` never fires: such an output layer is read out as ``v``.
    The step itself is :func:`fastsnn_lava.lif.cuba_step`.
    """

    vth: int
    i_decay: int
    v_decay: int
    name: ClassVar[str] = "cuba"
    family: ClassVar[str] = "cuba"
    signed: ClassVar[bool] = False
    accumulates: ClassVar[bool] = False
    threshold: ClassVar[None] = None

    def __post_init__(self):
        for key in ("vth", "i_decay", "v_decay"):
            object.__setattr__(self, key, int(getattr(self, key)))
        for key in ("i_decay", "v_decay"):
            if not 0 <= getattr(self, key) <= DECAY_MAX:
                raise FastSNNError(f"{key} {getattr(self, key)} must lie in 0..{DECAY_MAX}")

    @property
    def never_fires(self) -> bool:
        return self.vth >= NEVER_FIRES


IF_NEURONS = {"signed_if": SignedIF, "unsigned_if": UnsignedIF}


def if_neuron(name: str, threshold: int):
    """The hidden IF neuron called ``name`` (``signed_if`` or ``unsigned_if``) with threshold θ."""
    if name not in IF_NEURONS:
        raise FastSNNError(f"IF neuron {name!r} is not supported: use one of {tuple(IF_NEURONS)}")
    return IF_NEURONS[name](threshold)
