"""What netx and Lava's fixed-point synapses make of an integer weight matrix (NumPy only, no Lava).

A synapse is *exact* when Lava's output equals ``W·s`` for every input ``s`` of the declared
box ``[lo, hi]^n``: spikes ``{−1, 0, +1}`` for hidden layers and shortcuts, raw integers
``[0, input_max]`` for the first layer. Paths are lava-nc 0.10.0 / lava-dl 0.6.0 under
``site-packages/lava/``: ``netx/`` = ``lib/dl/netx/``, ``wu`` = ``utils/weightutils.py``,
``dense`` = ``proc/dense/models.py``, ``conv/`` = ``proc/conv/``.

**netx's encoding** of a dense ``/layer`` synapse (``netx/hdf5.py:409-420``), ``M = max W``, ``m = min W``::

    clip   M > 254 ∧ m < 0: W ← clip(W, −256, 254); then m < −256 ∧ M > 0: the same    netx/utils.py:103-112
    mode   inhibitory if M < 0, excitatory if m ≥ 0, else mixed (M = 0 counts as mixed) netx/utils.py:114-122
    σ      min(127/M, −128/m) mixed | −256/m inhibitory | 255/M excitatory             netx/utils.py:124-131
    k      ⌊log2 σ⌋ + [mixed]                                                          netx/utils.py:133
    n      n₀ − [mixed], n₀ = the largest n ≤ 8 with 2^n | every code                  netx/utils.py:135-146
    out    W' = W << k (int32), num_weight_bits = 8 − k − n, weight_exp = −k             netx/utils.py:148-151

netx's ``Dense`` block hands ``W'``, ``weight_exp`` and ``num_weight_bits`` to Lava's ``Dense``
but drops the sign mode (``netx/blocks/process.py:141-163``), and the file has no key for it.

**Lava's fixed-point Dense** (``dense:77-107``), sign mode ``μ`` given or else determined::

    μ      excitatory if min W' ≥ 0, inhibitory if max W' ≤ 0, else mixed      wu:36-41, dense:84-85
    clip   W'' = clip(W', [−256, 255] | [0, 255] | [−255, 0])  (mixed|exc.|inh.)   wu:275-295, dense:87
    trunc  t = 8 − num_weight_bits + [μ mixed];  W''' = (W'' >> t) << t,
           on −W'' for inhibitory (magnitudes round toward 0)                      wu:230-247, dense:88-90
    sum    a = (W'''·s) >> −weight_exp  (<< weight_exp when > 0), in int32         dense:97-107

**Exactness.** Write ``a = ⌊(2^e·W'''·s) / 2^k⌋`` with ``e = max(weight_exp, 0)``, ``k = max(−weight_exp, 0)``
and ``E = 2^e·W''' − 2^k·W``. As ``2^k·W·s`` is a multiple of 2^k, ``a = W·s + ⌊E·s / 2^k⌋``, so a row
is exact iff ``0 ≤ E_o·s ≤ 2^k − 1`` on the whole box: ``Σ_i min(E_oi·lo, E_oi·hi) ≥ 0`` and
``Σ_i max(E_oi·lo, E_oi·hi) ≤ 2^k − 1``, and ``|W'''·s| < 2^31`` (the int32 sum).
When netx and Lava agree on the mode, ``t = k + n₀`` and ``W'`` is a multiple of ``2^(k+n₀)``, so only
the clip can err: ``W' = −256`` in inhibitory mode, i.e. ``M < 0`` and ``|m| = 2^j`` (σ·|m| = 256). They
disagree exactly when ``M = 0 > m``: netx mixed, Lava inhibitory, ``t = k + n₀ − 1``; again the clip of
``|m|·2^k = 256`` (``|m| = 2^j``) errs, and for ``m < −128`` with an odd code ``t = −1`` (NumPy's shift by
−1 zeroes every weight). So for codes in ``[−256, 254]``, not all zero, on spikes (:func:`rule`, checked
against Lava for every 1×2 matrix): **exact iff the matrix has a positive code, or its minimum is not −2^j and
not (M = 0, m < −128 and an odd code)**; within 8-bit codes ``[−128, 127]``: iff a positive code or ``m ≠ −2^j``.

**The mixed encoding** (the loader's dense shortcuts): ``wu.optimize_weight_bits(W, MIXED)``
(``wu:53-92``: ``k = ⌊log2 min(127/M⁺, 128/|m⁻|)⌋ + 1`` over the non-empty signs, ``wu:147-162``;
``num_weight_bits = 8 − k − (n₀ − 1)``, ``wu:185-201``) with ``sign_mode = MIXED`` passed to ``Dense``:
the modes agree, ``W' ∈ [−256, 254]``, ``t = k + n₀``: exact for every code in ``[−256, 254]``.

**Conv** (``netx/hdf5.py:492-544``, ``netx/blocks/process.py:447-461``): the weights go to Lava's ``Conv``
as written; its fixed model ignores ``weight_exp``/``num_weight_bits`` (``conv/models.py:34-54``),
convolves in float64 (exact below 2^53, ``conv/utils.py:253-297``), casts to int32 (``conv/utils.py:218``)
and wraps to 24 bits (``conv/models.py:78-79``, ``conv/utils.py:67-84``): exact iff every output lies in
``[−2^23, 2^23 − 1]``. No sign mode, no clip, no truncation: the dense bug does not reach conv.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIXED, EXCITATORY, INHIBITORY = "mixed", "excitatory", "inhibitory"
SUM_BOUND = 2 ** 31 - 1        # int32 accumulator of Lava's Dense (dense:97-102)
CONV_BITS = 24                 # conv/models.py:78-79


@dataclass(frozen=True)
class Encoding:
    """What a Lava ``Dense`` is built with: ``weights``, ``weight_exp``, ``num_weight_bits`` and,
    when ``explicit``, ``sign_mode`` (else Lava determines it from ``weight``)."""
    weight: np.ndarray
    num_weight_bits: int
    weight_exp: int
    sign_mode: str
    explicit: bool


@dataclass(frozen=True)
class Effective:
    """The integers Lava's Dense multiplies (``W'''``) and its output exponent: ``a = (W'''·s) >> −weight_exp``."""
    weight: np.ndarray
    weight_exp: int
    sign_mode: str
    clip: tuple
    encoding: Encoding


def trailing_zeros(w: np.ndarray) -> int:
    """n₀: the largest n ≤ 8 with 2^n dividing every code (netx/utils.py:135-144, wu:185-194)."""
    n = 8
    while n > 0 and np.any(np.asarray(w, dtype=np.int64) % (1 << n)):
        n -= 1
    return n


def netx_encoding(w) -> Encoding:
    """netx's ``optimize_weight_bits`` (netx/utils.py:80-158); the sign mode is not passed on."""
    w = np.asarray(w, dtype=np.int64)
    M, m = int(w.max()), int(w.min())
    if M > 254 and m < 0:                                   # utils.py:103-107
        w = np.clip(w, -256, 254)
        M = int(w.max())
    if m < -256 and M > 0:                                  # utils.py:108-112 (tests the old minimum)
        w = np.clip(w, -256, 254)
        m = int(w.min())
    mode = INHIBITORY if M < 0 else EXCITATORY if m >= 0 else MIXED
    mixed = int(mode == MIXED)
    if mode == MIXED:                                       # utils.py:124-131 (127/0 = inf)
        scale = min(127 / M if M else np.inf, -128 / m)
    elif mode == INHIBITORY:
        scale = -256 / m
    else:
        scale = 255 / M if M else np.inf
    if not np.isfinite(scale):
        raise ValueError("all weights are zero: netx's optimize_weight_bits divides by a maximum of 0")
    k = int(np.floor(np.log2(scale))) + mixed              # utils.py:133
    n = trailing_zeros(w) - mixed                           # utils.py:146
    shifted = np.left_shift(w.astype(np.int32), k)          # utils.py:151
    return Encoding(shifted.astype(np.int64), 8 - k - n, -k, mode, False)


def mixed_encoding(w) -> Encoding:
    """Lava's own ``optimize_weight_bits(W, SignMode.MIXED)`` (wu:53-92, loihi2=False), the mode passed on."""
    w = np.asarray(w, dtype=np.int64)
    M, m = int(w.max()), int(w.min())
    if M > 255 or m < -256:                                 # wu:95-118
        raise ValueError(f"weights have to be between -256 and 255 for mixed sign, got [{m}, {M}]")
    if M == m == 0:                                         # wu:143-145
        k = 0
    else:                                                   # wu:147-160
        k = int(np.floor(np.log2(min(127 / M if M > 0 else np.inf, -128 / m if m < 0 else np.inf)))) + 1
    nbits = 8 - k - (trailing_zeros(w) - 1)                 # wu:196-199
    shifted = np.left_shift(w.astype(np.int32), k)          # wu:79-80
    return Encoding(shifted.astype(np.int64), nbits, -k, MIXED, True)


def lava_sign_mode(w) -> str:
    """``determine_sign_mode`` (wu:21-43)."""
    return EXCITATORY if np.min(w) >= 0 else INHIBITORY if np.max(w) <= 0 else MIXED


def clip_range(mode: str, num_bits: int = 8) -> tuple:
    """The weight register's range after ``clip_weights`` (wu:277-295): inhibitory clips ``−W``."""
    hi = 2 ** num_bits - 1
    return {MIXED: (-2 ** num_bits, hi), EXCITATORY: (0, hi), INHIBITORY: (-hi, 0)}[mode]


def lava_clip(w, mode: str, num_bits: int = 8) -> np.ndarray:
    """``clip_weights`` (wu:250-295, learning_simulation False)."""
    lo, hi = clip_range(mode, num_bits)
    return np.clip(np.asarray(w).astype(np.int32), lo, hi).astype(np.int32)


def lava_truncate(w, mode: str, num_weight_bits: int, max_bits: int = 8) -> np.ndarray:
    """``truncate_weights`` (wu:204-247): ``(W >> t) << t``, ``t = 8 − bits + [mixed]``, on −W if inhibitory.
    NumPy shifts by t < 0 or t ≥ 32 give 0 (−1 for a negative ``>>``), as in Lava."""
    w = np.asarray(w).astype(np.int32)
    sign = -1 if mode == INHIBITORY else 1
    t = max_bits - num_weight_bits + int(mode == MIXED)
    return sign * ((sign * w >> t) << t)


def dense_effective(w, encoding: str = "netx") -> Effective:
    """What Lava's fixed-point Dense multiplies (dense:82-91) for ``encoding`` ``"netx"`` or ``"mixed"``."""
    enc = netx_encoding(w) if encoding == "netx" else mixed_encoding(w)
    mode = enc.sign_mode if enc.explicit else lava_sign_mode(enc.weight)
    clipped = lava_clip(enc.weight, mode)
    final = lava_truncate(clipped, mode, enc.num_weight_bits)
    return Effective(final.astype(np.int64), enc.weight_exp, mode, clip_range(mode), enc)


def dense_output(eff: Effective, s) -> np.ndarray:
    """Lava's Dense output for inputs ``s`` ``(n,)`` or ``(n, B)``: the int32 sum and shift (dense:97-107)."""
    acc = eff.weight.astype(np.int32).dot(np.asarray(s).astype(np.int32))
    e = eff.weight_exp
    return np.left_shift(acc, e) if e > 0 else np.right_shift(acc, -e)


def _box(E: np.ndarray, lo: int, hi: int):
    """Per row, the least and largest ``E_o·s`` over ``s ∈ [lo, hi]^n`` (Python integers, no overflow)."""
    E = E.astype(object)
    return (np.minimum(E * lo, E * hi).sum(1), np.maximum(E * lo, E * hi).sum(1))


def _witness(E_row: np.ndarray, lo: int, hi: int, low: bool) -> np.ndarray:
    """An input in the box that attains the least (``low``) or largest ``E·s``."""
    at_lo = (E_row > 0) == low
    return np.where(E_row == 0, 0 if lo <= 0 <= hi else lo, np.where(at_lo, lo, hi)).astype(np.int64)


@dataclass(frozen=True)
class Verdict:
    """``exact``; else ``reason`` (one line) and, for dense, ``witness = (row, s)``: an input on which
    Lava's output differs from ``W·s``."""
    exact: bool
    reason: str | None = None
    witness: tuple | None = None


def is_pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def _advice(w: np.ndarray) -> str:
    M, m = int(w.max()), int(w.min())
    if M <= 0 and m < -128 and not is_pow2(-m):
        return "keep the codes in [-128, 127] (8-bit weights)"
    if M <= 0:
        return "retrain or requantize it so that it has a positive code or a minimum other than -2^j"
    return "quantize the weights to 8 bits"


def _dense_detail(w, eff: Effective, row: int, E: np.ndarray) -> str:
    col = int(np.argmax(np.abs(E[row])))
    enc, k = eff.encoding, -eff.weight_exp
    q, q1, q3 = int(w[row, col]), int(enc.weight[row, col]), int(eff.weight[row, col])
    acts = q3 * 2.0 ** eff.weight_exp
    return (f"netx writes code {q} as {q1} = {q}·2^{k} ({enc.sign_mode} sign, {enc.num_weight_bits} weight bits), "
            f"Lava's Dense reads {eff.sign_mode} sign, clips its weight register to {list(eff.clip)} and keeps "
            f"{q3}, so the code acts as {acts:g}")


def dense_verdict(w, lo: int, hi: int, encoding: str = "netx") -> Verdict:
    """Whether Lava's Dense computes ``W·s`` for every ``s ∈ [lo, hi]^n`` (see the module docstring)."""
    w = np.asarray(w, dtype=np.int64).reshape(len(w), -1)
    M, m = int(w.max()), int(w.min())
    try:
        eff = dense_effective(w, encoding)
    except ValueError as e:
        return Verdict(False, f"dense weights in [{m}, {M}]: {e}")
    e, k = max(eff.weight_exp, 0), max(-eff.weight_exp, 0)
    E = (eff.weight << e) - (w << k)
    low, high = _box(E, lo, hi)
    bad = np.flatnonzero((low < 0) | (high > 2 ** k - 1))
    if bad.size:
        row = int(bad[0])
        s = _witness(E[row], lo, hi, low=bool(low[row] < 0))
        return Verdict(False, f"dense weights in [{m}, {M}] are not exact in netx + Lava: "
                              f"{_dense_detail(w, eff, row, E)}; {_advice(w)}", (row, s))
    a_lo, a_hi = _box(eff.weight, lo, hi)
    peak = max(-min(a_lo), max(a_hi))
    if peak > SUM_BOUND:
        row = int(np.argmax(np.maximum(-a_lo, a_hi)))
        s = _witness(eff.weight[row], lo, hi, low=bool(-a_lo[row] >= a_hi[row]))
        return Verdict(False, f"dense weights in [{m}, {M}]: Lava's int32 synaptic sum could reach {peak}, "
                              f"beyond {SUM_BOUND}: use smaller inputs or a narrower layer", (row, s))
    return Verdict(True)


def conv_verdict(w, lo: int, hi: int) -> Verdict:
    """Whether Lava's Conv output ``W ⋆ s`` stays inside its 24-bit wrap for every ``s ∈ [lo, hi]``."""
    w = np.asarray(w, dtype=np.int64)
    a_lo, a_hi = _box(w.reshape(len(w), -1), lo, hi)
    bound = 2 ** (CONV_BITS - 1)
    peak = max(-min(a_lo), max(a_hi))
    if min(a_lo) < -bound or max(a_hi) > bound - 1:
        return Verdict(False, f"conv outputs could reach {peak}, beyond Lava's {CONV_BITS}-bit synaptic output "
                              f"(±2^{CONV_BITS - 1}): use smaller inputs, weights or kernels")
    return Verdict(True)


def synapse_verdict(kind: str, w, lo: int, hi: int, encoding: str = "netx") -> Verdict:
    """:func:`dense_verdict` or :func:`conv_verdict` by ``kind``."""
    return dense_verdict(w, lo, hi, encoding) if kind == "dense" else conv_verdict(w, lo, hi)


def rule(w) -> bool:
    """The closed form for dense codes in [−256, 254], not all zero, on spikes {−1, 0, 1} (netx encoding):
    exact unless ``max W ≤ 0`` and (``min W = −2^j``, or ``max W = 0``, ``min W < −128`` and an odd code)."""
    w = np.asarray(w, dtype=np.int64)
    M, m = int(w.max()), int(w.min())
    if M > 0:
        return True
    return not (is_pow2(-m) or (M == 0 and m < -128 and trailing_zeros(w) == 0))
