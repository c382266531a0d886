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
"""


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
