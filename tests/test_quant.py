"""The training quantizers: the fused forms equal the module docstring's formulas."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsnn_lava.quant import act_quant, fake_quant, round_half_up, weight_codes


def _formula(x, alpha, levels):
    """act_quant as written in fastsnn_lava/quant.py's docstring, with its gradients."""
    xhat = torch.relu(x) / alpha
    q = round_half_up(levels * xhat.clamp(max=1.0)) / levels
    inside = (xhat > 0) & (xhat <= 1)
    d_alpha = torch.where(xhat > 1, torch.ones_like(xhat), (q - xhat) * inside)
    return q * alpha, inside, d_alpha


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(1, 5), alpha=st.floats(0.05, 8.0), scale=st.floats(0.1, 10.0), seed=st.integers(0, 10 ** 6))
def test_act_quant_equals_formula(bits, alpha, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(8, 6, 5, 5, generator=g) * scale).requires_grad_(True)
    a = torch.tensor([alpha], requires_grad=True)
    grad = torch.randn(x.shape, generator=g)
    y = act_quant(x, a, bits)
    y.backward(grad)
    y_ref, inside, d_alpha = _formula(x.detach(), a.detach(), 2 ** bits - 1)
    assert torch.equal(y.detach(), y_ref)  # bit-identical forward
    assert torch.equal(x.grad, grad * inside)
    ref = float((grad * d_alpha).sum())
    # two float32 dot products instead of one masked sum: equal up to summation rounding
    assert float(a.grad) == pytest.approx(ref, rel=1e-4, abs=1e-5 * float(grad.abs().sum()) * (1 + scale / alpha))


def test_act_quant_ties_round_up():
    a = torch.tensor([3.0])
    x = torch.tensor([0.5, 1.5, 2.5, 3.5, -1.0])  # T = 3 levels of 1.0: ties at k + 1/2
    assert act_quant(x, a, 2).tolist() == [1.0, 2.0, 3.0, 3.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fake_quant_is_step_times_exported_codes(dtype):
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(64, 33, generator=g) * 0.3).to(dtype).requires_grad_(True)
    step = 0.3 / 127 * 1.7
    wq = fake_quant(w, step, -127, 127)
    assert wq.dtype == dtype
    assert torch.equal(wq.detach(), weight_codes(w.float(), step, 127).to(dtype) * step)
    assert float((wq.detach() / step).abs().max()) <= 127 + 1e-9  # clipped
    wq.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight through


def test_fake_quant_asymmetric_clip():
    w = torch.tensor([-10.0, 10.0])
    assert fake_quant(w, 1.0, -4, 3).tolist() == [-4.0, 3.0]


def _composed(x, w, b, alpha, grid, conv, extras):
    """The layer as separate nodes: the weight and bias grids, the op, the shortcut sums, the quantizer."""
    delta, unit, w_lim, b_lo, b_hi, levels = grid
    wq, bq = fake_quant(w, delta, -w_lim, w_lim), fake_quant(b, unit, b_lo, b_hi)
    z = torch.nn.functional.conv2d(x, wq, bq, *conv) if conv else torch.nn.functional.linear(x, wq, bq)
    for e in extras:
        z = z + e
    return act_quant(z, alpha, (levels + 1).bit_length() - 1) if levels else z


@pytest.mark.parametrize("conv", [None, (1, 1), (2, 1), ((2, 1), (0, 1))])
@pytest.mark.parametrize("levels", [0, 1, 3, 15])
@pytest.mark.parametrize("n_extras", [0, 2])
def test_quant_synapse_equals_composition(conv, levels, n_extras):
    """The one-node layer gives the composed layer's output and every gradient bit for bit."""
    from fastsnn_lava.quant import quant_synapse
    g = torch.Generator().manual_seed(levels * 10 + n_extras)
    x0 = torch.rand(16, 6, 9, 9, generator=g) * 2 if conv else torch.rand(16, 40, generator=g) * 2
    w0 = torch.randn((12, 6, 3, 3) if conv else (12, 40), generator=g) * 0.2
    b0 = torch.randn(12, generator=g) * 0.5
    out_shape = torch.nn.functional.conv2d(x0, w0, b0, *conv).shape if conv else (16, 12)
    e0 = [torch.randn(out_shape, generator=g) for _ in range(n_extras)]
    grid = (0.2 / 127 * 1.3, 0.01, 127, -4096, 4095, levels)
    up = torch.randn(out_shape, generator=g)
    results = []
    for f in (_composed, quant_synapse):
        x, w, b = (t.clone().requires_grad_(True) for t in (x0, w0, b0))
        alpha = torch.tensor([1.5], requires_grad=True)
        es = [e.clone().requires_grad_(True) for e in e0]
        y = f(x, w, b, alpha, grid, conv, tuple(es))
        y.backward(up)
        results.append([y.detach(), x.grad, w.grad, b.grad] + [e.grad for e in es]
                       + ([alpha.grad] if levels else []))
    for a, c in zip(*results):
        assert torch.equal(a, c)
    assert 0 < float(results[0][0].abs().sum())  # the case is not degenerate
