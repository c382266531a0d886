"""Export adds no error: model.pt's QANN and net.h5's integer network compute the same integers."""
import numpy as np
import pytest
import torch

from fastsnn_lava import checkpoint
from fastsnn_lava.convert import to_network
from fastsnn_lava.data import load_dataset
from fastsnn_lava.netx import read_network
from fastsnn_lava.pipeline import export
from fastsnn_lava.quant import activation_level
from fastsnn_lava.reference import qann_forward, run_batches, snn_forward


@pytest.mark.parametrize("arch,bits", [("mlp", 2), ("cnn", 2), ("mlp", 3), ("cnn", 3)])
def test_netx_file_equals_checkpoint_qann(trained, tmp_path, arch, bits):
    _, _, _, model_path = trained(arch, bits)
    h5 = tmp_path / "net.h5"
    net = export(str(model_path), str(h5))
    loaded = read_network(h5)
    assert loaded.equals(net)
    qann, _, _ = checkpoint.load(model_path)
    assert to_network(qann).equals(loaded)

    # The QAT forward pass's own levels (from the exact integer accumulator) are the integer
    # network's everywhere, ties included, and so are its predictions.
    ds = load_dataset("digits")
    T = loaded.timesteps
    trace = qann_forward(loaded, ds.x_test)
    with torch.no_grad():
        levels = qann.levels(torch.as_tensor(ds.x_test, dtype=torch.float32))
    for k, ref in enumerate(trace.levels):
        assert torch.equal(levels[k].double(), ref), f"layer {k + 1}"
    assert torch.equal(levels[-1].argmax(1), trace.out.argmax(1))

    # Layer by layer, feed the integer network's levels into the checkpoint's QANN (float64):
    # the float quantizer formula (activation_level) on its pre-activation u·A/T must give the
    # integer levels except at exact rounding ties (where float rounding may fall either side),
    # and its logits must be the integer outputs times the output unit.
    qann = qann.double()
    units = qann.units_in()
    x = torch.as_tensor(ds.x_test, dtype=torch.float64) / loaded.input_max
    mismatches = 0
    with torch.no_grad():
        for k, layer in enumerate(qann.layers):
            z = layer.pre_activation(x, units[k])
            if not layer.hidden:
                _, _, unit = layer.grid(units[k])
                assert torch.allclose(z * T / unit, trace.out, rtol=0, atol=1e-6)
                break
            level = activation_level(z, layer.alpha, bits)
            diff = level != trace.levels[k]
            theta = loaded.layers[k].threshold
            at_tie = (trace.accs[k] + theta // 2) % theta == 0
            assert bool((~diff | at_tie).all()), f"layer {k + 1}: a level differs away from a tie"
            mismatches += int(diff.sum())
            x = trace.levels[k] * float(layer.alpha) / T
    assert mismatches <= 0.001 * trace.levels[0].numel()
    # the first layer has no sequential error: SNN spike counts equal QANN levels exactly
    snn = snn_forward(loaded, ds.x_test[:100])
    assert torch.equal(snn.counts[0], trace.levels[0][:100])


def test_snn_agrees_with_qann_on_digits(trained, tmp_path):
    """The spine's accuracy gate: SNN predictions equal the QANN's on ≥ 97 % of digits test samples."""
    _, _, _, model_path = trained("cnn", 2)
    net = export(str(model_path), str(tmp_path / "net.h5"))
    ds = load_dataset("digits")
    q = run_batches(net, ds.x_test, qann_forward).argmax(1)
    s = run_batches(net, ds.x_test, snn_forward).argmax(1)
    agreement = (q == s).mean()
    assert agreement >= 0.97, agreement
    assert (s == ds.y_test).mean() > 0.9
