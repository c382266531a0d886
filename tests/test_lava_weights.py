"""The model of netx + Lava's fixed-point synapses (fastsnn_lava/netx/lava_weights.py) against Lava's own code.

The differential tests call netx's ``optimize_weight_bits`` and Lava's ``weightutils`` (the functions Lava's
``Dense`` fixed-point model runs, lava/proc/dense/models.py:82-107) on many integer matrices that hit the
edges, and compare the integers Lava multiplies, the weight exponent, the sign mode, the outputs, and the
model's verdict with a brute force over every input of the declared range.
"""
import itertools
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsnn_lava.errors import FastSNNError
from fastsnn_lava.ir import Layer, Network, Skip
from fastsnn_lava.neuron import SignedIF, Accumulator
from fastsnn_lava.netx import lava_weights as lw
from fastsnn_lava.netx.write import check_netx_weights

EDGES = [-300, -257, -256, -255, -200, -129, -128, -127, -100, -65, -64, -63, -33, -32, -3, -2, -1, 0,
         1, 2, 3, 63, 64, 100, 127, 128, 129, 200, 254, 255, 256, 300]
FLAVORS = ["raw", "no_positive", "negative", "no_negative", "max_zero", "min_zero", "single", "pow2_min",
           "pow2_scaled"]
# the reported bug cases (a 4→2 classifier) and their neighbours
BUG = {"[-64, 0]": [[-64, 0, -32, -64], [0, -64, -64, 0]], "all -64": [[-64] * 4] * 2,
       "min -128": [[-128, -3, 0, -5], [-1, -128, -7, 0]]}
FINE = {"min -100": [[-100, -3, 0, -5], [-1, -64, -7, 0]], "one positive": [[-64, 1, 0, -32], [0, -64, -64, 0]]}


@st.composite
def matrices(draw, lo=-300, hi=300):
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    values = draw(st.lists(st.one_of(st.sampled_from(EDGES), st.integers(lo, hi)), min_size=rows * cols,
                           max_size=rows * cols))
    w = np.array(values, dtype=np.int64).reshape(rows, cols)
    flavor = draw(st.sampled_from(FLAVORS))
    i, j = draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))
    if flavor in ("no_positive", "max_zero", "pow2_min"):
        w = -np.abs(w)
    elif flavor == "negative":
        w = -np.abs(w) - 1
    elif flavor in ("no_negative", "min_zero"):
        w = np.abs(w)
    elif flavor == "single":
        w = np.full_like(w, w[i, j])
    elif flavor == "pow2_scaled":
        w = w * 2 ** draw(st.integers(1, 6))
    if flavor == "pow2_min":
        p = -2 ** draw(st.integers(0, 8))
        w = np.maximum(w, p)
        w[i, j] = p
    if flavor in ("max_zero", "min_zero"):
        w[i, j] = 0
    return np.clip(w, lo, hi)


def lava_dense(w, encoding):
    """What Lava's own functions make of ``w``: (the integers Dense multiplies, weight_exp, sign mode)."""
    from lava.lib.dl.netx.utils import optimize_weight_bits as netx_optimize
    from lava.utils import weightutils as wu
    if encoding == "netx":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 127 / 0 for a largest code 0
            w1, bits, exp, _ = netx_optimize(w.copy())
        mode = wu.determine_sign_mode(w1)      # dense/models.py:84-85: netx passes no sign mode
    else:
        opt = wu.optimize_weight_bits(w.copy(), wu.SignMode.MIXED)
        w1, bits, exp, mode = opt.weights, opt.num_weight_bits, opt.weight_exp, wu.SignMode.MIXED
    w3 = wu.truncate_weights(wu.clip_weights(w1, mode, num_bits=8), mode, bits)  # dense/models.py:87-90
    return np.asarray(w3), int(exp), mode.name.lower()


def lava_sum(w3, exp, s):
    """dense/models.py:97-107: the int32 sum, shifted by the weight exponent."""
    acc = np.asarray(w3).astype(np.int32).dot(np.asarray(s).astype(np.int32))
    return np.left_shift(acc, exp) if exp > 0 else np.right_shift(acc, -exp)


def all_inputs(n, lo, hi):
    return np.array(list(itertools.product(range(lo, hi + 1), repeat=n)), dtype=np.int64).T


def compare(w, encoding, lo, hi):
    """Every claim of the model about ``w`` against Lava's functions and a brute force over [lo, hi]^n."""
    try:
        w3, exp, mode = lava_dense(w, encoding)
    except (OverflowError, ValueError):  # netx on an all-zero matrix; Lava's mixed range check
        with pytest.raises(ValueError):
            lw.dense_effective(w, encoding)
        assert not lw.dense_verdict(w, lo, hi, encoding).exact
        return
    eff = lw.dense_effective(w, encoding)
    assert np.array_equal(eff.weight, w3) and eff.weight_exp == exp and eff.sign_mode == mode
    S = all_inputs(w.shape[1], lo, hi)
    lava = lava_sum(w3, exp, S)
    assert np.array_equal(lw.dense_output(eff, S), lava)
    verdict = lw.dense_verdict(w, lo, hi, encoding)
    assert verdict.exact == np.array_equal(lava, w @ S), (w, verdict)
    if not verdict.exact:
        assert verdict.reason and "\n" not in verdict.reason
        if verdict.witness is not None:
            row, s = verdict.witness
            assert lo <= s.min() and s.max() <= hi
            assert lava_sum(w3[row], exp, s) != w[row] @ s


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(w=matrices(), first=st.booleans(), top=st.sampled_from([1, 2, 5]))
def test_netx_encoding_model_equals_lava(require_lava, w, first, top):
    compare(w, "netx", *((0, top) if first else (-1, 1)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(w=matrices(-256, 255), first=st.booleans())
def test_mixed_encoding_model_equals_lava_and_is_exact(require_lava, w, first):
    compare(w, "mixed", *((0, 3) if first else (-1, 1)))
    if np.any(w) and w.max() <= 254:
        assert lw.dense_verdict(w, -1, 1, "mixed").exact and lw.dense_verdict(w, 0, 255, "mixed").exact


@pytest.mark.parametrize("w", list(BUG.values()) + list(FINE.values()), ids=list(BUG) + list(FINE))
def test_reported_cases_against_lava(require_lava, w):
    compare(np.array(w), "netx", 0, 3)
    compare(np.array(w), "netx", -1, 1)


def test_rule_matches_the_model_on_every_pair_of_edge_codes():
    """The closed form (lava_weights.rule) on spikes; all 1×2 matrices in [-256, 254] were checked once (192 s)."""
    codes = [c for c in EDGES if -256 <= c <= 254] + [-5, -6, -130, -131, -254, 5, 6]
    for a, b in itertools.product(codes, repeat=2):
        w = np.array([[a, b]])
        if a or b:
            assert lw.rule(w) == lw.dense_verdict(w, -1, 1).exact, w
    for name, w in BUG.items():
        assert not lw.rule(np.array(w)), name
    for name, w in FINE.items():
        assert lw.rule(np.array(w)), name


def test_within_8_bit_codes_only_a_nonpositive_matrix_with_min_minus_2j_fails():
    for m in range(-128, 0):
        for top in (0, -1 if m < -1 else None, 5):
            if top is None:
                continue
            w = np.array([[m, top, m // 2 if m < -1 else m]])
            exact = lw.dense_verdict(w, -1, 1).exact
            assert exact == (top > 0 or not lw.is_pow2(-m)), w


def _classifier(w, input_max=7, bits=2) -> Network:
    w = np.asarray(w)
    return Network((w.shape[1],), [Layer("dense", w, np.zeros(len(w), int), Accumulator(), (w.shape[1],),
                                         (len(w),))], bits=bits, input_max=input_max)


@pytest.mark.parametrize("name", list(BUG))
def test_export_check_refuses_the_reported_cases_in_one_line(name):
    with pytest.raises(FastSNNError) as e:
        check_netx_weights(_classifier(BUG[name]))
    msg = str(e.value)
    w = np.array(BUG[name])
    assert "\n" not in msg and msg.startswith("layer 1: dense weights") and f"[{w.min()}, {w.max()}]" in msg
    assert "inhibitory" in msg and "[-255, 0]" in msg and "positive code" in msg


def test_export_check_passes_the_exact_cases_and_conv_and_dense_skips():
    for w in FINE.values():
        check_netx_weights(_classifier(w))
    first = Layer("conv", np.ones((2, 1, 1, 1), int), np.zeros(2, int), SignedIF(8), (1, 3, 3), (2, 3, 3))
    conv = Layer("conv", np.full((2, 2, 1, 1), -64), np.zeros(2, int), SignedIF(8), (2, 3, 3), (2, 3, 3))
    hid = Layer("dense", np.arange(18).reshape(1, 18) % 5 - 2, [0], SignedIF(8), (2, 3, 3), (1,))
    hid2 = Layer("dense", [[3]], [0], SignedIF(8), (1,), (1,))
    out = Layer("dense", [[2]], [0], Accumulator(), (1,), (1,),
                skips=[Skip(3, "dense", [[-64]], (1,)), Skip(4, "dense", [[-128]], (1,))])
    check_netx_weights(Network((1, 3, 3), [first, conv, hid, hid2, out], bits=2))  # conv −64, skips −64/−128
    hidden_bad = Network((1,), [Layer("dense", [[1]], [0], SignedIF(2), (1,), (1,)),
                                Layer("dense", [[-64]], [0], Accumulator(), (1,), (1,))], bits=2)
    with pytest.raises(FastSNNError, match=r"^layer 2: dense weights in \[-64, -64\]"):
        check_netx_weights(hidden_bad)


def test_first_layer_uses_the_raw_input_range():
    """On inputs in [0, 1] one clipped −64 (E = 2^k/2) is exact; on spikes or larger inputs it is not."""
    w = np.array([[-64, -3, 0]])
    assert lw.dense_verdict(w, 0, 1).exact and not lw.dense_verdict(w, 0, 2).exact
    assert not lw.dense_verdict(w, -1, 1).exact
    check_netx_weights(_classifier(w, input_max=1))
    with pytest.raises(FastSNNError, match="layer 1"):
        check_netx_weights(_classifier(w, input_max=2))


def test_conv_and_int32_bounds():
    assert lw.conv_verdict(np.full((1, 1, 3, 3), -64), -1, 1).exact
    big = np.full((1, 32, 3, 3), 127)
    v = lw.conv_verdict(big, 0, 255)
    assert not v.exact and "24-bit" in v.reason and "9326880" in v.reason
    assert lw.conv_verdict(big, -1, 1).exact
    assert not lw.dense_verdict(np.full((1, 40000), 127), 0, 255).exact
